// The real Claude Code CLI, offline, against lastmile: a small stand-in for the Messages API on
// loopback answers the first turn with a tool_use for a lastmile tool (everything's get-env) and
// records the tool_result Claude Code sends back. The result must hold a per-run nonce that only
// the child's environment has, the delivered secret only as its redaction marker, and the call
// must have its audit row. run.sh sets up the profile and the environment (INTEROP_*).

import { spawnSync, spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import { Checks, assert } from "./lib.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const CLAUDE = join(here, "node_modules", ".bin", "claude");
const env = process.env;
const LASTMILE = env.INTEROP_LASTMILE;
const NONCE = env.INTEROP_NONCE;
const API_KEY = env.INTEROP_API_KEY_VALUE;
const TOOL = "mcp__lastmile__everything__get-env";
const TOOL_USE_ID = "toolu_01InteropLastmileGetEnv";
const TIME_TOOL = "mcp__lastmile__time__get_current_time";

const requests = [];
let toolResult = null;
let waited = false;
let sleeps = 0;

/** Server-sent events for one assistant message made of `blocks`. */
function sse(blocks, stopReason) {
  const events = [];
  const push = (type, data) => events.push(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  push("message_start", {
    message: {
      id: `msg_interop_${requests.length}`, type: "message", role: "assistant", model: "claude-interop",
      content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 1 },
    },
  });
  blocks.forEach((b, index) => {
    if (b.type === "text") {
      push("content_block_start", { index, content_block: { type: "text", text: "" } });
      push("content_block_delta", { index, delta: { type: "text_delta", text: b.text } });
    } else {
      push("content_block_start", { index, content_block: { type: "tool_use", id: b.id, name: b.name, input: {} } });
      push("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: JSON.stringify(b.input) } });
    }
    push("content_block_stop", { index });
  });
  push("message_delta", { delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: 5 } });
  push("message_stop", {});
  return events.join("");
}

function answer(body) {
  const last = body.messages?.[body.messages.length - 1];
  const blocks = Array.isArray(last?.content) ? last.content : [];
  const result = blocks.find((b) => b.type === "tool_result" && b.tool_use_id === TOOL_USE_ID);
  if (result) {
    toolResult = result;
    return { blocks: [{ type: "text", text: "The tool ran through lastmile." }], stop: "end_turn" };
  }
  const offered = (body.tools || []).map((t) => t.name);
  const allUp = offered.includes(TOOL) && offered.includes(TIME_TOOL);
  if (allUp || (offered.includes(TOOL) && sleeps >= 10)) {
    return { blocks: [{ type: "tool_use", id: TOOL_USE_ID, name: TOOL, input: {} }], stop: "tool_use" };
  }
  // Claude Code connects MCP servers in the background; a model asks to wait for them.
  if (offered.includes("WaitForMcpServers") && !waited) {
    waited = true;
    return { blocks: [{ type: "tool_use", id: "toolu_01InteropWait", name: "WaitForMcpServers", input: { servers: ["lastmile"] } }], stop: "tool_use" };
  }
  // lastmile answers the first list after a short grace and announces slower servers with
  // tools/list_changed; on a cold profile a model may have to wait a moment for them.
  if (sleeps < 10) {
    sleeps += 1;
    return { blocks: [{ type: "tool_use", id: `toolu_01InteropSleep${sleeps}`, name: "Bash", input: { command: "sleep 1", description: "wait for the tools" } }], stop: "tool_use" };
  }
  return { blocks: [{ type: "text", text: "ok" }], stop: "end_turn" };
}

const server = createServer((req, res) => {
  let raw = "";
  req.on("data", (d) => { raw += d; });
  req.on("end", () => {
    const path = req.url.split("?")[0];
    if (req.method === "POST" && path === "/v1/messages") {
      const body = JSON.parse(raw || "{}");
      requests.push(body);
      const { blocks, stop } = answer(body);
      if (body.stream) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(sse(blocks, stop));
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({
          id: `msg_interop_${requests.length}`, type: "message", role: "assistant", model: "claude-interop",
          content: blocks.map((b) => (b.type === "text" ? b : { ...b })), stop_reason: stop, stop_sequence: null,
          usage: { input_tokens: 10, output_tokens: 5 },
        }));
      }
    } else if (req.method === "POST" && path === "/v1/messages/count_tokens") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ input_tokens: 10 }));
    } else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ type: "error", error: { type: "not_found_error", message: "stand-in" } }));
    }
  });
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const port = server.address().port;

const project = mkdtempSync(join(tmpdir(), "lastmile-claude-"));
writeFileSync(join(project, "README.md"), "interop\n");
const claudeEnv = {
  ...env,
  ANTHROPIC_BASE_URL: `http://127.0.0.1:${port}`,
  ANTHROPIC_API_KEY: "sk-ant-interop-not-a-real-key",
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
  DISABLE_AUTOUPDATER: "1",
  // Offer MCP tools directly in the request, not behind the ToolSearch tool.
  ENABLE_TOOL_SEARCH: "false",
  DISABLE_TELEMETRY: "1",
  DISABLE_ERROR_REPORTING: "1",
  // lastmile's own environment only: the claude process must not hand the key to the child.
  LASTMILE_INTEROP_CANARY: "only-lastmile-has-this",
};
delete claudeEnv.INTEROP_API_KEY_VALUE;

