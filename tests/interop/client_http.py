"""The official Python MCP SDK client over Streamable HTTP: `lastmile serve --http` in front of the
same real servers as client.py, each request carrying a bearer token.

run.sh sets up the profile and the environment this reads (INTEROP_*). Prints one RESULT line.
"""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys

import mcp.types as types
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from client import API_KEY, FS_DIR, NONCE, Checks, Seen, elicitation, ensure, messages, roots, sampling, text_of, tools_of

ENV = os.environ
LASTMILE = ENV["INTEROP_LASTMILE"]


def token(sub, tier):
    out = subprocess.run(
        [LASTMILE, "token", "issue", "--sub", sub, "--tier", tier, "--ttl", "30m"],
        capture_output=True, check=True, env=ENV,
    )
    return out.stdout.decode().strip()


def start_server():
    env = {k: v for k, v in ENV.items() if k != "INTEROP_API_KEY_VALUE"}
    proc = subprocess.Popen(
        [LASTMILE, "serve", "--http", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )
    seen = []
    for raw in proc.stderr:
        line = raw.decode(errors="replace")
        seen.append(line)
        m = re.search(r"serving MCP at (http://\S+)", line)
        if m:
            return proc, m.group(1), seen
    raise RuntimeError("lastmile serve --http ended early: " + "".join(seen))


def transport(url, bearer):
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {bearer}"})
    return streamable_http_client(url, http_client=client)


async def main():
    c = Checks("python-sdk-http")
    proc, url, _ = start_server()
    print(f"python SDK client over Streamable HTTP ({url}):", file=sys.stderr)
    admin = token("interop-admin", "admin")

    async with transport(url, admin) as (read, write):
        async with ClientSession(
            read, write,
            sampling_callback=sampling,
            elicitation_callback=elicitation,
            list_roots_callback=roots,
            message_handler=messages,
        ) as session:
            await session.initialize()

            async def every_server():
                names = await tools_of(session, ["everything", "memory", "filesystem", "time"])
                for want in ("everything__echo", "memory__read_graph", "time__get_current_time"):
                    ensure(want in names, f"{want} missing from {names}")
            await c.check("tools from every server, namespaced", every_server)

            async def time_now():
                r = await session.call_tool("time__get_current_time", {"timezone": "Europe/Paris"})
                ensure(not r.is_error and "Europe/Paris" in text_of(r), text_of(r))
            await c.check("time__get_current_time", time_now)

            async def get_env():
                r = await session.call_tool("everything__get-env", {})
                env = json.loads(text_of(r))
                ensure(API_KEY not in text_of(r), "the secret came back unredacted")
                ensure(env.get("INTEROP_NONCE") == NONCE, "the plain env var did not arrive")
                ensure(env.get("INTEROP_API_KEY") == "[REDACTED:INTEROP_API_KEY]", "the secret was not delivered")
            await c.check("get-env: the delivered secret comes back redacted", get_env)

            async def sample():
                r = await session.call_tool("everything__trigger-sampling-request", {"prompt": "hi", "maxTokens": 5})
                ensure("py-sampled:1" in text_of(r), text_of(r))
            await c.check("sampling round trip over the session's stream", sample)

            async def roots_round_trip():
                r = await session.call_tool("everything__get-roots-list", {})
                ensure(FS_DIR in text_of(r), text_of(r))
            await c.check("roots round trip over the session's stream", roots_round_trip)

            async def progress():
                seen = []

                async def on_progress(p, total, message):
                    seen.append(p)
                await session.call_tool(
                    "everything__trigger-long-running-operation", {"duration": 1, "steps": 3},
                    progress_callback=on_progress,
                )
                ensure(seen, "no progress notification")
            await c.check("progress notifications", progress)

    async def refused():
        try:
            async with transport(url, "not-a-token") as (read, write):
                async with ClientSession(read, write) as session:
                    await asyncio.wait_for(session.initialize(), 10)
        except Exception as e:  # noqa: BLE001 - the SDK reports the 401 as an error response
            ensure("Timeout" not in repr(e), f"not refused, only slow: {e!r}")
            return
        raise AssertionError("a bad token was served")
    await c.check("a bad token is refused", refused)

    print("python SDK client over HTTP, mode=auto (server/discover first):", file=sys.stderr)
    async with Client(
        transport(url, admin),
        mode="auto",
        sampling_callback=sampling,
        elicitation_callback=elicitation,
        list_roots_callback=roots,
        message_handler=messages,
    ) as auto:
        async def negotiated():
            ensure(auto.protocol_version.startswith("2025-"), f"negotiated {auto.protocol_version}")
        await c.check("discover over HTTP leaves out 2026-07-28 where a server asks; the client falls back", negotiated)

        async def auto_call():
            r = await auto.call_tool("everything__echo", {"message": "auto over http"})
            ensure("auto over http" in text_of(r), text_of(r))
        await c.check("a call after the fallback", auto_call)

    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read().decode(errors="replace")
    proc.wait(timeout=20)

    async def no_leak():
        ensure(API_KEY not in rest, "the secret reached lastmile's stderr")
    await c.check("the secret is not on lastmile's stderr", no_leak)
    return c.summary()


if __name__ == "__main__":
    Seen.tools_changed = 0
    sys.exit(0 if asyncio.run(main()) else 1)
