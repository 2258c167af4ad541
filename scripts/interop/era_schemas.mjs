// Validates replies the gateway built itself against the published MCP JSON schema of each
// reply's protocol era.
//
// usage: node era_schemas.mjs CONFORMANCE_DIR REPLIES.jsonl
//
// CONFORMANCE_DIR is the installed @modelcontextprotocol/conformance package (0.2.x). It carries
// the specification's schema.json of 2025-03-26, 2025-06-18, 2025-11-25 and 2026-07-28 inside
// its bundle, as the data its own `wire-schema-valid` check uses; they are read from there at
// run time, so nothing of them is kept in this repository. ajv (a dependency of that package)
// compiles them.
//
// Each line of REPLIES.jsonl is {"era", "method", "context", "reply"} (tests/eras.rs writes them
// when MCP_ERA_REPLIES names the file). Every reply must be a valid JSON-RPC response or error
// of its era, and a result must be a valid result of its method. A line whose era has no schema
// in the package fails, and so does an empty file: nothing passes unchecked.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const [pkgDir, repliesPath] = process.argv.slice(2);
if (!pkgDir || !repliesPath) {
  console.error("usage: node era_schemas.mjs CONFORMANCE_DIR REPLIES.jsonl");
  process.exit(2);
}
const require = createRequire(path.join(pkgDir, "package.json"));
const Ajv07 = require("ajv").default;
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

// The bundle names each era's schema object in one map: {"2025-03-26": X, ..., [V]: Y}.
function schemasFrom(bundle) {
  const map = bundle.match(
    /const [\w$]+=\{"2025-03-26":([\w$]+),"2025-06-18":([\w$]+),"2025-11-25":([\w$]+),\[[\w$]+\]:([\w$]+)\}/,
  );
  if (!map) throw new Error("the conformance bundle has no era → schema map this script knows");
  const eras = ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];
  const out = {};
  eras.forEach((era, i) => {
    out[era] = objectLiteral(bundle, map[i + 1]);
  });
  return out;
}

// Reads the object literal assigned to `name` (`name={$schema:...}`) and evaluates it alone.
// The literal holds only keys, strings (template or quoted), numbers, booleans and nesting.
function objectLiteral(bundle, name) {
  const start = bundle.search(new RegExp(`[^\\w$]${name.replace("$", "\\$")}=\\{\\$schema:`));
  if (start < 0) throw new Error(`schema object ${name} not found in the bundle`);
  const open = bundle.indexOf("{", start);
  let depth = 0;
  let quote = null;
  for (let i = open; i < bundle.length; i++) {
    const c = bundle[i];
    if (quote) {
      if (c === "\\") i++;
      else if (c === quote) quote = null;
      else if (quote === "`" && c === "$" && bundle[i + 1] === "{")
        throw new Error(`schema object ${name} holds an interpolation`);
      continue;
    }
    if (c === "`" || c === '"' || c === "'") quote = c;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) {
      const text = bundle.slice(open, i + 1);
      const schema = new Function(`"use strict"; return (${text});`)();
      if (typeof schema.$schema !== "string") throw new Error(`${name} is not a JSON schema`);
      return schema;
    }
  }
  throw new Error(`schema object ${name} never closes`);
}

const bundle = readFileSync(path.join(pkgDir, "dist", "index.js"), "utf8");
const version = JSON.parse(readFileSync(path.join(pkgDir, "package.json"), "utf8")).version;
const schemas = schemasFrom(bundle);

// One validator per era and definition, built on first use.
const validators = new Map();
function validator(era, def) {
  const key = `${era}#${def}`;
  if (validators.has(key)) return validators.get(key);
  const schema = schemas[era];
  if (!schema) throw new Error(`no schema for ${era} in conformance ${version}`);
  const defs = schema.$defs ? "$defs" : "definitions";
  if (!schema[defs][def]) throw new Error(`${era} defines no ${def}`);
  if (!validators.has(era)) {
    const Ajv = schema.$schema.includes("2020-12") ? Ajv2020 : Ajv07;
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema(schema, era);
    validators.set(era, ajv);
  }
  const v = validators.get(era).getSchema(`${era}#/${defs}/${def}`);
  validators.set(key, v);
  return v;
}

// The definitions a reply is held against, by era: the schemas renamed the envelope over time.
function envelope(era, reply) {
  const defs = schemas[era]?.$defs ?? schemas[era]?.definitions ?? {};
  if ("error" in reply) return defs.JSONRPCErrorResponse ? "JSONRPCErrorResponse" : "JSONRPCError";
  return defs.JSONRPCResultResponse ? "JSONRPCResultResponse" : "JSONRPCResponse";
}
const RESULTS = {
  "tools/call": "CallToolResult",
  "prompts/get": "GetPromptResult",
  "resources/read": "ReadResourceResult",
  "tools/list": "ListToolsResult",
};

const lines = readFileSync(repliesPath, "utf8").split("\n").filter((l) => l.trim());
if (lines.length === 0) {
  console.error(`[era-schemas] ${repliesPath} holds no replies`);
  process.exit(1);
}
let failed = 0;
const counts = {};
for (const line of lines) {
  const { era, method, context, reply } = JSON.parse(line);
  const checks = [[envelope(era, reply), reply]];
  if ("result" in reply) {
    const def = RESULTS[method];
    if (!def) throw new Error(`${context}: no result definition known for ${method}`);
    checks.push([def, reply.result]);
  }
  for (const [def, value] of checks) {
    const v = validator(era, def);
    if (!v(value)) {
      failed++;
      console.error(`[era-schemas] FAIL ${context}: not a valid ${def} of ${era}`);
      console.error(`  ${JSON.stringify(reply)}`);
      for (const e of v.errors) console.error(`  ${e.instancePath || "/"} ${e.message}`);
    }
  }
  counts[era] = (counts[era] ?? 0) + 1;
}
const summary = Object.entries(counts)
  .map(([era, n]) => `${era}: ${n}`)
  .join(", ");
console.log(
  `[era-schemas] ${lines.length} replies against the schemas in conformance ${version} (${summary}); ${failed} failed check(s)`,
);
process.exit(failed ? 1 : 0);
