// Preload (node --require) for the conformance client, which has no option for custom headers:
// adds the headers in $INTEROP_HEADERS (a JSON object) to every HTTP request the process makes,
// both through fetch and through undici's request(), by installing a global undici dispatcher.
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
