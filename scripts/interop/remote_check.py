#!/usr/bin/env python3
"""mcp-remote, the stdio bridge desktop clients use to reach remote servers, in front of the
gateway; the official Python SDK drives it over stdio as a desktop client would.

    remote_check.py --gateway URL --bridge PATH/TO/mcp-remote/dist/proxy.js [--node NODE]

As key sk-carol (given with mcp-remote's --header): lists, calls an allowed tool, and is refused
a deny-listed tool, arguments outside allowed_params and another key's server, each read as a
refusal (an isError result or a JSON-RPC error; anything else fails). Exit 1 on any failure.
"""
from __future__ import annotations

import argparse
import asyncio
import sys

from check import FAILED, check, expect, refuses_each, texts  # the same rules as every other check


async def through_the_bridge(a: argparse.Namespace) -> str:
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=a.node,
        args=[a.bridge, a.gateway, "--allow-http", "--transport", "http-only",
              "--header", "x-litellm-api-key:sk-carol"],
    )
    from mcp.client import Client  # mcp 2.x

    async with Client(stdio_client(params), mode="legacy", read_timeout_seconds=30) as s:
        names = sorted(t.name for t in (await s.list_tools()).tools)
        expect("fx-interop_echo" in names, f"tools: {names}")
        expect(all(n.startswith("fx-") for n in names), f"another server listed: {names}")
        expect("fx-test_error_handling" not in names, "a deny-listed tool was listed")
        r = await s.call_tool("fx-interop_echo", {"text": "via mcp-remote"})
        expect(texts(r) == ["via mcp-remote"], f"echo gave {r}")
        seen = await refuses_each(s.call_tool)
        return f"{len(names)} tools; " + ", ".join(seen)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway", required=True)
    p.add_argument("--bridge", required=True)
    p.add_argument("--node", default="node")
    a = p.parse_args()
    await check("[mcp-remote stdio bridge] lists, calls, and reads refusals as refusals", through_the_bridge(a))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
