// The official TypeScript MCP SDK client driving `lastmile serve` in front of real servers.
// run.sh sets up the profile and the environment this reads (INTEROP_*).

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  ResourceListChangedNotificationSchema,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

import { BASE_ENV, Checks, assert, elicitationAnswer, textOf } from "./lib.mjs";

const env = process.env;
const LASTMILE = env.INTEROP_LASTMILE;
const NONCE = env.INTEROP_NONCE;
const API_KEY = env.INTEROP_API_KEY_VALUE;
const FS_DIR = env.INTEROP_FS_DIR;

/** Start `lastmile serve` (with a token file when given) and connect a capable client. */
async function connect(tokenFile) {
  const args = ["serve"];
  if (tokenFile) args.push("--token-file", tokenFile);
  // lastmile's own environment, plus a variable only lastmile has: no child may see it.
  const childEnv = { ...env, LASTMILE_INTEROP_CANARY: "only-lastmile-has-this" };
  delete childEnv.INTEROP_API_KEY_VALUE;
  const transport = new StdioClientTransport({ command: LASTMILE, args, env: childEnv, stderr: "inherit" });
  const client = new Client(
    { name: "interop-ts", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } } },
  );
  const seen = { listChanged: 0, toolsChanged: 0, sampled: 0, elicited: 0, rootsAsked: 0 };
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    seen.sampled += 1;
    return { model: "interop-model", role: "assistant", content: { type: "text", text: `sampled:${req.params.messages.length}` } };
  });
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    seen.elicited += 1;
    return { action: "accept", content: elicitationAnswer(req.params.requestedSchema) };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    seen.rootsAsked += 1;
    return { roots: [{ uri: `file://${FS_DIR}`, name: "interop" }] };
  });
  client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    seen.toolsChanged += 1;
  });
  client.setNotificationHandler(ResourceListChangedNotificationSchema, async () => {
    seen.listChanged += 1;
  });
  await client.connect(transport);
  return { client, seen };
}

/** List tools again after each tools/list_changed until `servers` all have tools (or 30 s). */
async function toolsOf(client, seen, servers) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const changes = seen.toolsChanged;
    const names = await allTools(client);
    const have = new Set(names.map((n) => n.split("__")[0]));
    if (servers.every((s) => have.has(s)) || Date.now() > deadline) return names;
    while (seen.toolsChanged === changes && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }
}

async function allTools(client) {
  const names = [];
  let cursor;
  do {
    const page = await client.listTools(cursor ? { cursor } : {});
    names.push(...page.tools.map((t) => t.name));
    cursor = page.nextCursor;
  } while (cursor);
  return names.sort();
}

const c = new Checks("typescript-sdk");
console.error("typescript SDK client, admin session:");
const { client, seen } = await connect(undefined);
let tools = [];

await c.check("tools from every server, namespaced", async () => {
  // Servers slower than the gateway's first-list grace are announced with list_changed.
  tools = await toolsOf(client, seen, ["everything", "memory", "filesystem", "time"]);
  for (const name of ["everything__echo", "everything__get-env", "memory__read_graph", "filesystem__list_directory", "time__get_current_time"]) {
    assert(tools.includes(name), `${name} missing from ${tools.join(", ")}`);
  }
  assert(tools.every((t) => /^[a-zA-Z0-9_-]{1,64}$/.test(t)), "a name breaks Claude's rule");
});

await c.check("everything__echo", async () => {
  const r = await client.callTool({ name: "everything__echo", arguments: { message: "hello interop" } });
  assert(textOf(r).includes("hello interop"), textOf(r));
});

await c.check("memory: create an entity, read it back", async () => {
  await client.callTool({
    name: "memory__create_entities",
    arguments: { entities: [{ name: "lastmile", entityType: "gateway", observations: ["interop"] }] },
  });
  const r = await client.callTool({ name: "memory__read_graph", arguments: {} });
  assert(JSON.stringify(r).includes("lastmile"), JSON.stringify(r));
});

await c.check("filesystem__list_directory in the allowed folder", async () => {
  const r = await client.callTool({ name: "filesystem__list_directory", arguments: { path: FS_DIR } });
  assert(!r.isError, textOf(r));
  assert(textOf(r).includes("hello.txt"), textOf(r));
});

