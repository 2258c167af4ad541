#!/usr/bin/env python3
"""The interop suite's fixture upstream, on the official MCP Python SDK (mcp 2.x, low-level API).

It offers the tools, resources and prompts that the MCP conformance server suite looks for
(`test_simple_text`, `test_image_content`, `test://static-text`, `test_simple_prompt`, ...), so
that the suite can pass every scenario against it directly, and then again through the gateway.
Besides those it records who called what, so the interop checks can see exactly which calls
reached it (`interop_calls`) and which HTTP headers arrived (`interop_headers`).

    fixture_server.py --transport http|sse --port PORT [--name NAME]

http serves streamable HTTP on http://127.0.0.1:PORT/mcp; sse serves the legacy transport on
http://127.0.0.1:PORT/sse (messages posted to /messages/). Loopback only.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import warnings
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

import mcp.types as t
from mcp.server.lowlevel import Server
from mcp.server.sse import SseServerTransport
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, PromptsListChanged, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp.server.transport_security import TransportSecuritySettings

warnings.simplefilter("ignore")  # the SDK marks logging/sampling/elicitation deprecated in 2026-07-28

# A 1x1 red PNG and a 1-sample WAV, built here rather than shipped as files.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
        "0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082"
    )
).decode()
WAV = base64.b64encode(
    b"RIFF" + (38).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    + (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    + b"data" + (2).to_bytes(4, "little") + b"\x00\x00"
).decode()

# Where list changes go to the subscriptions/listen streams of 2026-07-28 callers.
BUS = InMemorySubscriptionBus()
MODERN = {"2026-07-28"}

CALLS: list[dict[str, Any]] = []  # every tools/call that reached this server, in order

NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}


def text(s: str) -> t.TextContent:
    return t.TextContent(type="text", text=s)


def tool(name: str, description: str, schema: dict[str, Any] | None = None) -> t.Tool:
    return t.Tool(name=name, description=description, input_schema=schema or NO_ARGS)


TOOLS = [
    tool("test_simple_text", "Returns one text item"),
    tool("test_image_content", "Returns a PNG image"),
    tool("test_audio_content", "Returns a WAV clip"),
    tool("test_embedded_resource", "Returns an embedded text resource"),
    tool("test_multiple_content_types", "Returns text, image and resource together"),
    tool("test_tool_with_logging", "Sends three log messages while it runs"),
    tool("test_tool_with_progress", "Sends three progress notifications while it runs"),
    tool("test_error_handling", "Always fails with isError"),
    tool(
        "test_sampling",
        "Asks the client to sample an LLM",
        {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
    ),
    tool(
        "test_elicitation",
        "Asks the client for input",
        {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
    ),
    tool("test_elicitation_sep1034_defaults", "Elicitation with defaults for every primitive"),
    tool("test_elicitation_sep1330_enums", "Elicitation with every enum form"),
    tool(
        "json_schema_2020_12_tool",
        "Tool with JSON Schema 2020-12 features",
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                }
            },
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
    ),
    tool(
        "interop_echo",
        "Echoes its text (used by the interop checks)",
        {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    ),
    tool("interop_headers", "Returns the HTTP headers of the request that called it, as JSON"),
    tool("interop_calls", "Returns the names of every tool called on this server so far, as JSON"),
    tool("test_trigger_tool_change", "Announces that the tool list changed"),
    tool("test_trigger_prompt_change", "Announces that the prompt list changed"),
    tool("test_missing_capability", "Asks the client to sample: refused when it did not declare sampling"),
    tool("test_input_required_result_elicitation", "Asks the caller's name, then greets it"),
    tool("test_input_required_result_sampling", "Asks the caller's model a question, then reports the answer"),
    tool("test_input_required_result_list_roots", "Asks the caller's roots, then lists them"),
    tool("test_input_required_result_request_state", "Asks for a confirmation under a state it checks"),
    tool("test_input_required_result_multiple_inputs", "Asks three things in one round"),
    tool("test_input_required_result_multi_round", "Asks two things, one round after the other"),
    tool("test_input_required_result_tampered_state", "Asks for a confirmation under a sealed state"),
]

DEFAULTS_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
        "verified": {"type": "boolean", "default": True},
    },
}

ENUMS_SCHEMA = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
}


async def call_tool(ctx: Any, params: t.CallToolRequestParams) -> t.CallToolResult:
    name, args = params.name, params.arguments or {}
    if name != "interop_calls":  # reading the log is not an execution worth logging
        CALLS.append({"name": name, "arguments": args})
    session, rid = ctx.session, ctx.request_id
    modern = ctx.protocol_version in MODERN
    if name == "test_simple_text":
        return t.CallToolResult(content=[text("This is a simple text response for testing.")])
    if name == "test_image_content":
        return t.CallToolResult(content=[t.ImageContent(type="image", data=PNG, mime_type="image/png")])
    if name == "test_audio_content":
        return t.CallToolResult(content=[t.AudioContent(type="audio", data=WAV, mime_type="audio/wav")])
    if name == "test_embedded_resource":
        res = t.TextResourceContents(
            uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
        )
        return t.CallToolResult(content=[t.EmbeddedResource(type="resource", resource=res)])
    if name == "test_multiple_content_types":
        res = t.TextResourceContents(
            uri="test://mixed-content-resource", mime_type="application/json", text='{"test":"data","value":123}'
        )
        return t.CallToolResult(
            content=[
                text("Multiple content types test:"),
                t.ImageContent(type="image", data=PNG, mime_type="image/png"),
                t.EmbeddedResource(type="resource", resource=res),
            ]
        )
    if name == "test_tool_with_logging":
        for i, msg in enumerate(["Tool execution started", "Tool processing data", "Tool execution completed"]):
            if i:
                await asyncio.sleep(0.05)
            await session.send_log_message("info", msg, logger="fixture", related_request_id=rid)
        return t.CallToolResult(content=[text("Tool with logging executed successfully")])
    if name == "test_tool_with_progress":
        for i, p in enumerate([0, 50, 100]):
            if i:
                await asyncio.sleep(0.05)
            await session.report_progress(p, 100)  # a no-op when the request carried no token
        return t.CallToolResult(content=[text("Tool with progress executed successfully")])
    if name == "test_error_handling":
        return t.CallToolResult(
            content=[text("This tool intentionally returns an error for testing")], is_error=True
        )
    if name == "test_sampling" and modern:
        # 2026-07-28 has no requests of the client: the question goes back in the result.
        answer, ask = one_round(params, "sample", sample(str(args.get("prompt", "")), 100))
        if ask is not None:
            return ask
        return t.CallToolResult(content=[text(f"LLM response: {answer.get('content', {}).get('text', '')}")])
    if name == "test_sampling":
        reply = await session.create_message(
            [t.SamplingMessage(role="user", content=text(str(args.get("prompt", ""))))],
            max_tokens=100,
            related_request_id=rid,
        )
        got = reply.content.text if isinstance(reply.content, t.TextContent) else json.dumps(reply.model_dump(mode="json"))
        return t.CallToolResult(content=[text(f"LLM response: {got}")])
    if name in ("test_elicitation", "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"):
        if name == "test_elicitation":
            message = str(args.get("message", ""))
            schema = {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                },
                "required": ["username", "email"],
            }
        elif name == "test_elicitation_sep1034_defaults":
            message, schema = "Please review your details", DEFAULTS_SCHEMA
        else:
            message, schema = "Please choose", ENUMS_SCHEMA
        prefix = "User response" if name == "test_elicitation" else "Elicitation completed"
        if modern:
            request = {"method": "elicitation/create", "params": {"message": message, "requestedSchema": schema}}
            got, ask = one_round(params, "answer", request)
            if ask is not None:
                return ask
            content = json.dumps(got.get("content"), sort_keys=True)
            return t.CallToolResult(content=[text(f"{prefix}: action={got.get('action')}, content={content}")])
        answer = await session.elicit_form(message, schema, related_request_id=rid)
        content = json.dumps(answer.content, sort_keys=True)
        return t.CallToolResult(content=[text(f"{prefix}: action={answer.action}, content={content}")])
    if name == "json_schema_2020_12_tool":
        return t.CallToolResult(content=[text(json.dumps(args, sort_keys=True))])
    if name == "interop_echo":
        return t.CallToolResult(content=[text(str(args.get("text", "")))])
    if name == "interop_headers":
        req = ctx.request
        headers = {k.lower(): v for k, v in req.headers.items()} if req is not None else {}
        return t.CallToolResult(content=[text(json.dumps(headers, sort_keys=True))])
    if name == "interop_calls":
        return t.CallToolResult(content=[text(json.dumps([c["name"] for c in CALLS]))])
    if name in ("test_trigger_tool_change", "test_trigger_prompt_change"):
        # 2026-07-28 callers hear of it on their subscriptions/listen streams; a handshake
        # session (the gateway's, say) on this call's stream.
        tools = name == "test_trigger_tool_change"
        await BUS.publish(ToolsListChanged() if tools else PromptsListChanged())
        if not modern:
            await (session.send_tool_list_changed() if tools else session.send_prompt_list_changed())
        return t.CallToolResult(content=[text("announced")])
    if name in INPUT_REQUIRED:
        return input_required(name, params, modern)
    if name == "test_missing_capability":
        caps = session.client_capabilities
        if caps is None or caps.sampling is None:
            raise MCPError(-32021, "Missing required client capability", {"requiredCapabilities": {"sampling": {}}})
        if modern:
            answer, ask = one_round(params, "ping", sample("ping", 10))
            return ask if ask is not None else t.CallToolResult(content=[text(f"sampled: {answer}")])
        reply = await session.create_message(
            [t.SamplingMessage(role="user", content=text("ping"))], max_tokens=10, related_request_id=rid
        )
        return t.CallToolResult(content=[text(f"sampled: {reply.model_dump(mode='json')}")])
    return t.CallToolResult(content=[text(f"Unknown tool: {name}")], is_error=True)


def dump(answer: Any) -> Any:
    """An answer in inputResponses as its JSON."""
    return answer.model_dump(mode="json", by_alias=True, exclude_none=True) if hasattr(answer, "model_dump") else answer


def one_round(params: t.CallToolRequestParams, key: str, request: dict[str, Any]) -> tuple[Any, Any]:
    """For a 2026-07-28 caller: (its answer to `request`, None) once given, else (None, the
    input-required result that asks it)."""
    answer = (params.input_responses or {}).get(key)
    if answer is not None:
        return dump(answer), None
    return None, t.InputRequiredResult.model_validate({"resultType": "input_required", "inputRequests": {key: request}})


def elicit(message: str, field: str, kind: str = "string") -> dict[str, Any]:
    schema = {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}
    return {"method": "elicitation/create", "params": {"message": message, "requestedSchema": schema}}


def sample(question: str, max_tokens: int) -> dict[str, Any]:
    message = {"role": "user", "content": {"type": "text", "text": question}}
    return {"method": "sampling/createMessage", "params": {"messages": [message], "maxTokens": max_tokens}}


ROOTS = {"method": "roots/list", "params": {}}

# The input-required tools of 2026-07-28 (SEP-2322): each round is (the requests, the state it
# carries); the tool completes when every request of its last round has an answer.
INPUT_REQUIRED: dict[str, list[tuple[dict[str, Any], str | None]]] = {
    "test_input_required_result_elicitation": [({"user_name": elicit("What is your name?", "name")}, None)],
    "test_input_required_result_sampling": [({"capital_question": sample("What is the capital of France?", 100)}, None)],
    "test_input_required_result_list_roots": [({"client_roots": ROOTS}, None)],
    "test_input_required_result_request_state": [({"confirm": elicit("Please confirm", "ok", "boolean")}, "confirm-1")],
    "test_input_required_result_multiple_inputs": [
        (
            {
                "user_name": elicit("What is your name?", "name"),
                "greeting": sample("Generate a greeting", 50),
                "client_roots": ROOTS,
            },
            "many-1",
        )
    ],
    "test_input_required_result_multi_round": [
        ({"step1": elicit("Step 1: What is your name?", "name")}, "round-1"),
        ({"step2": elicit("Step 2: What is your favorite color?", "color")}, "round-2"),
    ],
    "test_input_required_result_tampered_state": [({"confirm": elicit("Please confirm", "ok", "boolean")}, "sealed-1")],
}


def input_required(name: str, params: t.CallToolRequestParams, modern: bool) -> Any:
    """The next round a 2026-07-28 caller must answer, or the result once it has answered all.

    The SDK seals every requestState it sends and refuses one that was tampered with, so the
    states here are plain.
    """
    if not modern:
        return t.CallToolResult(content=[text(f"{name} needs protocol 2026-07-28")], is_error=True)
    rounds = INPUT_REQUIRED[name]
    answers = params.input_responses or {}
    state = params.request_state
    # The round the caller is answering: the one whose state it echoes, or the first.
    if state is None:
        current = 0 if answers else None
    else:
        current = next((i for i, (_, s) in enumerate(rounds) if s == state), None)
        if current is None:
            raise MCPError(-32602, "unknown requestState")
    ask = 0
    if current is not None:
        if not all(k in answers for k in rounds[current][0]):
            ask = current  # asked again for what is missing
        elif current + 1 == len(rounds):
            words = ", ".join(f"{k}={json.dumps(dump(answers[k]), sort_keys=True)}" for k in sorted(rounds[current][0]))
            tag = " (state-ok)" if state is not None else ""
            return t.CallToolResult(content=[text(f"Hello from {name}{tag}: {words}")])
        else:
            ask = current + 1
    requests, next_state = rounds[ask]
    wire: dict[str, Any] = {"resultType": "input_required", "inputRequests": requests}
    if next_state is not None:
        wire["requestState"] = next_state
    return t.InputRequiredResult.model_validate(wire)


async def list_tools(ctx: Any, params: Any) -> t.ListToolsResult:
    return t.ListToolsResult(tools=TOOLS)


RESOURCES = [
    t.Resource(uri="test://static-text", name="static-text", description="A static text resource", mime_type="text/plain"),
    t.Resource(
        uri="test://static-binary", name="static-binary", description="A static PNG resource", mime_type="image/png"
    ),
    t.Resource(
        uri="test://watched-resource", name="watched-resource", description="A resource to subscribe to",
        mime_type="text/plain",
    ),
]


async def list_resources(ctx: Any, params: Any) -> t.ListResourcesResult:
    return t.ListResourcesResult(resources=RESOURCES)


async def list_templates(ctx: Any, params: Any) -> t.ListResourceTemplatesResult:
    return t.ListResourceTemplatesResult(
        resource_templates=[
            t.ResourceTemplate(
                uri_template="test://template/{id}/data", name="template-data",
                description="Data for an id", mime_type="application/json",
            )
        ]
    )


async def read_resource(ctx: Any, params: t.ReadResourceRequestParams) -> t.ReadResourceResult:
    uri = str(params.uri)
    if uri == "test://static-text":
        contents: list[Any] = [
            t.TextResourceContents(uri=uri, mime_type="text/plain", text="This is the content of the static text resource.")
        ]
    elif uri == "test://static-binary":
        contents = [t.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG)]
    elif uri == "test://watched-resource":
        contents = [t.TextResourceContents(uri=uri, mime_type="text/plain", text="Watched resource content")]
    elif uri.startswith("test://template/") and uri.endswith("/data"):
        rid = uri[len("test://template/") : -len("/data")]
        body = json.dumps({"id": rid, "templateTest": True, "data": f"Data for ID: {rid}"})
        contents = [t.TextResourceContents(uri=uri, mime_type="application/json", text=body)]
    else:
        raise ValueError(f"Unknown resource: {uri}")
    return t.ReadResourceResult(contents=contents)


async def subscribe(ctx: Any, params: Any) -> t.EmptyResult:
    return t.EmptyResult()


PROMPTS = [
    t.Prompt(name="test_simple_prompt", description="A prompt without arguments"),
    t.Prompt(
        name="test_prompt_with_arguments",
        description="A prompt with two arguments",
        arguments=[
            t.PromptArgument(name="arg1", description="First argument", required=True),
            t.PromptArgument(name="arg2", description="Second argument", required=True),
        ],
    ),
    t.Prompt(
        name="test_prompt_with_embedded_resource",
        description="A prompt that embeds a resource",
        arguments=[t.PromptArgument(name="resourceUri", description="The resource to embed", required=True)],
    ),
    t.Prompt(name="test_prompt_with_image", description="A prompt with an image"),
]


async def list_prompts(ctx: Any, params: Any) -> t.ListPromptsResult:
    return t.ListPromptsResult(prompts=PROMPTS)


async def get_prompt(ctx: Any, params: t.GetPromptRequestParams) -> t.GetPromptResult:
    args = params.arguments or {}
    if params.name == "test_simple_prompt":
        msgs = [t.PromptMessage(role="user", content=text("This is a simple prompt for testing."))]
    elif params.name == "test_prompt_with_arguments":
        msgs = [
            t.PromptMessage(
                role="user",
                content=text(f"Prompt with arguments: arg1='{args.get('arg1', '')}', arg2='{args.get('arg2', '')}'"),
            )
        ]
    elif params.name == "test_prompt_with_embedded_resource":
        uri = args.get("resourceUri", "test://example-resource")
        res = t.TextResourceContents(uri=uri, mime_type="text/plain", text="Embedded resource content for testing.")
        msgs = [
            t.PromptMessage(role="user", content=t.EmbeddedResource(type="resource", resource=res)),
            t.PromptMessage(role="user", content=text("Please process the embedded resource above.")),
        ]
    elif params.name == "test_prompt_with_image":
        msgs = [
            t.PromptMessage(role="user", content=t.ImageContent(type="image", data=PNG, mime_type="image/png")),
            t.PromptMessage(role="user", content=text("Please analyze the image above.")),
        ]
    else:
        raise ValueError(f"Unknown prompt: {params.name}")
    return t.GetPromptResult(messages=msgs)


async def complete(ctx: Any, params: t.CompleteRequestParams) -> t.CompleteResult:
    prefix = params.argument.value
    values = [v for v in ("paris", "park", "party") if v.startswith(prefix)]
    return t.CompleteResult(completion=t.Completion(values=values, total=len(values), has_more=False))


async def set_level(ctx: Any, params: Any) -> t.EmptyResult:
    return t.EmptyResult()


def server(name: str) -> Server:
    return Server(
        name,
        version="1.0.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=subscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_set_logging_level=set_level,
        on_subscriptions_listen=ListenHandler(BUS),
    )


def sse_app(srv: Server) -> Starlette:
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*"],
    )
    sse = SseServerTransport("/messages/", security_settings=security)

    async def handle(request: Request) -> Response:
        async with sse.connect_sse(request.scope, request.receive, request._send) as (read, write):
            await srv.run(read, write, srv.create_initialization_options())
        return Response()

    return Starlette(routes=[Route("/sse", handle, methods=["GET"]), Mount("/messages/", app=sse.handle_post_message)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--transport", choices=["http", "sse"], default="http")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", default="interop-fixture")
    p.add_argument("--tls-cert", help="serve TLS with this PEM certificate (uvicorn's own TLS)")
    p.add_argument("--tls-key", help="the PEM key of --tls-cert")
    a = p.parse_args()
    srv = server(a.name)
    app = srv.streamable_http_app(host="127.0.0.1") if a.transport == "http" else sse_app(srv)
    tls = dict(ssl_certfile=a.tls_cert, ssl_keyfile=a.tls_key) if a.tls_cert else {}
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", **tls)


if __name__ == "__main__":
    main()
