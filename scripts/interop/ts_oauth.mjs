// OAuth interop: the TypeScript SDK's client (@modelcontextprotocol/client) with its own OAuth
// flow against the example gateway, oidc-provider as the authorization server. Run by
// scripts/interop/run:
//
//   INTEROP_NODE_MODULES=DIR node ts_oauth.mjs GATEWAY_BASE
//
// The client's OAuthClientProvider is implemented here in memory; the user's part (sign-in and
// consent at the authorization server's development pages) is played over HTTP, headless. The
// client discovers, registers, authorizes with PKCE and `resource`, then lists and calls
// through the gateway and must see exactly team eng's tools (see oauth_check.py). Prints one
// line per check and each request the client made; exit 1 on any failure.
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.INTEROP_NODE_MODULES ?? process.cwd()}/`);
const { Client, ProtocolError, StreamableHTTPClientTransport, UnauthorizedError } = require('@modelcontextprotocol/client');

const base = process.argv[2];
if (!base) {
  console.error('usage: ts_oauth.mjs GATEWAY_BASE');
  process.exit(2);
}
const REDIRECT = 'http://127.0.0.1:9/callback';
const label = '[TypeScript SDK client, OAuth]';
let failed = 0;
const check = (name, ok, detail) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'}  ${label} ${name}${detail ? `  (${detail})` : ''}`);
  if (!ok) failed += 1;
};

const log = [];
const loggingFetch = (url, init) => {
  log.push(`${init?.method ?? 'GET'} ${url}`);
  return fetch(url, init);
};

/** Signs in as ada and consents at oidc-provider's development pages; the code and iss. */
async function playUser(authorizationUrl) {
  const jar = new Map();
  const keep = (response) => {
    for (const c of response.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const at = pair.indexOf('=');
      jar.set(pair.slice(0, at), pair.slice(at + 1));
    }
  };
  const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  let url = authorizationUrl.toString();
  for (let i = 0; i < 12; i += 1) {
    if (url.startsWith(REDIRECT)) {
      const q = new URL(url).searchParams;
      if (!q.get('code')) throw new Error(`no code in ${url}`);
      return { code: q.get('code'), iss: q.get('iss') ?? undefined };
    }
    let r = await fetch(url, { redirect: 'manual', headers: { cookie: cookie() } });
    keep(r);
    if (r.status === 302 || r.status === 303) {
      url = new URL(r.headers.get('location'), url).toString();
      continue;
    }
    const page = await r.text();
    const action = page.match(/<form[^>]*action="([^"]+)"/);
    const prompt = page.match(/name="prompt" value="(\w+)"/);
    if (r.status !== 200 || !action || !prompt) throw new Error(`unexpected page ${url}: ${r.status}`);
    const form = new URLSearchParams({ prompt: prompt[1] });
    if (prompt[1] === 'login') {
      form.set('login', 'ada');
      form.set('password', 'any');
    }
    r = await fetch(new URL(action[1], url), {
      method: 'POST', redirect: 'manual', body: form, headers: { cookie: cookie() },
    });
    keep(r);
    url = new URL(r.headers.get('location'), url).toString();
  }
  throw new Error('the authorization server never redirected back');
}

const state = { info: undefined, tokens: undefined, verifier: undefined, discovery: undefined, authorizationUrl: undefined };
const provider = {
  get redirectUrl() { return REDIRECT; },
  get clientMetadata() {
    return {
      client_name: 'mcp-gatekeeper interop (TypeScript)',
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  },
  clientInformation: () => state.info,
  saveClientInformation: (info) => { state.info = info; },
  tokens: () => state.tokens,
  saveTokens: (tokens) => { state.tokens = tokens; },
  redirectToAuthorization: (url) => { state.authorizationUrl = url; },
  saveCodeVerifier: (v) => { state.verifier = v; },
  codeVerifier: () => state.verifier,
  // Lets the client check, when the code comes back, that it is the authorization server it
  // sent the user to (SEP-2352).
  saveDiscoveryState: (s) => { state.discovery = s; },
  discoveryState: () => state.discovery,
};

const url = new URL(`${base}/mcp`);
try {
  const first = new StreamableHTTPClientTransport(url, { authProvider: provider, fetch: loggingFetch });
  try {
    await new Client({ name: 'ts-oauth', version: '0' }).connect(first);
    throw new Error('connected without authorization');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  const asked = state.authorizationUrl?.searchParams;
  check('sent the user to authorize with PKCE S256 and resource',
    asked?.get('code_challenge_method') === 'S256' && asked?.get('resource') === url.toString(),
    `resource=${asked?.get('resource')} scope=${asked?.get('scope')}`);
  const { code, iss } = await playUser(state.authorizationUrl);
  await first.finishAuth(code, iss);
  console.log('      requests the client made, in order:');
  for (const line of log) console.log(`        ${line}`);
  const client = new Client({ name: 'ts-oauth', version: '0' });
  await client.connect(new StreamableHTTPClientTransport(url, { authProvider: provider }));
  const tools = (await client.listTools()).tools.map((t) => t.name).sort();
  check("sees exactly team eng's tools", JSON.stringify(tools) === '["fx-interop_echo","fx-test_simple_text"]', tools.join(', '));
  const ok = await client.callTool({ name: 'fx-test_simple_text', arguments: {} });
  check('calls an allowed tool', !ok.isError);
  let refusal;
  try {
    const r = await client.callTool({ name: 'fx-test_error_handling', arguments: {} });
    refusal = r.isError ? 'isError' : undefined;
  } catch (e) {
    refusal = e instanceof ProtocolError ? `jsonrpc ${e.code}` : undefined;
    if (!refusal) throw e;
  }
  check('a tool outside the grant is refused', refusal !== undefined, refusal);
  await client.close();
} catch (e) {
  check('discovery, registration, PKCE login and calls', false, e?.stack ?? String(e));
}
process.exit(failed ? 1 : 0);
