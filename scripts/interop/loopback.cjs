// Preload (node --require) for server-everything, which calls app.listen(PORT) with no host and
// so would listen on every interface: a listen() given only a port binds 127.0.0.1 instead.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  const portOnly = (typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port)))
    && (args.length === 1 || typeof args[1] === 'function');
  if (portOnly) args.splice(1, 0, '127.0.0.1');
  return listen.apply(this, args);
};
