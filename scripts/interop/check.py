#!/usr/bin/env python3
"""Interop checks: the official MCP Python SDK as a client of the example gateway.

Run by scripts/interop/run, which starts the upstreams and the gateway and passes their URLs:

    check.py --gateway URL --fixture URL --everything URL [--only NAME ...]

Works under mcp 2.x (default 2026-07-28 mode and the classic handshake) and mcp 1.x (handshake
only). Prints one line per check and exits 1 if any failed. The gateway's config is the one the
run script writes: keys sk-alice (fx with eight tools, evhttp), sk-bob (fxsse, evstdio), sk-carol
(fx, where test_error_handling is deny-listed and interop_echo takes only `text`) and the master
key sk-interop-master.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
import warnings
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any, AsyncIterator

import mcp.types as t

warnings.simplefilter("ignore")  # the SDK marks logging and sampling deprecated in 2026-07-28
SDK = version("mcp")
MAJOR = int(SDK.split(".")[0])

MASTER = "sk-interop-master"
ALICE_FX = {
    "interop_echo", "interop_headers", "test_simple_text", "test_image_content", "test_audio_content",
    "test_tool_with_logging", "test_tool_with_progress", "test_sampling", "test_elicitation",
}
FIXTURE_TOOLS = {
    "test_simple_text", "test_image_content", "test_audio_content", "test_embedded_resource",
    "test_multiple_content_types", "test_tool_with_logging", "test_tool_with_progress", "test_error_handling",
    "test_sampling", "test_elicitation", "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums",
    "json_schema_2020_12_tool", "interop_echo", "interop_headers", "interop_calls",
}

FAILED: list[str] = []

if MAJOR >= 2:
    from mcp.shared.exceptions import MCPError as RpcError
else:
    from mcp.shared.exceptions import McpError as RpcError


async def refusal(call: Any) -> str:
    """Awaits a call that must be refused, and says how it was.

    A refusal is a tool result with isError, or a JSON-RPC error object (the SDK raises it as its
    MCP error type with the code and message the gateway sent). Anything else, a crashed
    client, a validation error or a broken connection included, is not a refusal and fails.
    """
    try:
        r = await call
    except RpcError as e:
        code = e.error.code
        expect(isinstance(code, int), f"a JSON-RPC error without an integer code: {e!r}")
        return f"jsonrpc {code}"
    expect(is_error(r), f"not refused: {dump(r)}")
    expect(any(x.startswith("Error: ") for x in texts(r)), f"a refusal without its reason: {dump(r)}")
    return "isError"


def refused_with_403(e: BaseException) -> bool:
    """Whether every error inside `e` (the SDK wraps them in exception groups) is the HTTP 403
    refusal of a connection: mcp 2.x raises it as its MCP error type, mcp 1.x as httpx's status
    error. A crash, a timeout or a validation error is not a refusal."""
    inner = getattr(e, "exceptions", None)
    if inner:
        return all(refused_with_403(x) for x in inner)
    if MAJOR < 2:
        import httpx  # mcp 1.x's HTTP client

        if isinstance(e, httpx.HTTPStatusError):
            return e.response.status_code == 403
    return isinstance(e, RpcError)


# What sk-carol (server fx only) must be refused, each kind once: (what, tool, arguments).
CAROL_REFUSALS = [
    ("deny-listed", "fx-test_error_handling", {}),
    ("allowed_params", "fx-interop_echo", {"text": "x", "loud": True}),
    ("other server", "evhttp-echo", {"message": "x"}),
]


async def refuses_each(call_tool: Any) -> list[str]:
    """Each of CAROL_REFUSALS through call_tool(name, args), each read as a refusal."""
    seen = []
    for what, name, args in CAROL_REFUSALS:
        try:
            seen.append(f"{what}: {await refusal(call_tool(name, args))}")
        except AssertionError as e:
            raise AssertionError(f"{what} ({name}): {e}") from None
    return seen


def dump(obj: Any) -> Any:
    return obj.model_dump(mode="json", by_alias=True, exclude_none=True) if hasattr(obj, "model_dump") else obj


def texts(result: Any) -> list[str]:
    return [c.text for c in result.content if getattr(c, "type", None) == "text"]


def is_error(result: Any) -> bool:
    return bool(getattr(result, "isError", None) or getattr(result, "is_error", None))


class Session:
    """One connected client, the same surface under both SDK majors."""

    def __init__(self, inner: Any, protocol: str) -> None:
        self.inner, self.protocol = inner, protocol

    async def tools(self) -> list[str]:
        return sorted(x.name for x in (await self.inner.list_tools()).tools)

    async def call(self, name: str, args: dict[str, Any] | None = None, progress: Any = None) -> Any:
        if progress is None:
            return await self.inner.call_tool(name, args or {})
        return await self.inner.call_tool(name, args or {}, progress_callback=progress)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@asynccontextmanager
async def connect(
    url: str,
    headers: dict[str, str],
    mode: str = "legacy",
    sampling: Any = None,
    elicitation: Any = None,
    logging: Any = None,
) -> AsyncIterator[Session]:
    """mode: 'legacy' (initialize handshake), 'auto' (2.x default: 2026-07-28 if offered), 'sse'."""
    from mcp.client.sse import sse_client

    if MAJOR >= 2:
        from mcp.client import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client  # the SDK's own client factory

        if mode == "sse":
            transport = sse_client(url, headers=headers)
        else:
            transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
        kwargs: dict[str, Any] = dict(
            mode="legacy" if mode == "sse" else mode,
            read_timeout_seconds=30,
            sampling_callback=sampling,
            elicitation_callback=elicitation,
            logging_callback=logging,
        )
        if logging is not None:
            kwargs["log_level"] = "debug"
        async with Client(transport, **kwargs) as client:
            yield Session(client, client.protocol_version)
    else:
        from datetime import timedelta

        from mcp import ClientSession
        from mcp.client.streamable_http import streamablehttp_client

        cm = sse_client(url, headers=headers) if mode == "sse" else streamablehttp_client(url, headers=headers)
        async with cm as streams:
            async with ClientSession(
                streams[0], streams[1], read_timeout_seconds=timedelta(seconds=30),
                sampling_callback=sampling, elicitation_callback=elicitation, logging_callback=logging,
            ) as session:
                init = await session.initialize()
                yield Session(session, init.protocolVersion)


def key(k: str, **extra: str) -> dict[str, str]:
    return {"x-litellm-api-key": k, **extra}


async def check(name: str, coro: Any) -> None:
    try:
        detail = await asyncio.wait_for(coro, 60)
        print(f"ok    {name}{'  (' + detail + ')' if detail else ''}")
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
        FAILED.append(name)
        print(f"FAIL  {name}: {type(e).__name__}: {e}")
        # An SDK's task group wraps what went wrong: show each innermost exception whole.
        for leaf in leaves(e):
            print(f"      caused by {type(leaf).__name__}: {leaf}")
            traceback.print_exception(leaf, limit=-6, file=sys.stdout)


def leaves(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in leaves(sub)]
    return [e]


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


async def fixture_calls(a: argparse.Namespace) -> list[str]:
    """The fixture's own execution log, read directly (not through the gateway)."""
    async with connect(a.fixture, {}) as s:
        return json.loads(texts(await s.call("interop_calls"))[0])


