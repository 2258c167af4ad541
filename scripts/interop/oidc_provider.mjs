// A real OAuth 2.1 / OpenID Connect authorization server for the interop suite: oidc-provider
// (pinned in install.sh) on loopback, issuer http://127.0.0.1:PORT. Run by scripts/interop/run:
//
//   INTEROP_OIDC_MODULES=DIR node oidc_provider.mjs PORT
//
// Enabled: dynamic client registration (RFC 7591, open), PKCE (S256), resource indicators
// (RFC 8707) with JWT access tokens (RS256, a key generated at start) whose audience is the
// requested resource and whose scopes are what that resource accepts (`mcp`, `mcp:read`), and
// the built-in development login and consent pages, which a script drives over HTTP. Every
// account is in group `eng` and has an e-mail address: the gateway maps them to team and end user.
import { generateKeyPairSync } from 'node:crypto';
import { pathToFileURL } from 'node:url';

const modules = process.env.INTEROP_OIDC_MODULES;
const port = Number(process.argv[2]);
if (!modules || !port) {
  console.error('usage: INTEROP_OIDC_MODULES=DIR node oidc_provider.mjs PORT');
  process.exit(2);
}
const { default: Provider } = await import(pathToFileURL(`${modules}/oidc-provider/lib/index.js`).href);

const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  jwks: { keys: [signing] },
  scopes: ['openid', 'offline_access', 'mcp', 'mcp:read'],
  features: {
    registration: { enabled: true },
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A token request without `resource` gets the one granted at authorization.
      useGrantedResource: async () => true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      getResourceServerInfo: async (_ctx, resource) => ({
        scope: 'mcp mcp:read',
        audience: resource,
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: async (_ctx, token) => ({
    groups: ['eng'],
    email: `${token.accountId}@example.com`,
  }),
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  // Public clients (the SDKs register with token_endpoint_auth_method none or a secret).
  clientDefaults: { grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
  pkce: { required: () => true },
});
provider.proxy = false;
provider.on('server_error', (_ctx, err) => console.error('server_error', err));
provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider on ${issuer}`));
