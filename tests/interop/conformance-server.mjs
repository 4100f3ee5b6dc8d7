// A stdio MCP server with the tools, resources and prompts that the official conformance suite's
// server scenarios call (each scenario's "Server Implementation Requirements"), written on the
// TypeScript SDK's low-level `Server` so every schema goes out exactly as written here.
//
// The suite only talks HTTP, and lastmile's children speak stdio: conformance-http.sh puts this
// server behind `lastmile serve --http` (with an empty prefix, so the suite sees these names) and
// points the suite at lastmile. What the suite then measures is lastmile's HTTP front and its
// forwarding, with a child that does what each scenario asks.

import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  ElicitResultSchema,
  CreateMessageResultSchema,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListResourcesRequestSchema,
  ListToolsRequestSchema,
  ReadResourceRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

// A 1x1 PNG and a WAV header with two bytes of silence.
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

const LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];
let minLevel = "debug";
const subscriptions = new Set();

const server = new Server(
  { name: "lastmile-conformance-fixture", version: "1.0.0" },
  {
    capabilities: {
      tools: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      prompts: { listChanged: true },
      logging: {},
      completions: {},
    },
  },
);

const noArgs = { type: "object", properties: {} };
const text = (t) => ({ type: "text", text: t });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function log(level, data) {
  if (LEVELS.indexOf(level) < LEVELS.indexOf(minLevel)) return;
  await server.notification({ method: "notifications/message", params: { level, data } });
}

