// Preload (node --require) for the conformance client, which has no option for custom headers:
// adds the headers in $INTEROP_HEADERS (a JSON object) to every HTTP request the process makes,
// through fetch and undici's request() (a global undici dispatcher), and through node:http's
// request() (which the newest suite uses to send raw requests).
// Headers the request sets itself win. Used only by scripts/interop/run.
'use strict';
const extra = JSON.parse(process.env.INTEROP_HEADERS || '{}');
const undici = require(require.resolve('undici', { paths: [process.env.INTEROP_NODE_MODULES || process.cwd()] }));

function withExtra(headers) {
  const have = new Set();
  let out;
  if (headers == null) {
    out = [];
  } else if (Array.isArray(headers)) {
    out = headers.slice();
    for (let i = 0; i < out.length; i += 2) have.add(String(out[i]).toLowerCase());
  } else if (typeof headers[Symbol.iterator] === 'function') {
    out = [];
    for (const [k, v] of headers) { out.push(k, v); have.add(String(k).toLowerCase()); }
  } else {
    out = [];
    for (const [k, v] of Object.entries(headers)) { out.push(k, v); have.add(k.toLowerCase()); }
  }
  for (const [k, v] of Object.entries(extra)) {
    if (!have.has(k.toLowerCase())) out.push(k, v);
  }
  return out;
}

const agent = new undici.Agent().compose((dispatch) => (opts, handler) =>
  dispatch({ ...opts, headers: withExtra(opts.headers) }, handler));
undici.setGlobalDispatcher(agent);

// node:http: the extra headers join an options object's own headers (theirs win).
const http = require('node:http');
const plainRequest = http.request;
function withExtraHeaders(options) {
  if (options == null || typeof options !== 'object' || options instanceof URL) return options;
  const headers = { ...(options.headers || {}) };
  const have = new Set(Object.keys(headers).map((k) => k.toLowerCase()));
  for (const [k, v] of Object.entries(extra)) if (!have.has(k.toLowerCase())) headers[k] = v;
  return { ...options, headers };
}
http.request = function request(options, ...rest) {
  return plainRequest.call(this, withExtraHeaders(options), ...rest);
};
http.get = function get(options, ...rest) {
  const req = http.request(options, ...rest);
  req.end();
  return req;
};
require('node:module').syncBuiltinESMExports();
