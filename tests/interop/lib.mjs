// Shared by the interop clients: a tiny check runner that counts passes, failures and known
// gaps (assertions that fail because of the gateway core and are tracked, never deleted).

export class Checks {
  constructor(client) {
    this.client = client;
    this.pass = 0;
    this.fail = 0;
    this.gap = 0;
  }

  /** Run `fn`; a throw is a failure, or a known gap when `gap` names the reason. */
  async check(name, fn, gap) {
    try {
      await fn();
      this.pass += 1;
      console.error(`  ok    ${name}${gap ? " (known gap closed: drop the marker)" : ""}`);
    } catch (e) {
      if (gap) {
        this.gap += 1;
        console.error(`  GAP   ${name}: ${e.message} [known gap: ${gap}]`);
      } else {
        this.fail += 1;
        console.error(`  FAIL  ${name}: ${e.stack || e}`);
      }
    }
  }

  summary() {
    const line = `RESULT client=${this.client} pass=${this.pass} fail=${this.fail} gap=${this.gap}`;
    console.log(line);
    return this.fail === 0;
  }
}

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

/** The text of every text block of a tool result. */
export function textOf(result) {
  return (result.content || [])
    .filter((c) => c.type === "text")
    .map((c) => c.text)
    .join("\n");
}

/** Answer an elicitation schema with a value of the right type and format for each field. */
export function elicitationAnswer(schema) {
  const out = {};
  for (const [key, p] of Object.entries(schema?.properties || {})) {
    if (p.enum) out[key] = p.enum[0];
    else if (p.oneOf) out[key] = p.oneOf[0].const;
    else if (p.anyOf) out[key] = p.anyOf[0].const;
    else if (p.type === "boolean") out[key] = true;
    else if (p.type === "integer") out[key] = p.default ?? 42;
    else if (p.type === "number") out[key] = p.default ?? 3.5;
    else if (p.type === "array") {
      const items = p.items?.enum || p.items?.anyOf?.map((x) => x.const) || [];
      out[key] = items.slice(0, 1);
    } else if (p.format === "email") out[key] = "interop@example.com";
    else if (p.format === "uri") out[key] = "https://example.com/";
    else if (p.format === "date") out[key] = "2000-01-01";
    else if (p.format === "date-time") out[key] = "2000-01-01T00:00:00Z";
    else out[key] = p.default ?? "interop";
  }
  return out;
}

/** Variables a child may see: lastmile's base, its own allowlist variable, and `extra`. */
export const BASE_ENV = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "TMPDIR", "LASTMILE_CUSTOM_SECRETS"];
