"""The official Python SDK as a client of the gateway's own TLS listener (`--tls-cert`), with
the fixture behind the gateway served over TLS by uvicorn.

usage: SSL_CERT_FILE=CA tls_check.py --gateway https://localhost:PORT/mcp --key KEY

Lists and calls through the gateway in every mode the installed SDK major has, and checks that
a client that does not trust the gateway's CA fails on the certificate, not on anything else.
"""

import argparse
import asyncio
import os
import ssl
import sys
from importlib.metadata import version
from typing import Any

SDK = version("mcp")
MAJOR = int(SDK.split(".")[0])


async def list_and_call(url: str, key: str, mode: str) -> str:
    headers = {"x-litellm-api-key": key}
    if MAJOR >= 2:
        from mcp.client import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
        async with Client(transport, mode=mode, read_timeout_seconds=30) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("test_simple_text", {})
            protocol = client.protocol_version
    else:
        from datetime import timedelta

        from mcp import ClientSession
        from mcp.client.streamable_http import streamablehttp_client

        async with streamablehttp_client(url, headers=headers) as streams:
            async with ClientSession(streams[0], streams[1], read_timeout_seconds=timedelta(seconds=30)) as s:
                protocol = (await s.initialize()).protocolVersion
                tools = [t.name for t in (await s.list_tools()).tools]
                result = await s.call_tool("test_simple_text", {})
    text = " ".join(getattr(c, "text", "") for c in result.content)
    failed = getattr(result, "isError", None) or getattr(result, "is_error", None)  # 1.x, 2.x
    if "test_simple_text" not in tools or failed or not text:
        raise AssertionError(f"tools {tools}, result {result}")
    return f"protocol {protocol}, {len(tools)} tools, called test_simple_text"


def certificate_refused(e: BaseException) -> bool:
    """True when `e` is, or wraps, a failed certificate verification."""
    seen: list[BaseException] = [e]
    while seen:
        x = seen.pop()
        if isinstance(x, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(x):
            return True
        seen.extend(getattr(x, "exceptions", ()))
        for inner in (x.__cause__, x.__context__):
            if inner is not None:
                seen.append(inner)
    return False


async def untrusted(url: str, key: str) -> str:
    ca = os.environ.pop("SSL_CERT_FILE")
    try:
        await list_and_call(url, key, "legacy")
    except BaseException as e:  # noqa: BLE001 - which failure it was is the check
        if certificate_refused(e):
            return "refused on the certificate"
        raise AssertionError(f"failed, but not on the certificate: {type(e).__name__}: {e}") from e
    finally:
        os.environ["SSL_CERT_FILE"] = ca
    raise AssertionError("a client that does not trust the gateway's CA got through")


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway", required=True)
    p.add_argument("--key", required=True)
    a = p.parse_args()
    if "SSL_CERT_FILE" not in os.environ:
        print("FAIL  SSL_CERT_FILE must name the gateway's CA")
        return 1
    failed = 0
    modes = ["legacy", "auto"] if MAJOR >= 2 else ["legacy"]
    checks: list[tuple[str, Any]] = [
        (f"[mcp {SDK}, {m}] lists and calls over the gateway's TLS listener", list_and_call(a.gateway, a.key, m))
        for m in modes
    ]
    checks.append((f"[mcp {SDK}] a client without the gateway's CA is refused", untrusted(a.gateway, a.key)))
    for name, coro in checks:
        try:
            print(f"ok    {name}  ({await asyncio.wait_for(coro, 60)})")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failed += 1
            print(f"FAIL  {name}: {type(e).__name__}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
