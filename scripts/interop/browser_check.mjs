// The official TypeScript SDK's client (@modelcontextprotocol/client), bundled for the browser
// with esbuild, in a page of headless Chromium (Debian's chromium, driven by playwright-core)
// served from another origin than the gateway's. Run by scripts/interop/run:
//
//   node browser_check.mjs GATEWAY_URL ALLOWED_PORT
//
// The page is served on 127.0.0.1:ALLOWED_PORT, an origin the gateway's
// cors_allowed_origins names, and on a port the gateway does not name. As key sk-alice, the
// page on the named origin lists, calls an allowed tool, and reads a deny-listed tool's refusal
// as a refusal (a tool result with isError). On the other origin the browser itself blocks the
// requests: the client fails to fetch and Chromium reports the CORS policy, which tells a
// blocked page from a crashed one.
//
// $INTEROP_NODE_MODULES holds the SDK; $INTEROP_BROWSER_MODULES holds esbuild and
// playwright-core; $INTEROP_CHROMIUM is the browser (default /usr/bin/chromium).
// Prints one line per check; exit 1 on any failure.
import http from 'node:http';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const sdkModules = process.env.INTEROP_NODE_MODULES;
const tools = createRequire(`${process.env.INTEROP_BROWSER_MODULES}/`);
const esbuild = tools('esbuild');
const { chromium } = tools('playwright-core');
const executablePath = process.env.INTEROP_CHROMIUM ?? '/usr/bin/chromium';

const [gateway, allowedPort] = process.argv.slice(2);
if (!gateway || !allowedPort) {
  console.error('usage: browser_check.mjs GATEWAY_URL ALLOWED_PORT');
  process.exit(2);
}
const label = '[TypeScript SDK client in headless Chromium]';
let failed = 0;

async function check(name, fn) {
  try {
    const detail = await fn();
    console.log(`ok    ${label} ${name}${detail ? `  (${detail})` : ''}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL  ${label} ${name}: ${e.stack ?? e}`);
  }
}

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

// The SDK's client, as one ES module a page imports.
const bundle = await esbuild.build({
  stdin: {
    contents: "export { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';",
    resolveDir: sdkModules,
    loader: 'js',
  },
  nodePaths: [sdkModules],
  bundle: true,
  platform: 'browser',
  format: 'esm',
  write: false,
  logLevel: 'error',
});
const sdk = bundle.outputFiles[0].text;

// What the page does when asked: connect with a key, list, call, be refused. It reports what
// happened, or how it failed.
const page = `<!doctype html>
<meta charset="utf-8">
<title>browser check</title>
<script type="module">
import { Client, StreamableHTTPClientTransport } from '/sdk.js';
window.run = async (url, key) => {
  const client = new Client({ name: 'browser-check', version: '0.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { 'x-litellm-api-key': key } },
  });
  try {
    await client.connect(transport);
    const tools = (await client.listTools()).tools.map((t) => t.name).sort();
    const echo = await client.callTool({ name: 'fx-interop_echo', arguments: { text: 'from the browser' } });
    let refusal;
    try {
      const r = await client.callTool({ name: 'fx-test_error_handling', arguments: {} });
      refusal = { isError: r.isError === true, text: r.content?.[0]?.text ?? '' };
    } catch (e) {
      refusal = { thrown: \`\${e.name}: \${e.message}\` };
    }
    await client.close();
    return { connected: true, tools, echo: echo.content?.[0]?.text, refusal };
  } catch (e) {
    return { connected: false, error: \`\${e.name}: \${e.message}\` };
  }
};
window.ready = true;
</script>`;

function serve(port) {
  const server = http.createServer((req, res) => {
    if (req.url === '/sdk.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(sdk);
    } else if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(page);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(Number(port), '127.0.0.1', () => resolve(server)));
}

const allowed = await serve(allowedPort);
const other = await serve(0);
const profile = mkdtempSync(join(tmpdir(), 'gk-chromium-'));
// Flags for a closed network: no background traffic, no first-run work, no sandbox (root).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

async function runFrom(port) {
  const tab = await browser.newPage();
  const console_ = [];
  tab.on('console', (m) => console_.push(m.text()));
  await tab.goto(`http://127.0.0.1:${port}/`);
  await tab.waitForFunction(() => window.ready === true, null, { timeout: 20_000 });
  const result = await tab.evaluate(([url, key]) => window.run(url, key), [gateway, 'sk-alice']);
  await tab.close();
  return { result, console: console_ };
}

try {
  await check('a page of an allowed origin lists, calls and reads a refusal as a refusal', async () => {
    const { result } = await runFrom(allowed.address().port);
    expect(result.connected, `did not connect: ${result.error}`);
    expect(result.tools.includes('fx-interop_echo'), `tools: ${result.tools}`);
    expect(!result.tools.some((t) => t.startsWith('fxsse-') || t.startsWith('evstdio-')), `another key's tools: ${result.tools}`);
    expect(!result.tools.includes('fx-test_error_handling'), `a deny-listed tool is listed: ${result.tools}`);
    expect(result.echo === 'from the browser', `echo: ${result.echo}`);
    expect(result.refusal.isError === true, `refusal: ${JSON.stringify(result.refusal)}`);
    return `${result.tools.length} tools, echo answered, deny-listed: isError`;
  });
  await check('a page of an origin the gateway does not name is blocked by the browser', async () => {
    const { result, console: messages } = await runFrom(other.address().port);
    expect(!result.connected, 'connected from an origin the gateway does not name');
    const cors = messages.find((m) => m.includes('CORS policy'));
    expect(cors, `no CORS block reported; the client failed with ${result.error}; console: ${messages.join(' | ')}`);
    return cors.slice(0, 140);
  });
} finally {
  await browser.close();
  allowed.close();
  other.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