/** Each tool: its listing and what a call does. */
const tools = {
  test_simple_text: {
    description: "Returns one text block",
    call: async () => ({ content: [text("This is a simple text response for testing.")] }),
  },
  test_image_content: {
    description: "Returns one PNG image block",
    call: async () => ({ content: [{ type: "image", data: PNG, mimeType: "image/png" }] }),
  },
  test_audio_content: {
    description: "Returns one WAV audio block",
    call: async () => ({ content: [{ type: "audio", data: WAV, mimeType: "audio/wav" }] }),
  },
  test_embedded_resource: {
    description: "Returns an embedded text resource",
    call: async () => ({
      content: [
        {
          type: "resource",
          resource: {
            uri: "test://embedded-resource",
            mimeType: "text/plain",
            text: "This is an embedded resource content.",
          },
        },
      ],
    }),
  },
  test_multiple_content_types: {
    description: "Returns text, an image and an embedded resource",
    call: async () => ({
      content: [
        text("Multiple content types test:"),
        { type: "image", data: PNG, mimeType: "image/png" },
        {
          type: "resource",
          resource: {
            uri: "test://mixed-content-resource",
            mimeType: "application/json",
            text: JSON.stringify({ test: "data", value: 123 }),
          },
        },
      ],
    }),
  },
  test_tool_with_logging: {
    description: "Sends three info log messages while it runs",
    call: async () => {
      await log("info", "Tool execution started");
      await sleep(50);
      await log("info", "Tool processing data");
      await sleep(50);
      await log("info", "Tool execution completed");
      return { content: [text("Tool with logging executed successfully")] };
    },
  },
  test_tool_with_progress: {
    description: "Reports progress 0, 50 and 100 of 100",
    call: async (_args, extra) => {
      const token = extra._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (token !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: token, progress, total: 100, message: `step ${progress}` },
          });
        }
        if (progress < 100) await sleep(50);
      }
      return { content: [text(`progress done (token ${String(token)})`)] };
    },
  },
  test_error_handling: {
    description: "Always fails with a tool-level error",
    call: async () => ({
      isError: true,
      content: [text("This tool intentionally returns an error for testing")],
    }),
  },
  test_sampling: {
    description: "Asks the client for an LLM completion of the prompt",
    inputSchema: {
      type: "object",
      properties: { prompt: { type: "string", description: "The prompt to send to the LLM" } },
      required: ["prompt"],
    },
    call: async (args, extra) => {
      const answer = await extra.sendRequest(
        {
          method: "sampling/createMessage",
          params: {
            messages: [{ role: "user", content: text(String(args.prompt)) }],
            maxTokens: 100,
          },
        },
        CreateMessageResultSchema,
      );
      const said = answer.content?.type === "text" ? answer.content.text : JSON.stringify(answer.content);
      return { content: [text(`LLM response: ${said}`)] };
    },
  },
  test_elicitation: {
    description: "Asks the user for a username and an email",
    inputSchema: {
      type: "object",
      properties: { message: { type: "string", description: "The message to show the user" } },
      required: ["message"],
    },
    call: async (args, extra) => {
      const answer = await elicit(extra, String(args.message), {
        type: "object",
        properties: {
          username: { type: "string", description: "User's response" },
          email: { type: "string", description: "User's email address" },
        },
        required: ["username", "email"],
      });
      return { content: [text(`User response: ${JSON.stringify(answer)}`)] };
    },
  },
  test_elicitation_sep1034_defaults: {
    description: "Elicits one field of each primitive type, each with a default",
    call: async (_args, extra) => {
      const answer = await elicit(extra, "Defaults for every primitive type", {
        type: "object",
        properties: {
          name: { type: "string", description: "User name", default: "John Doe" },
          age: { type: "integer", description: "User age", default: 30 },
          score: { type: "number", description: "User score", default: 95.5 },
          status: {
            type: "string",
            description: "User status",
            enum: ["active", "inactive", "pending"],
            default: "active",
          },
          verified: { type: "boolean", description: "Verified", default: true },
        },
        required: [],
      });
      return { content: [text(completed(answer))] };
    },
  },
  test_elicitation_sep1330_enums: {
    description: "Elicits the five enum shapes",
    call: async (_args, extra) => {
      const answer = await elicit(extra, "Every enum shape", {
        type: "object",
        properties: {
          untitledSingle: { type: "string", enum: ["option1", "option2", "option3"] },
          titledSingle: {
            type: "string",
            oneOf: [
              { const: "value1", title: "First Option" },
              { const: "value2", title: "Second Option" },
              { const: "value3", title: "Third Option" },
            ],
          },
          legacyEnum: {
            type: "string",
            enum: ["opt1", "opt2", "opt3"],
            enumNames: ["Option One", "Option Two", "Option Three"],
          },
          untitledMulti: {
            type: "array",
            items: { type: "string", enum: ["option1", "option2", "option3"] },
          },
          titledMulti: {
            type: "array",
            items: {
              anyOf: [
                { const: "value1", title: "First Choice" },
                { const: "value2", title: "Second Choice" },
                { const: "value3", title: "Third Choice" },
              ],
            },
          },
        },
        required: [],
      });
      return { content: [text(completed(answer))] };
    },
  },
  test_reconnection: {
    // The suite's SSE polling scenario expects the server to close the POST's SSE stream
    // mid-call; a stdio child cannot reach lastmile's HTTP streams, so this only answers late.
    description: "Answers after a short delay (SSE polling scenario)",
    call: async () => {
      await sleep(100);
      return { content: [text("Reconnection test completed successfully.")] };
    },
  },
  json_schema_2020_12_tool: {
    description: "Tool with JSON Schema 2020-12 features",
    inputSchema: {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      $defs: {
        address: {
          type: "object",
          properties: { street: { type: "string" }, city: { type: "string" } },
        },
      },
      properties: { name: { type: "string" }, address: { $ref: "#/$defs/address" } },
      additionalProperties: false,
    },
    call: async (args) => ({ content: [text(`received ${JSON.stringify(args)}`)] }),
  },
};

function elicit(extra, message, requestedSchema) {
  return extra.sendRequest(
    { method: "elicitation/create", params: { message, requestedSchema } },
    ElicitResultSchema,
  );
}

function completed(answer) {
  return `Elicitation completed: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`;
}

server.setRequestHandler(ListToolsRequestSchema, async () => ({
  tools: Object.entries(tools).map(([name, t]) => ({
    name,
    description: t.description,
    inputSchema: t.inputSchema ?? noArgs,
  })),
}));

server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
  const tool = tools[request.params.name];
  if (!tool) {
    return { isError: true, content: [text(`unknown tool ${request.params.name}`)] };
  }
  try {
    return await tool.call(request.params.arguments ?? {}, { ...extra, _meta: request.params._meta });
  } catch (e) {
    return { isError: true, content: [text(e instanceof Error ? e.message : String(e))] };
  }
});

