// The official TypeScript SDK's client (@modelcontextprotocol/client) against the gateway over
// streamable HTTP with custom headers. Run by scripts/interop/run:
//
//   node ts_client.mjs URL [PROTOCOL_VERSION]
//
// As key sk-carol (server fx only; test_error_handling deny-listed, interop_echo takes `text`
// only): lists, calls an allowed tool, and is refused a deny-listed tool, arguments outside
// allowed_params and another key's server. A refusal is a tool result with isError or a
// JSON-RPC error (ProtocolError); anything else fails. Without PROTOCOL_VERSION the client
// negotiates as it does by default; with it, it offers only that version.
// Prints one line per check; exit 1 on any failure.
import { createRequire } from 'node:module';

// The SDK is installed with the other peers, not beside this file: $INTEROP_NODE_MODULES.
const require = createRequire(`${process.env.INTEROP_NODE_MODULES ?? process.cwd()}/`);
const { Client, ProtocolError, StreamableHTTPClientTransport } = require('@modelcontextprotocol/client');

const [url, pin] = process.argv.slice(2);
if (!url) {
  console.error('usage: ts_client.mjs URL [PROTOCOL_VERSION]');
  process.exit(2);
}
const label = `[TypeScript SDK client, ${pin ? `pinned to ${pin}` : 'default protocol'}]`;
let failed = 0;

async function check(name, fn) {
  try {
    const detail = await fn();
    console.log(`ok    ${label} ${name}${detail ? `  (${detail})` : ''}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL  ${label} ${name}: ${e?.stack ?? e}`);
  }
}

function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

const texts = (r) => (r.content ?? []).filter((c) => c.type === 'text').map((c) => c.text);

async function refusal(call) {
  let r;
  try {
    r = await call;
  } catch (e) {
    if (e instanceof ProtocolError && Number.isInteger(e.code)) return `jsonrpc ${e.code}`;
    throw new Error(`not a refusal: ${e?.constructor?.name}: ${e?.message}`);
  }
  expect(r.isError === true, `not refused: ${JSON.stringify(r)}`);
  expect(texts(r).some((t) => t.startsWith('Error: ')), `no reason: ${JSON.stringify(r)}`);
  return 'isError';
}

const client = new Client(
  { name: 'interop-ts', version: '0' },
  pin ? { supportedProtocolVersions: [pin] } : {},
);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { 'x-litellm-api-key': 'sk-carol', 'x-mcp-servers': 'fx' } },
});

await check('connects, lists and calls with custom headers', async () => {
  await client.connect(transport);
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  expect(names.includes('fx-interop_echo'), `tools: ${names}`);
  expect(!names.includes('fx-test_error_handling'), 'a deny-listed tool was listed');
  expect(names.every((n) => n.startsWith('fx-')), `another server was listed: ${names}`);
  const echo = tools.find((t) => t.name === 'fx-interop_echo');
  expect(
    Object.keys(echo.inputSchema.properties ?? {}).every((p) => p === 'text'),
    `allowed_params not pruned: ${JSON.stringify(echo.inputSchema)}`,
  );
  const r = await client.callTool({ name: 'fx-interop_echo', arguments: { text: 'from ts' } });
  expect(!r.isError && texts(r)[0] === 'from ts', `echo gave ${JSON.stringify(r)}`);
  const version = transport.protocolVersion ?? client.getNegotiatedProtocolVersion?.();
  if (pin) expect(version === pin, `negotiated ${version}`);
  return `${names.length} tools, protocol ${version ?? '?'}`;
});

await check('refusals read as refusals', async () => {
  const seen = [];
  for (const [what, name, args] of [
    ['deny-listed', 'fx-test_error_handling', {}],
    ['allowed_params', 'fx-interop_echo', { text: 'x', loud: true }],
    ['other server', 'evhttp-echo', { message: 'x' }],
  ]) {
    seen.push(`${what}: ${await refusal(client.callTool({ name, arguments: args }))}`);
  }
  return seen.join(', ');
});

await client.close().catch(() => {});
process.exit(failed ? 1 : 0);
