// MCP Apps through the gateway, read the way a host reads them: the official TypeScript SDK's
// client lists tools, takes the UI resource each tool names in `_meta.ui.resourceUri` (and the
// older `_meta["ui/resourceUri"]`), finds it listed as an app and reads its HTML. Run by
// scripts/interop/run:
//
//   node apps_check.mjs PREFIXED_URL UNPREFIXED_URL
//
// PREFIXED_URL: a gateway (tool_prefix: always) serving the ext-apps example server twice, as
// `app` and `app2` (the same ui:// URI on both); key sk-apps may call every tool, key
// sk-apps-one no tool of app2. UNPREFIXED_URL: a gateway with tool_prefix: never serving it as
// `app`. Prints one line per check; exit 1 on any failure.
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.INTEROP_NODE_MODULES ?? process.cwd()}/`);
const { Client, ProtocolError, StreamableHTTPClientTransport } = require('@modelcontextprotocol/client');

const [prefixed, unprefixed] = process.argv.slice(2);
if (!prefixed || !unprefixed) {
  console.error('usage: apps_check.mjs PREFIXED_URL UNPREFIXED_URL');
  process.exit(2);
}
const APP_MIME = 'text/html;profile=mcp-app';
let failed = 0;

async function check(name, fn) {
  try {
    const detail = await fn();
    console.log(`ok    [MCP Apps, TypeScript SDK client] ${name}${detail ? `  (${detail})` : ''}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL  [MCP Apps, TypeScript SDK client] ${name}: ${e?.stack ?? e}`);
  }
}

function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function connect(url, key) {
  const client = new Client({ name: 'interop-apps', version: '0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { 'x-litellm-api-key': key } },
  });
  await client.connect(transport);
  return client;
}

/// Every listed tool that names a UI resource: its name and the URI it names.
async function apps(client) {
  const { tools } = await client.listTools();
  const out = [];
  for (const t of tools) {
    const uri = t._meta?.ui?.resourceUri;
    const older = t._meta?.['ui/resourceUri'];
    if (uri === undefined && older === undefined) continue;
    expect(uri === older, `${t.name}: ui.resourceUri ${uri} but ui/resourceUri ${older}`);
    out.push([t.name, uri]);
  }
  return out;
}

/// Reads `uri` as a host does: the HTML of the app.
async function readApp(client, uri, listed) {
  const entry = listed.find((r) => r.uri === uri);
  expect(entry, `${uri} is not listed: ${JSON.stringify(listed.map((r) => r.uri))}`);
  expect(entry.mimeType === APP_MIME, `${uri} listed as ${entry.mimeType}`);
  const { contents } = await client.readResource({ uri });
  expect(contents.length === 1 && contents[0].uri === uri, `read named ${JSON.stringify(contents.map((c) => c.uri))}`);
  expect(contents[0].mimeType === APP_MIME, `read as ${contents[0].mimeType}`);
  expect(/<html/i.test(contents[0].text ?? ''), 'no HTML in the read');
  return contents[0].text.length;
}

async function refused(call) {
  try {
    await call;
  } catch (e) {
    if (e instanceof ProtocolError && Number.isInteger(e.code)) return `jsonrpc ${e.code}`;
    throw new Error(`not a refusal: ${e?.constructor?.name}: ${e?.message}`);
  }
  throw new Error('not refused');
}

await check('every tool\'s UI is listed as an app under the URI the tool names, and reads', async () => {
  const client = await connect(prefixed, 'sk-apps');
  const named = await apps(client);
  expect(named.length === 2, `apps: ${JSON.stringify(named)}`);
  const uris = named.map(([, uri]) => uri);
  expect(uris.every((u) => u.startsWith('ui://')), `not ui:// URIs: ${uris}`);
  expect(uris[0] !== uris[1], `two servers' UIs share a name: ${uris}`);
  const { resources } = await client.listResources();
  const sizes = [];
  for (const uri of uris) sizes.push(await readApp(client, uri, resources));
  await client.close();
  return named.map(([tool, uri], i) => `${tool} → ${uri}, ${sizes[i]} bytes`).join('; ');
});

await check('a UI is neither listed nor readable without a callable tool that names it', async () => {
  const all = await connect(prefixed, 'sk-apps');
  const named = await apps(all);
  await all.close();
  const hidden = named.find(([tool]) => tool.startsWith('app2-'))?.[1];
  const shown = named.find(([tool]) => tool.startsWith('app-'))?.[1];
  expect(hidden && shown, `apps: ${JSON.stringify(named)}`);
  const client = await connect(prefixed, 'sk-apps-one');
  const mine = await apps(client);
  expect(mine.length === 1 && mine[0][1] === shown, `listed: ${JSON.stringify(mine)}`);
  const { resources } = await client.listResources();
  expect(!resources.some((r) => r.uri === hidden), `${hidden} was listed`);
  const how = await refused(client.readResource({ uri: hidden }));
  await readApp(client, shown, resources);
  await client.close();
  return `${hidden}: ${how}`;
});

await check('without prefixes, the UI keeps its scheme and reads', async () => {
  const client = await connect(unprefixed, 'sk-apps');
  const named = await apps(client);
  expect(named.length === 1, `apps: ${JSON.stringify(named)}`);
  const [[tool, uri]] = named;
  expect(uri.startsWith('ui://'), uri);
  const { resources } = await client.listResources();
  const size = await readApp(client, uri, resources);
  await client.close();
  return `${tool} → ${uri}, ${size} bytes`;
});

process.exit(failed ? 1 : 0);