const resources = {
  "test://static-text": {
    name: "static-text",
    description: "A static text resource",
    mimeType: "text/plain",
    read: (uri) => ({ uri, mimeType: "text/plain", text: "This is the content of the static text resource." }),
  },
  "test://static-binary": {
    name: "static-binary",
    description: "A static PNG resource",
    mimeType: "image/png",
    read: (uri) => ({ uri, mimeType: "image/png", blob: PNG }),
  },
  "test://watched-resource": {
    name: "watched-resource",
    description: "A resource to subscribe to",
    mimeType: "text/plain",
    read: (uri) => ({ uri, mimeType: "text/plain", text: "Watched resource content" }),
  },
};
const TEMPLATE = /^test:\/\/template\/([^/]+)\/data$/;

server.setRequestHandler(ListResourcesRequestSchema, async () => ({
  resources: Object.entries(resources).map(([uri, r]) => ({
    uri,
    name: r.name,
    description: r.description,
    mimeType: r.mimeType,
  })),
}));

server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
  resourceTemplates: [
    {
      uriTemplate: "test://template/{id}/data",
      name: "template",
      description: "Data for one id",
      mimeType: "application/json",
    },
  ],
}));

server.setRequestHandler(ReadResourceRequestSchema, async (request) => {
  const uri = request.params.uri;
  const fixed = resources[uri];
  if (fixed) return { contents: [fixed.read(uri)] };
  const m = TEMPLATE.exec(uri);
  if (m) {
    const id = decodeURIComponent(m[1]);
    const body = JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` });
    return { contents: [{ uri, mimeType: "application/json", text: body }] };
  }
  throw Object.assign(new Error(`resource not found: ${uri}`), { code: -32002 });
});

server.setRequestHandler(SubscribeRequestSchema, async (request) => {
  subscriptions.add(request.params.uri);
  return {};
});

server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
  subscriptions.delete(request.params.uri);
  return {};
});

const prompts = {
  test_simple_prompt: {
    description: "A prompt without arguments",
    get: () => [{ role: "user", content: text("This is a simple prompt for testing.") }],
  },
  test_prompt_with_arguments: {
    description: "A prompt with two arguments",
    arguments: [
      { name: "arg1", description: "First test argument", required: true },
      { name: "arg2", description: "Second test argument", required: true },
    ],
    get: (a) => [
      { role: "user", content: text(`Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'`) },
    ],
  },
  test_prompt_with_embedded_resource: {
    description: "A prompt that embeds a resource",
    arguments: [{ name: "resourceUri", description: "URI of the resource to embed", required: true }],
    get: (a) => [
      {
        role: "user",
        content: {
          type: "resource",
          resource: {
            uri: a.resourceUri,
            mimeType: "text/plain",
            text: "Embedded resource content for testing.",
          },
        },
      },
      { role: "user", content: text("Please process the embedded resource above.") },
    ],
  },
  test_prompt_with_image: {
    description: "A prompt with an image",
    get: () => [
      { role: "user", content: { type: "image", data: PNG, mimeType: "image/png" } },
      { role: "user", content: text("Please analyze the image above.") },
    ],
  },
};

server.setRequestHandler(ListPromptsRequestSchema, async () => ({
  prompts: Object.entries(prompts).map(([name, p]) => ({
    name,
    description: p.description,
    ...(p.arguments ? { arguments: p.arguments } : {}),
  })),
}));

server.setRequestHandler(GetPromptRequestSchema, async (request) => {
  const prompt = prompts[request.params.name];
  if (!prompt) throw Object.assign(new Error(`unknown prompt ${request.params.name}`), { code: -32602 });
  return { messages: prompt.get(request.params.arguments ?? {}) };
});

server.setRequestHandler(CompleteRequestSchema, async (request) => {
  const partial = String(request.params.argument?.value ?? "");
  const values = ["paris", "park", "party", "test", "testing"].filter((v) => v.startsWith(partial));
  return { completion: { values, total: values.length, hasMore: false } };
});

server.setRequestHandler(SetLevelRequestSchema, async (request) => {
  minLevel = request.params.level;
  return {};
});

await server.connect(new StdioServerTransport());
