#!/usr/bin/env bash
# Time from a fresh profile to a working `lastmile tools`: `lastmile init` + `lastmile import` of a
# Claude Desktop config with three servers (everything and memory from npm, time from PyPI; one
# API key in plain text), against the baseline of the same profile set up by hand (signing key,
# secret, token, three hand-written server files, servers check). Each path runs in its own
# temporary HOME; the first `tools` of each starts the three servers.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lastmile="${LASTMILE_BIN:-$here/../../target/debug/lastmile}"
python="$here/.venv/bin/python"
node="$(command -v node)"
nm="$here/node_modules/@modelcontextprotocol"
now() { date +%s.%N; }

setup() {
    world="$(mktemp -d)"
    export HOME="$world/home" LASTMILE_PROFILE="m$1-$$" LASTMILE_SECRETS_BACKEND="${LASTMILE_SECRETS_BACKEND:-keyutils}"
    unset LASTMILE_CONFIG_DIR LASTMILE_DATA_DIR
    mkdir -p "$HOME/.config/Claude"
}
teardown() {
    for name in $("$lastmile" secrets list 2>/dev/null | cut -f1); do "$lastmile" secrets rm "$name" >/dev/null 2>&1 || true; done
    rm -rf "$world"
}

# lastmile init + import
setup new
cat > "$HOME/.config/Claude/claude_desktop_config.json" <<JSON
{ "mcpServers": {
  "everything": { "command": "$node", "args": ["$nm/server-everything/dist/index.js", "stdio"],
                  "env": { "EVERYTHING_API_KEY": "sk-measure-0123456789abcdef0123" } },
  "memory": { "command": "$node", "args": ["$nm/server-memory/dist/index.js"] },
  "time": { "command": "$python", "args": ["-m", "mcp_server_time"] } } }
JSON
t0=$(now)
"$lastmile" init >/dev/null
"$lastmile" import --rewrite >/dev/null 2>&1
tm=$(now)
n=$("$lastmile" tools 2>/dev/null | wc -l)
t1=$(now)
teardown
echo "init + import --rewrite + tools: $(echo "$t1 - $t0" | bc) s (setup $(echo "$tm - $t0" | bc) s), 3 commands, $n tools"

# baseline: the five steps by hand
setup old
cfg="$HOME/.config/lastmile/$LASTMILE_PROFILE"
t0=$(now)
"$lastmile" secrets generate-signing-key >/dev/null
printf %s sk-measure-0123456789abcdef0123 | "$lastmile" secrets set EVERYTHING_API_KEY >/dev/null
"$lastmile" token issue --sub me --tier admin --ttl 30d --save 2>/dev/null
mkdir -p "$cfg/servers.d"
printf 'command = "%s"\nargs = ["%s", "stdio"]\nsecrets = ["EVERYTHING_API_KEY"]\n' "$node" "$nm/server-everything/dist/index.js" > "$cfg/servers.d/everything.toml"
printf 'command = "%s"\nargs = ["%s"]\n' "$node" "$nm/server-memory/dist/index.js" > "$cfg/servers.d/memory.toml"
printf 'command = "%s"\nargs = ["-m", "mcp_server_time"]\n' "$python" > "$cfg/servers.d/time.toml"
"$lastmile" servers check >/dev/null
tm=$(now)
n=$("$lastmile" tools 2>/dev/null | wc -l)
t1=$(now)
teardown
echo "baseline (generate-signing-key, secrets set, token issue --save, 3 TOML files by hand, servers check, tools): $(echo "$t1 - $t0" | bc) s (setup $(echo "$tm - $t0" | bc) s), 6 commands + 3 files, $n tools"