# ---- the checks -------------------------------------------------------------------------------


async def lists_exactly_what_the_key_allows(a: argparse.Namespace, mode: str) -> str:
    async with connect(a.everything, {}) as direct:
        ev = await direct.tools()
    async with connect(a.gateway, key("sk-alice"), mode) as s:
        got = await s.tools()
        want = sorted({f"fx-{n}" for n in ALICE_FX} | {f"evhttp-{n}" for n in ev})
        # server-everything adds sampling/elicitation/roots tools only for clients that declare
        # those capabilities; the gateway's upstream client declares what it can relay.
        extra = sorted(set(got) - set(want))
        missing = sorted(set(want) - set(got))
        expect(not missing, f"missing {missing}")
        expect(all(n.startswith("evhttp-") for n in extra), f"unexpected {extra}")
        expect(not any(n.startswith(("fxsse-", "evstdio-")) for n in got), "bob's servers leaked to alice")
        r = await s.call("fx-interop_echo", {"text": f"hello {mode}"})
        expect(texts(r) == [f"hello {mode}"], f"echo gave {dump(r)}")
        r = await s.call("evhttp-get-sum", {"a": 2, "b": 3})
        expect("5" in " ".join(texts(r)), f"get-sum gave {dump(r)}")
        protocol = s.protocol
    async with connect(a.gateway, key("sk-bob"), mode) as s:
        got = await s.tools()
        expect(got and all(n.startswith(("fxsse-", "evstdio-")) for n in got), f"bob sees {got}")
        expect({f"fxsse-{n}" for n in FIXTURE_TOOLS} <= set(got), "bob misses fixture tools over SSE")
        r = await s.call("fxsse-interop_echo", {"text": "via legacy sse upstream"})
        expect(texts(r) == ["via legacy sse upstream"], f"fxsse echo gave {dump(r)}")
        r = await s.call("evstdio-echo", {"message": "via stdio"})
        expect("via stdio" in " ".join(texts(r)), f"evstdio echo gave {dump(r)}")
    return f"protocol {protocol}, alice {len(want)} tools + {len(extra)} capability-gated"


