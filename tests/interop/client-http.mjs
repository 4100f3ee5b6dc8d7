// The official TypeScript MCP SDK client over Streamable HTTP: `lastmile serve --http` in front of
// the same real servers as client.mjs, each request carrying a bearer token. The children's
// requests to the client (sampling, elicitation, roots) travel on the session's GET stream.
// run.sh sets up the profile and the environment this reads (INTEROP_*).

import { spawn, execFileSync } from "node:child_process";
import { createInterface } from "node:readline";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

import { Checks, assert, elicitationAnswer, textOf } from "./lib.mjs";

const env = process.env;
const LASTMILE = env.INTEROP_LASTMILE;
const API_KEY = env.INTEROP_API_KEY_VALUE;
const FS_DIR = env.INTEROP_FS_DIR;

/** `lastmile serve --http 127.0.0.1:0`, and the URL it prints. */
async function startServer() {
  const serverEnv = { ...env };
  delete serverEnv.INTEROP_API_KEY_VALUE;
  const proc = spawn(LASTMILE, ["serve", "--http", "127.0.0.1:0"], { env: serverEnv, stdio: ["ignore", "inherit", "pipe"] });
  const lines = createInterface({ input: proc.stderr });
  let stderr = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no address within 30 s: ${stderr}`)), 30_000);
    lines.on("line", (line) => {
      stderr += `${line}\n`;
      const m = line.match(/serving MCP at (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on("exit", (code) => reject(new Error(`lastmile exited (${code}): ${stderr}`)));
  });
  return { proc, url, stderr: () => stderr };
}

function token(sub, tier) {
  return execFileSync(LASTMILE, ["token", "issue", "--sub", sub, "--tier", tier, "--ttl", "30m"], { env }).toString().trim();
}

async function connect(url, bearer) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: bearer ? { headers: { Authorization: `Bearer ${bearer}` } } : {},
  });
  const client = new Client(
    { name: "interop-ts-http", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } } },
  );
  const seen = { toolsChanged: 0, sampled: 0, elicited: 0 };
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    seen.sampled += 1;
    return { model: "interop-model", role: "assistant", content: { type: "text", text: `sampled:${req.params.messages.length}` } };
  });
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    seen.elicited += 1;
    return { action: "accept", content: elicitationAnswer(req.params.requestedSchema) };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: `file://${FS_DIR}`, name: "interop" }] }));
  client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    seen.toolsChanged += 1;
  });
  await client.connect(transport);
  return { client, seen, transport };
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

/** List again after each tools/list_changed until `servers` all have tools (or 30 s). */
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

const c = new Checks("typescript-sdk-http");
const server = await startServer();
console.error(`typescript SDK client over Streamable HTTP (${server.url}):`);

await c.check("no credential: refused with 401, nothing served", async () => {
  let error;
  try {
    await connect(server.url, undefined);
  } catch (e) {
    error = e;
  }
  assert(error, "an unauthenticated client connected");
  assert(/401|unauthori[sz]ed/i.test(String(error)), String(error));
});

const admin = await connect(server.url, token("interop-admin", "admin"));
await c.check("a session id was issued", async () => {
  assert(admin.transport.sessionId, "no Mcp-Session-Id");
});

await c.check("tools from every server, namespaced", async () => {
  const tools = await toolsOf(admin.client, admin.seen, ["everything", "memory", "filesystem", "time"]);
  for (const name of ["everything__echo", "memory__read_graph", "filesystem__list_directory", "time__get_current_time"]) {
    assert(tools.includes(name), `${name} missing from ${tools.join(", ")}`);
  }
});

await c.check("everything__echo", async () => {
  const r = await admin.client.callTool({ name: "everything__echo", arguments: { message: "hello over http" } });
  assert(textOf(r).includes("hello over http"), textOf(r));
});

await c.check("get-env: the delivered secret comes back redacted", async () => {
  const r = await admin.client.callTool({ name: "everything__get-env", arguments: {} });
  const text = textOf(r);
  assert(!text.includes(API_KEY), "the secret's value came back unredacted");
  assert(JSON.parse(text).INTEROP_API_KEY === "[REDACTED:INTEROP_API_KEY]", text);
});

await c.check("sampling round trip over the session's stream", async () => {
  const r = await admin.client.callTool({ name: "everything__trigger-sampling-request", arguments: { prompt: "hi", maxTokens: 5 } });
  assert(textOf(r).includes("sampled:1") && admin.seen.sampled >= 1, textOf(r));
});

await c.check("elicitation round trip over the session's stream", async () => {
  const r = await admin.client.callTool({ name: "everything__trigger-elicitation-request", arguments: {} });
  assert(admin.seen.elicited >= 1, "no elicitation reached the client");
  assert(/accept/i.test(textOf(r)), textOf(r));
});

await c.check("roots round trip over the session's stream", async () => {
  const r = await admin.client.callTool({ name: "everything__get-roots-list", arguments: {} });
  assert(textOf(r).includes(FS_DIR), textOf(r));
});

await c.check("progress notifications reach the client", async () => {
  let progress = 0;
  await admin.client.callTool(
    { name: "everything__trigger-long-running-operation", arguments: { duration: 1, steps: 3 } },
    undefined,
    { onprogress: () => { progress += 1; } },
  );
  assert(progress >= 1, "no progress notification");
});

await c.check("a user-tier session sees only its tier's servers", async () => {
  const user = await connect(server.url, token("interop-user", "user"));
  try {
    const names = await toolsOf(user.client, user.seen, ["everything", "time"]);
    const servers = new Set(names.map((n) => n.split("__")[0]));
    assert([...servers].sort().join(",") === "everything,time", `servers: ${[...servers]}`);
  } finally {
    await user.transport.terminateSession().catch(() => {});
    await user.client.close();
  }
});

await admin.transport.terminateSession().catch(() => {});
await admin.client.close();
server.proc.kill("SIGTERM");
await new Promise((r) => server.proc.on("exit", r));
await c.check("the secret is not on lastmile's stderr", async () => {
  assert(!server.stderr().includes(API_KEY), "the secret reached stderr");
});

process.exit(c.summary() ? 0 : 1);