function claude(args, timeoutMs = 120_000) {
  return new Promise((resolve) => {
    const child = spawn(CLAUDE, args, { cwd: project, env: claudeEnv, stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    child.stdout.on("data", (d) => { out += d; });
    child.stderr.on("data", (d) => { err += d; });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => { clearTimeout(timer); resolve({ code, out, err }); });
  });
}

const c = new Checks("claude-code");
console.error(`claude code ${spawnSync(CLAUDE, ["--version"], { env: claudeEnv }).stdout.toString().trim()}:`);

await c.check("claude mcp add lastmile", async () => {
  const r = await claude(["mcp", "add", "--scope", "user", "lastmile", "-e", `LASTMILE_DATA_DIR=${env.LASTMILE_DATA_DIR}`,
    "--", LASTMILE, "--profile", env.LASTMILE_PROFILE, "--config-dir", env.LASTMILE_CONFIG_DIR,
    "--secrets-backend", env.LASTMILE_SECRETS_BACKEND, "serve"]);
  assert(r.code === 0, `exit ${r.code}: ${r.out}${r.err}`);
});

await c.check("claude mcp list connects to lastmile", async () => {
  const r = await claude(["mcp", "list"]);
  assert(/lastmile.*(Connected|✓)/.test(r.out), `${r.out}${r.err}`);
});

let run;
await c.check("claude -p lists lastmile's tools and calls one", async () => {
  run = await claude(["-p", "Show me the environment of the everything server.", "--allowedTools", TOOL,
    "--allowedTools", "WaitForMcpServers", "--allowedTools", "Bash(sleep:*)", "--output-format", "json", "--max-turns", "16"]);
  const offered = requests.flatMap((r) => (r.tools || []).map((t) => t.name));
  assert(offered.includes(TOOL), `Claude Code did not offer ${TOOL}; offered: ${[...new Set(offered)].filter((n) => n.startsWith("mcp__")).join(", ")}; exit ${run.code}: ${run.err.slice(-2000)}`);
  assert(offered.includes(TIME_TOOL), "time's tools are missing");
  console.error(`  (the model waited ${sleeps} turn(s) of one second for late servers)`);
  assert(toolResult, `no tool_result reached the stand-in; exit ${run.code}: ${run.out.slice(-1000)}${run.err.slice(-1000)}`);
});

await c.check("the tool_result holds the nonce only the child had", async () => {
  const text = JSON.stringify(toolResult);
  assert(text.includes(NONCE), `nonce missing: ${text.slice(0, 500)}`);
  assert(!toolResult.is_error, text.slice(0, 500));
});

await c.check("the delivered secret reached the model only as its redaction marker", async () => {
  const all = JSON.stringify(requests);
  assert(!all.includes(API_KEY), "the secret's value reached the Messages API");
  assert(JSON.stringify(toolResult).includes("[REDACTED:INTEROP_API_KEY]"), "the secret was not delivered");
  assert(!JSON.stringify(toolResult).includes("LASTMILE_INTEROP_CANARY"), "lastmile's environment leaked");
});

await c.check("the call has its audit row", async () => {
  const r = spawnSync(LASTMILE, ["audit", "query", "--tool", "get-env", "--json"], { env });
  const rows = JSON.parse(r.stdout.toString() || "[]");
  assert(rows.length >= 1, `no audit row: ${r.stdout}${r.stderr}`);
  const row = rows[rows.length - 1];
  assert(row.server === "everything" && /ok/.test(JSON.stringify(row.status)), JSON.stringify(row));
  assert(!JSON.stringify(rows).includes(API_KEY), "the secret is in the audit log");
});

function logLines() {
  const dir = join(env.LASTMILE_DATA_DIR, "logs");
  return readdirSync(dir).flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n"));
}
const refusedOnModern = "server-to-client requests are not allowed on protocol 2026-07-28";
const notOffered = "server/discover: 2026-07-28 is not offered";
const modern = logLines().some((l) => l.includes(refusedOnModern));
console.error(`  protocol Claude Code negotiated with lastmile: ${modern ? "2026-07-28 (server/discover)" : "2025-x (initialize)"}`);

// filesystem and everything ask the client for roots, which 2026-07-28 cannot carry: lastmile's
// discover answer leaves 2026-07-28 out, Claude Code falls back to initialize, and no child's
// request to the client is refused.
await c.check("discover leaves out 2026-07-28 where a child asks the client, and no child request is refused", async () => {
  const lines = logLines();
  assert(lines.some((l) => l.includes(notOffered)), "lastmile did not decline 2026-07-28 at discover");
  const refused = lines.filter((l) => l.includes(refusedOnModern));
  assert(refused.length === 0, `${refused.length} child request(s) refused with -32600, e.g. filesystem's initial roots/list`);
});

server.close();
process.exit(c.summary() ? 0 : 1);