async def forbidden_tools_never_run(a: argparse.Namespace, mode: str) -> str:
    before = await fixture_calls(a)
    refused = 0
    async with connect(a.gateway, key("sk-alice"), mode) as s:
        for name in ["fx-test_error_handling", "fx-interop_calls", "fxsse-interop_echo", "evstdio-echo",
                     "fx-INTEROP_ECHO", "fx-interop_echo ", "interop_echo", "fx--interop_echo"]:
            try:
                await refusal(s.call(name, {"text": "x", "message": "x"}))
            except AssertionError as e:
                raise AssertionError(f"{name}: {e}") from None
            refused += 1
    after = await fixture_calls(a)
    expect(after == before, f"forbidden calls reached the fixture: {after[len(before):]}")
    return f"{refused} attempts refused, fixture log unchanged"


async def every_kind_of_refusal_reads_as_one(a: argparse.Namespace, mode: str) -> str:
    """carol may use fx only: a deny-listed tool, arguments outside allowed_params, and a server
    she may not use are each refused in the SDK's own terms, on the protocol the mode negotiates."""
    before = await fixture_calls(a)
    async with connect(a.gateway, key("sk-carol"), mode) as s:
        if mode == "auto":
            expect(s.protocol == "2026-07-28", f"default mode negotiated {s.protocol}")
        seen = await refuses_each(s.call)
        r = await s.call("fx-interop_echo", {"text": "allowed"})
        expect(texts(r) == ["allowed"], f"the allowed call gave {dump(r)}")
    after = await fixture_calls(a)
    expect(after[len(before):] == ["interop_echo"], f"the fixture ran {after[len(before):]}")
    return f"protocol {s.protocol}; " + ", ".join(seen)


async def scope_header_narrows(a: argparse.Namespace, mode: str) -> str:
    async with connect(a.gateway, key("sk-alice", **{"x-mcp-servers": "fx"}), mode) as s:
        got = await s.tools()
        expect(got == sorted(f"fx-{n}" for n in ALICE_FX), f"x-mcp-servers: fx gave {got}")
    async with connect(a.gateway.replace("/mcp", "/evhttp/mcp"), key("sk-alice"), mode) as s:
        got = await s.tools()
        expect(got and all(n.startswith("evhttp-") for n in got), f"/evhttp/mcp gave {got}")
    try:
        async with connect(a.gateway, key("sk-alice", **{"x-mcp-servers": "fxsse"}), mode) as s:
            await s.tools()
        raise AssertionError("a scope naming another key's server was accepted")
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001 - judged below: only the 403 refusal itself may pass
        expect(refused_with_403(e), f"not a refusal: {type(e).__name__}: {e}")
    # What the SDK saw, on the wire: 403 with the same text for unknown and forbidden names.
    for scope in ["fxsse", "no-such-server"]:
        status, body = raw_post(a.gateway, key("sk-alice", **{"x-mcp-servers": scope}))
        expect(status == 403, f"scope {scope} gave HTTP {status}")
        expect(f"requested MCP servers: {scope}" in body, f"scope {scope} gave {body}")
    return "header, path; another key's server and an unknown one both 403"