await c.check("time__get_current_time (a PyPI server)", async () => {
  const r = await client.callTool({ name: "time__get_current_time", arguments: { timezone: "UTC" } });
  assert(!r.isError && textOf(r).includes("UTC"), textOf(r));
});

await c.check("get-env: only the allowed environment plus the delivered secret", async () => {
  const r = await client.callTool({ name: "everything__get-env", arguments: {} });
  const text = textOf(r);
  assert(!text.includes(API_KEY), "the secret's value came back unredacted");
  const vars = JSON.parse(text);
  const allowed = new Set([...BASE_ENV, "INTEROP_NONCE", "INTEROP_API_KEY"]);
  const extra = Object.keys(vars).filter((k) => !allowed.has(k));
  assert(extra.length === 0, `the child saw more than allowed: ${extra.join(", ")}`);
  assert(vars.INTEROP_NONCE === NONCE, "the plain env var did not arrive");
  assert(vars.INTEROP_API_KEY === "[REDACTED:INTEROP_API_KEY]", `secret shown as ${vars.INTEROP_API_KEY}`);
  assert(!("LASTMILE_INTEROP_CANARY" in vars), "lastmile's own environment leaked");
});

await c.check("sampling round trip (child → lastmile → client → child)", async () => {
  const r = await client.callTool({ name: "everything__trigger-sampling-request", arguments: { prompt: "hi", maxTokens: 5 } });
  assert(textOf(r).includes("sampled:1") && seen.sampled >= 1, textOf(r));
});

await c.check("elicitation round trip", async () => {
  const r = await client.callTool({ name: "everything__trigger-elicitation-request", arguments: {} });
  assert(seen.elicited >= 1, "no elicitation reached the client");
  assert(/accept/i.test(textOf(r)), textOf(r));
});

await c.check("roots round trip", async () => {
  const r = await client.callTool({ name: "everything__get-roots-list", arguments: {} });
  assert(textOf(r).includes(FS_DIR), textOf(r));
});

await c.check("progress notifications reach the client", async () => {
  let progress = 0;
  await client.callTool(
    { name: "everything__trigger-long-running-operation", arguments: { duration: 1, steps: 3 } },
    undefined,
    { onprogress: () => { progress += 1; } },
  );
  assert(progress >= 1, "no progress notification");
});

await c.check("a list-change notification reaches the client mid-session", async () => {
  // The everything server registers a session resource for each gzip it makes, and says so.
  const before = seen.listChanged;
  const data = `data:text/plain;base64,${Buffer.from(NONCE).toString("base64")}`;
  const r = await client.callTool({
    name: "everything__gzip-file-as-resource",
    arguments: { name: "interop.txt.gz", data, outputType: "resourceLink" },
  });
  assert(!r.isError, textOf(r));
  const deadline = Date.now() + 5000;
  while (seen.listChanged === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert(seen.listChanged > before, "no notifications/resources/list_changed");
  const { resources } = await client.listResources();
  assert(resources.some((x) => x.name === "interop.txt.gz"), "the new resource is not listed");
});

await client.close();

console.error("typescript SDK client, user session:");
await c.check("a non-admin session sees only its tier's servers", async () => {
  const { client: user, seen: userSeen } = await connect(env.INTEROP_USER_TOKEN_FILE);
  try {
    const names = await toolsOf(user, userSeen, ["everything", "time"]);
    assert(names.length > 0, "no tools");
    const servers = new Set(names.map((n) => n.split("__")[0]));
    assert([...servers].sort().join(",") === "everything,time", `servers: ${[...servers]}`);
    let hidden, unknown;
    try { hidden = await user.callTool({ name: "memory__read_graph", arguments: {} }); } catch (e) { hidden = { error: e.message }; }
    try { unknown = await user.callTool({ name: "nosuch__tool", arguments: {} }); } catch (e) { unknown = { error: e.message }; }
    const norm = (x) => JSON.stringify(x).replaceAll("memory__read_graph", "NAME").replaceAll("nosuch__tool", "NAME");
    assert(norm(hidden) === norm(unknown), `a hidden tool answers differently: ${norm(hidden)} vs ${norm(unknown)}`);
  } finally {
    await user.close();
  }
});

process.exit(c.summary() ? 0 : 1);
