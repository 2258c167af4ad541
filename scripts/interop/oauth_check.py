#!/usr/bin/env python3
"""OAuth interop: the official Python SDK's OAuthClientProvider against the example gateway,
with oidc-provider (scripts/interop/oidc_provider.mjs) as the authorization server.

    oauth_check.py --gateway http://127.0.0.1:PORT --issuer http://127.0.0.1:PORT

The gateway (config written by scripts/interop/run) accepts tokens of that issuer for its /mcp
and scoped paths, requires scope `mcp`, and maps the token's first group to a team: team `eng`
may use server fx, tools test_simple_text and interop_echo only. The SDK discovers everything
from the gateway's 401; this script plays the user at the authorization server's login and
consent pages over HTTP. Prints one line per check, each HTTP request the client made during
discovery, and exits 1 if any check failed. Works under mcp 2.x and 1.x.
"""
from __future__ import annotations

import argparse
import asyncio
import re
import sys
import traceback
import warnings
from importlib.metadata import version
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

warnings.simplefilter("ignore")
SDK = version("mcp")
MAJOR = int(SDK.split(".")[0])
REDIRECT = "http://127.0.0.1:9/callback"  # never opened: the script reads the redirect itself
TEAM_TOOLS = ["fx-interop_echo", "fx-test_simple_text"]
FAILED: list[str] = []

if MAJOR >= 2:
    import httpx2 as httpx  # mcp 2.x's HTTP client, httpx's successor with its API
    from mcp.shared.exceptions import MCPError as RpcError
else:
    import httpx
    from mcp.shared.exceptions import McpError as RpcError


class Memory(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class User:
    """Signs in (as `ada`) and consents at oidc-provider's development pages, over HTTP."""

    def __init__(self) -> None:
        self.authorization_url: str | None = None
        self.asked: dict[str, list[str]] = {}

    async def redirect(self, url: str) -> None:
        self.authorization_url = url
        self.asked = parse_qs(urlsplit(url).query)

    async def callback(self) -> Any:
        assert self.authorization_url, "the client never sent the user to the authorization server"
        url = self.authorization_url
        async with httpx.AsyncClient(follow_redirects=False, timeout=10) as web:
            for _ in range(12):
                if url.startswith(REDIRECT):
                    query = parse_qs(urlsplit(url).query)
                    assert "code" in query, f"no code in the redirect: {url}"
                    code, state = query["code"][0], query.get("state", [None])[0]
                    if MAJOR >= 2:
                        from mcp.shared.auth import AuthorizationCodeResult

                        return AuthorizationCodeResult(code=code, state=state, iss=query.get("iss", [None])[0])
                    return code, state
                r = await web.get(url)
                if r.status_code in (302, 303):
                    url = urljoin(url, r.headers["location"])
                    continue
                form = re.search(r'<form[^>]*action="([^"]+)"', r.text)
                prompt = re.search(r'name="prompt" value="(\w+)"', r.text)
                assert r.status_code == 200 and form and prompt, f"unexpected page {url}: {r.status_code} {r.text[:300]}"
                data = {"prompt": prompt.group(1)}
                if prompt.group(1) == "login":
                    data.update(login="ada", password="any")
                r = await web.post(urljoin(url, form.group(1)), data=data)
                assert r.status_code in (302, 303), f"{prompt.group(1)} page: {r.status_code} {r.text[:300]}"
                url = urljoin(url, r.headers["location"])
        raise AssertionError("the authorization server never redirected back")


def describe(token: str) -> str:
    """A JWT's header and claims, for the log (test tokens of a throwaway server)."""
    import base64
    import json

    def part(text: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))

    try:
        header, claims = (part(p) for p in token.split(".")[:2])
    except ValueError:
        return "not a JWT"
    return f"alg={header.get('alg')} typ={header.get('typ')} aud={claims.get('aud')} scope={claims.get('scope')!r} claims={sorted(claims)}"


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'}  [Python SDK {SDK}, OAuth] {name}{'  (' + detail + ')' if detail else ''}")
    if not ok:
        FAILED.append(name)


async def refused(call: Any) -> str:
    """A refusal is a tool result with isError or a JSON-RPC error; anything else fails."""
    try:
        r = await call
    except RpcError as e:
        return f"jsonrpc {e.error.code}"
    assert getattr(r, "isError", None) or getattr(r, "is_error", None), f"not refused: {r}"
    return "isError"