def raw_post(url: str, headers: dict[str, str]) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    req = urllib.request.Request(url, data=json.dumps(init).encode(), method="POST", headers={
        **headers, "content-type": "application/json", "accept": "application/json, text/event-stream"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def credentials_reach_only_their_server(a: argparse.Namespace, mode: str) -> str:
    extra = {"x-mcp-fx-authorization": "Bearer upstream-secret", "x-mcp-servers": "fx"}
    async with connect(a.gateway, key("sk-alice", **extra), mode) as s:
        seen = json.loads(texts(await s.call("fx-interop_headers"))[0])
    expect(seen.get("authorization") == "Bearer upstream-secret", f"fx saw {seen}")
    expect("x-litellm-api-key" not in seen and "sk-alice" not in json.dumps(seen), f"gateway key leaked: {seen}")
    extra = {"x-mcp-fx-authorization": "Bearer upstream-secret"}
    async with connect(a.gateway, key("sk-bob", **extra), mode) as s:
        seen = json.loads(texts(await s.call("fxsse-interop_headers"))[0])
    expect("authorization" not in seen, f"fx's credential reached fxsse: {seen}")
    expect("upstream-secret" not in json.dumps(seen), f"fx's credential reached fxsse: {seen}")
    return "x-mcp-fx-authorization to fx only; the gateway key to no one"


async def legacy_sse_client(a: argparse.Namespace) -> str:
    sse = a.gateway.replace("/mcp", "/sse")
    async with connect(a.gateway, key("sk-alice")) as s:
        want = await s.tools()
    async with connect(sse, key("sk-alice"), "sse") as s:
        got = await s.tools()
        expect(got == want, f"/sse lists {len(got)} tools, /mcp {len(want)}")
        r = await s.call("fx-interop_echo", {"text": "over /sse"})
        expect(texts(r) == ["over /sse"], f"echo over /sse gave {dump(r)}")
        r = await s.call("fx-interop_calls")
        expect(is_error(r), "a forbidden call over /sse was not refused")
    return f"{len(got)} tools, same as /mcp"


async def content_arrives_intact(a: argparse.Namespace, mode: str) -> str:
    names = ["test_simple_text", "test_image_content", "test_audio_content"]
    async with connect(a.fixture, {}) as direct:
        want = [dump(await direct.call(n)) for n in names]
    async with connect(a.gateway, key("sk-alice"), mode) as s:
        got = [dump(await s.call(f"fx-{n}")) for n in names]
    for n, w, g in zip(names, want, got):
        w.pop("resultType", None)
        g.pop("resultType", None)
        expect(w == g, f"{n}: direct {json.dumps(w)[:200]} != gateway {json.dumps(g)[:200]}")
    return "text, image, audio byte-identical"


async def progress_and_logging_arrive(a: argparse.Namespace, mode: str) -> str:
    logs: list[Any] = []

    async def on_log(*args: Any) -> None:
        logs.append(args[-1])

    progress: list[float] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(p)

    async with connect(a.gateway, key("sk-alice"), mode, logging=on_log) as s:
        if s.protocol != "2026-07-28":
            await s.set_logging_level("debug")
        await s.call("fx-test_tool_with_progress", progress=on_progress)
        expect(progress == [0, 50, 100], f"fixture progress {progress}")
        progress.clear()
        await s.call("evhttp-trigger-long-running-operation", {"duration": 1, "steps": 4}, progress=on_progress)
        expect(progress == [1, 2, 3, 4], f"server-everything progress {progress}")
        await s.call("fx-test_tool_with_logging")
        await asyncio.sleep(0.3)
        datas = [getattr(m, "data", None) for m in logs]
        want = ["Tool execution started", "Tool processing data", "Tool execution completed"]
        expect([d for d in datas if d in want] == want, f"log messages {datas}")
        if s.protocol == "2026-07-28":
            return "progress from both SDKs' servers, 3 log messages"
        # server-everything's own log messages are not tied to a request: they travel on the
        # upstream session's stream and must reach this caller's stream through the gateway.
        logs.clear()
        await s.call("evhttp-toggle-simulated-logging")
        for _ in range(40):
            if any("level message" in str(getattr(m, "data", "")) or "level-message" in str(getattr(m, "data", ""))
                   for m in logs):
                break
            await asyncio.sleep(0.1)
        await s.call("evhttp-toggle-simulated-logging")  # and off again
        got = [str(getattr(m, "data", "")) for m in logs]
        expect(any("message" in d for d in got), f"no log message from server-everything: {got}")
    return "progress from both SDKs' servers, 3 log messages, server-everything's own log stream"


async def sampling_and_elicitation_reach_the_right_client(a: argparse.Namespace, mode: str) -> str:
    def sampler(answer: str) -> Any:
        async def cb(ctx: Any, params: Any) -> Any:
            return t.CreateMessageResult(role="assistant", content=t.TextContent(type="text", text=answer), model="m")
        return cb

    def elicitor(user: str) -> Any:
        async def cb(ctx: Any, params: Any) -> Any:
            return t.ElicitResult(action="accept", content={"username": user, "email": f"{user}@example.com"})
        return cb

    async def one(k: str, server: str, who: str) -> tuple[str, str]:
        async with connect(a.gateway, key(k), mode, sampling=sampler(f"sampled for {who}"),
                           elicitation=elicitor(who)) as s:
            r1 = await s.call(f"{server}-test_sampling", {"prompt": "hi"})
            r2 = await s.call(f"{server}-test_elicitation", {"message": "who are you?"})
            return " ".join(texts(r1)), " ".join(texts(r2))

    results = await asyncio.gather(
        one("sk-alice", "fx", "alice"), one(MASTER, "fx", "admin"), one("sk-bob", "fxsse", "bob")
    )
    for who, (sampled, elicited) in zip(["alice", "admin", "bob"], results):
        expect(sampled == f"LLM response: sampled for {who}", f"{who} sampling gave {sampled!r}")
        expect(f'"username": "{who}"' in elicited, f"{who} elicitation gave {elicited!r}")
    return "3 concurrent callers, each answered by its own client"


async def resources_and_prompts_from_everything(a: argparse.Namespace, mode: str) -> str:
    async with connect(a.everything, {}) as direct:
        d_res = (await direct.list_resources()).resources
        uri = str(d_res[0].uri)
        d_read = dump(await direct.read_resource(uri))
        d_prompts = sorted(p.name for p in (await direct.list_prompts()).prompts)
        d_prompt = dump(await direct.get_prompt("simple-prompt"))
    async with connect(a.gateway, key("sk-alice"), mode) as s:
        res = (await s.list_resources()).resources
        uris = {str(r.uri) for r in res}
        expect(f"evhttp-{uri}" in uris, f"{uri} not listed through the gateway")
        expect(not any(u.startswith(("fxsse-", "evstdio-")) for u in uris), "bob's resources leaked")
        read = dump(await s.read_resource(f"evhttp-{uri}"))
        prompts = sorted(p.name for p in (await s.list_prompts()).prompts)
        expect([p for p in prompts if p.startswith("evhttp-")] == [f"evhttp-{p}" for p in d_prompts],
               f"prompts {prompts} vs {d_prompts}")
        prompt = dump(await s.get_prompt("evhttp-simple-prompt"))
    for r in (read, d_read, prompt, d_prompt):
        r.pop("resultType", None)
    for c in read["contents"]:
        c["uri"] = c["uri"].removeprefix("evhttp-")
    expect(read == d_read, f"read differs: {json.dumps(read)[:300]} vs {json.dumps(d_read)[:300]}")
    expect(prompt == d_prompt, f"prompt differs: {prompt} vs {d_prompt}")
    return f"{len(res)} resources, {len(prompts)} prompts; read and get identical to direct"


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--everything", required=True)
    a = p.parse_args()
    modes = ["legacy", "auto"] if MAJOR >= 2 else ["legacy"]
    print(f"# mcp {SDK} (Python SDK) as the client")
    for mode in modes:
        label = {"legacy": "initialize handshake", "auto": "default mode"}[mode]
        await check(f"[{label}] lists exactly what the key allows and calls it", lists_exactly_what_the_key_allows(a, mode))
        await check(f"[{label}] forbidden tools are refused and never run", forbidden_tools_never_run(a, mode))
        await check(f"[{label}] every kind of refusal reads as a refusal", every_kind_of_refusal_reads_as_one(a, mode))
        await check(f"[{label}] x-mcp-servers and /<servers>/mcp only narrow", scope_header_narrows(a, mode))
        await check(f"[{label}] x-mcp-<alias>-authorization reaches only its server", credentials_reach_only_their_server(a, mode))
        await check(f"[{label}] images and audio arrive intact", content_arrives_intact(a, mode))
        await check(f"[{label}] progress and logging notifications arrive", progress_and_logging_arrive(a, mode))
        await check(f"[{label}] resources and prompts of server-everything arrive intact", resources_and_prompts_from_everything(a, mode))
        await check(f"[{label}] sampling and elicitation reach the right client", sampling_and_elicitation_reach_the_right_client(a, mode))
    await check("[legacy SSE client] /sse lists and calls like /mcp", legacy_sse_client(a))
    print(f"# {'FAILED: ' + ', '.join(FAILED) if FAILED else 'all passed'}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
