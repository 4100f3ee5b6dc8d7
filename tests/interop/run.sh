#!/usr/bin/env bash
# Interop: official MCP SDK clients (TypeScript, Python), real MCP servers from npm and PyPI, and
# the real Claude Code CLI, all against `lastmile serve`. Offline apart from the installs: Claude
# Code talks to a stand-in for the Messages API on loopback.
#
#   tests/interop/run.sh            # after `npm ci` and the venv (see .ci/run), with a built lastmile
#   INTEROP_ONLY="ts py" tests/interop/run.sh     # some of the clients: ts, ts-http, py, py-http, claude
#
# Prints one `RESULT client=… pass=… fail=… gap=…` line per client; exits non-zero on any failure.
# A "gap" is an assertion that fails because of the gateway core, kept and reported, not deleted.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
lastmile="${LASTMILE_BIN:-$repo/target/debug/lastmile}"
python="${INTEROP_PYTHON:-$here/.venv/bin/python}"
[ -x "$lastmile" ] || { echo "build lastmile first (cargo build --bin lastmile), or set LASTMILE_BIN" >&2; exit 2; }
[ -d "$here/node_modules" ] || { echo "run npm ci in $here first" >&2; exit 2; }

world="$(mktemp -d)"
export HOME="$world/home" LASTMILE_CONFIG_DIR="$world/config" LASTMILE_DATA_DIR="$world/data"
export LASTMILE_PROFILE="interop-$$" LASTMILE_SECRETS_BACKEND="${LASTMILE_SECRETS_BACKEND:-keyutils}"
mkdir -p "$HOME" "$world/fs"
cleanup() {
    for name in $("$lastmile" secrets list 2>/dev/null | cut -f1); do "$lastmile" secrets rm "$name" >/dev/null 2>&1 || true; done
    rm -rf "$world"
}
trap cleanup EXIT

echo hello > "$world/fs/hello.txt"
node="$(command -v node)"
nm="$here/node_modules/@modelcontextprotocol"
export INTEROP_LASTMILE="$lastmile" INTEROP_FS_DIR="$world/fs"
export INTEROP_NONCE="nonce-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
export INTEROP_API_KEY_VALUE="key-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')"

"$lastmile" init >/dev/null
printf %s "$INTEROP_API_KEY_VALUE" | "$lastmile" secrets set INTEROP_API_KEY >/dev/null
"$lastmile" servers add everything --tier admin --tier user --secret INTEROP_API_KEY \
    --env "INTEROP_NONCE=$INTEROP_NONCE" -- "$node" "$nm/server-everything/dist/index.js" stdio >/dev/null
"$lastmile" servers add memory -- "$node" "$nm/server-memory/dist/index.js" >/dev/null
"$lastmile" servers add filesystem -- "$node" "$nm/server-filesystem/dist/index.js" "$world/fs" >/dev/null
"$lastmile" servers add time --tier admin --tier user -- "$python" -m mcp_server_time >/dev/null
"$lastmile" servers check
"$lastmile" token issue --sub interop-user --tier user --ttl 30m > "$world/user.token" 2>/dev/null
chmod 600 "$world/user.token"
export INTEROP_USER_TOKEN_FILE="$world/user.token"

status=0
only="${INTEROP_ONLY:-ts ts-http py py-http claude}"
case " $only " in *" ts "*) node "$here/client.mjs" || status=1 ;; esac
case " $only " in *" ts-http "*) node "$here/client-http.mjs" || status=1 ;; esac
case " $only " in *" py "*) "$python" "$here/client.py" || status=1 ;; esac
case " $only " in *" py-http "*) "$python" "$here/client_http.py" || status=1 ;; esac
case " $only " in *" claude "*) node "$here/claude.mjs" || status=1 ;; esac
exit $status