async def session(url: str, provider: OAuthClientProvider, log: list[str]) -> Any:
    """Connects through the provider, runs the checks' body, returns (tools, call results)."""
    async def hook(request: httpx.Request) -> None:
        log.append(f"{request.method} {request.url}")

    hooks = {"request": [hook]}
    if MAJOR >= 2:
        from mcp.client import Client
        from mcp.client.streamable_http import streamable_http_client

        http = httpx.AsyncClient(auth=provider, event_hooks=hooks, timeout=30, follow_redirects=True)
        async with http:
            async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
                return await exercise(client)
    from datetime import timedelta

    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    def factory(headers: Any = None, timeout: Any = None, auth: Any = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers=headers, timeout=timeout, auth=auth, event_hooks=hooks, follow_redirects=True)

    async with streamablehttp_client(url, auth=provider, httpx_client_factory=factory) as streams:
        async with ClientSession(streams[0], streams[1], read_timeout_seconds=timedelta(seconds=30)) as s:
            await s.initialize()
            return await exercise(s)


async def exercise(client: Any) -> Any:
    tools = sorted(t.name for t in (await client.list_tools()).tools)
    ok = await client.call_tool("fx-test_simple_text", {})
    try:
        denied = await refused(client.call_tool("fx-test_error_handling", {}))
    except AssertionError as e:
        denied = f"not refused: {e}"
    return tools, ok, denied


async def flow(gateway: str, path: str) -> tuple[OAuthClientProvider, Memory, User, list[str], Any]:
    storage, user, log = Memory(), User(), []
    metadata = OAuthClientMetadata(
        client_name="mcp-gatekeeper interop",
        redirect_uris=[REDIRECT],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    provider = OAuthClientProvider(
        server_url=gateway + path,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=user.redirect,
        callback_handler=user.callback,
    )
    result = await session(gateway + path, provider, log)
    return provider, storage, user, log, result


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--issuer", required=True)
    a = ap.parse_args()
    gw = a.gateway.rstrip("/")

    async with httpx.AsyncClient(timeout=10) as plain:
        r = await plain.post(gw + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        challenge = r.headers.get("www-authenticate", "")
        check("401 without a token names the metadata",
              r.status_code == 401 and f'resource_metadata="{gw}/.well-known/oauth-protected-resource/mcp"' in challenge,
              challenge)

    for path in ["/mcp", "/fx/mcp"]:
        try:
            _, storage, user, log, (tools, ok, denied) = await flow(gw, path)
        except BaseException as e:  # noqa: BLE001 - any failure of the flow is a failed check
            check(f"discovery, registration, PKCE login and calls at {path}", False,
                  "".join(traceback.format_exception_only(type(e), e)).strip())
            continue
        print(f"      discovery at {path}, in order:")
        for line in log:
            print(f"        {line}")
        asked = user.asked
        check(f"authorization request at {path}: PKCE S256, resource, scope",
              asked.get("code_challenge_method") == ["S256"] and asked.get("resource") == [gw + path]
              and "mcp" in asked.get("scope", [""])[0].split(),
              f"resource={asked.get('resource')} scope={asked.get('scope')}")
        check(f"sees exactly team eng's tools at {path}", tools == TEAM_TOOLS, str(tools))
        check(f"calls an allowed tool at {path}", not (getattr(ok, "isError", None) or getattr(ok, "is_error", None)))
        check(f"a tool outside the grant is refused at {path}",
              denied == "isError" or denied.startswith("jsonrpc "), denied)
        token = storage.tokens.access_token if storage.tokens else ""
        print(f"      the access token at {path}: {describe(token)}")
        if path == "/fx/mcp":
            async with httpx.AsyncClient(timeout=10) as plain:
                for other in ["/mcp", "/evhttp/mcp"]:
                    r = await plain.post(gw + other, headers={"authorization": f"Bearer {token}",
                                                              "accept": "application/json, text/event-stream"},
                                         json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                                             "protocolVersion": "2025-06-18", "capabilities": {},
                                             "clientInfo": {"name": "reuse", "version": "0"}}})
                    challenge = r.headers.get("www-authenticate", "")
                    check(f"the {path} token is refused at {other}",
                          r.status_code == 401 and 'error="invalid_token"' in challenge, f"{r.status_code} {challenge}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
