"""A fake OpenAI / Anthropic HTTP server on 127.0.0.1 for driving the real SDKs in tests.

Why a real server rather than a mock transport: agentlog patches the SDKs' HTTP choke point
and their stream classes, so the tests must run the SDKs' own code end to end (request
building, retries, SSE decoding, stream helpers). Only the standard library is used on the
server side; the SDKs are imported lazily by the client helpers.

Usage::

    with FakeLLM() as srv, openai_client(srv) as client:
        srv.script(Reply(text="hi"))
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

Wire formats follow the recorded traffic in ``/work/shared/fixtures/recorded`` (see its
SOURCES.md); everything is deterministic: ids come from a per-server request counter and
token counts are whitespace-separated word counts.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import socket
import struct
import threading
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

__all__ = [
    "FIXTURES",
    "FakeLLM",
    "Recorded",
    "Reply",
    "anthropic_client",
    "load_cassette",
    "openai_client",
    "replay",
]

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "recorded"

OPENAI_KEY = "sk-test-canary-0000"
ANTHROPIC_KEY = "sk-ant-test-canary-0000"
CREATED = 1721260800  # fixed, so responses are byte-for-byte deterministic
DATE_SUFFIX = "-2024-07-18"
FINGERPRINT = "fp_fakellm"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-4-6"
EMBEDDING_DIMS = 8

# Longest suffix first: "/chat/completions" must win over "/completions".
_ENDPOINTS = (
    "/messages/count_tokens",
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
    "/messages",
)


@dataclass
class Recorded:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body is empty or not JSON


@dataclass
class Reply:
    """What the server answers to one request; unset fields take the endpoint's default.

    A scripted Reply applies to whatever request comes next, on any path: with ``raw`` or
    ``status >= 400`` it is sent even on paths the fake does not otherwise know (other
    providers' cassettes can be replayed at their own paths).
    """

    status: int = 200
    # Assistant text; default "echo: <last user text>" (or a schema-valid JSON document for
    # structured-output requests). With tool_calls and no text, no text is sent at all.
    text: str | None = None
    # (name, arguments JSON): OpenAI tool_calls ids "call_<k>", Anthropic tool_use "toolu_<k>".
    tool_calls: list[tuple[str, str]] | None = None
    thinking: str | None = None  # Anthropic only: a thinking block before the text
    # False drops usage everywhere (Anthropic too, which the real API never does; the
    # anthropic messages.stream() helper needs usage, so use create(stream=True) then).
    usage: bool = True
    model: str | None = None
    error: dict[str, Any] | None = None  # body sent with status >= 400
    raw: bytes | None = None  # body sent verbatim; SSE bodies are split into events
    content_type: str | None = None
    delay_s: float = 0.0  # before the response headers
    chunk_delay_s: float = 0.0  # between SSE events
    drop_after: int | None = None  # streams: cut the connection after this many events
    n: int | None = None
    # OpenAI tool call ids, one per tool call (default "call_<k>"); agent frameworks that
    # refuse a call id seen earlier in the conversation need them unique across replies.
    tool_call_ids: list[str] | None = None
    # Groq: a chat stream's usage in its last choice chunk's ``x_groq.usage`` (sent
    # whether or not stream_options.include_usage was asked for), as api.groq.com does.
    x_groq: bool = False


@dataclass
class _Out:
    """A planned HTTP response: a whole body, or SSE events sent one chunk each."""

    status: int
    body: bytes = b""
    events: list[bytes] | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _json(obj: Any, status: int = 200) -> _Out:
    return _Out(status, body=_dumps(obj))


def _data_event(obj: Any) -> bytes:
    """An OpenAI-style SSE event: a ``data:`` line only."""
    return b"data: " + _dumps(obj) + b"\n\n"


def _typed_event(obj: dict[str, Any]) -> bytes:
    """A typed SSE event (Responses API, Anthropic): ``event:`` line named after ``type``."""
    return b"event: " + str(obj["type"]).encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


_DONE = b"data: [DONE]\n\n"


def _pieces(text: str) -> list[str]:
    """Split text into word deltas that keep their leading whitespace, so they join exactly."""
    parts = re.findall(r"\s*\S+", text)
    rest = text[len("".join(parts)) :]
    if rest:
        if parts:
            parts[-1] += rest
        else:
            parts = [rest]
    return parts


def _halves(arguments: str) -> list[str]:
    """Split tool-call arguments into (at least) two pieces, as real streams do."""
    mid = len(arguments) // 2
    return [arguments[:mid], arguments[mid:]]


def _words(text: str | None) -> int:
    return len(text.split()) if text else 0


def _texts(value: Any) -> Iterator[str]:
    """Every piece of text in a message list / content value (strings, text parts, tool results)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key in ("text", "content", "output"):
            if key in value:
                yield from _texts(value[key])


def _count(*values: Any) -> int:
    return sum(_words(t) for v in values for t in _texts(v))


def _last_user_text(messages: Any) -> str:
    """Text of the last ``role == "user"`` message: string content or its text parts."""
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    part["text"]
                    for part in content
                    if isinstance(part, dict)
                    and isinstance(part.get("text"), str)
                    and part.get("type", "text") in ("text", "input_text")
                )
            return ""
    return ""


def _dated(model: str) -> str:
    """OpenAI answers with a dated snapshot name: gpt-4o-mini -> gpt-4o-mini-2024-07-18."""
    return model if re.search(r"-\d{4}-\d{2}-\d{2}$", model) else model + DATE_SUFFIX


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node  # type: ignore[no-any-return]


_STRING_FORMATS = {
    "date-time": "2024-07-18T00:00:00Z",
    "date": "2024-07-18",
    "time": "00:00:00",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "email": "x@example.com",
    "uri": "https://example.com",
}


def example_for_schema(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A simple value valid for a JSON schema (required properties only; first anyOf branch).

    Used for ``response_format`` json_schema requests (``chat.completions.parse``).
    """
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 32:
        return None
    if "$ref" in schema:
        return example_for_schema(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if options:
            usable = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return example_for_schema((usable or options)[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {
            name: example_for_schema(props.get(name, {}), root, depth + 1)
            for name in schema.get("required") or []
        }
    if kind == "array":
        return [example_for_schema(schema.get("items", {}), root, depth + 1)] * int(
            schema.get("minItems", 0)
        )
    if kind == "string":
        if schema.get("format") in _STRING_FORMATS:
            return _STRING_FORMATS[schema["format"]]
        return "x" * max(1, int(schema.get("minLength", 1)))
    if kind in ("integer", "number"):
        value = 1
        if "minimum" in schema:
            value = max(value, schema["minimum"])
        if "exclusiveMinimum" in schema:
            value = max(value, schema["exclusiveMinimum"] + 1)
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {}


def _openai_error(status: int, message: str | None = None) -> dict[str, Any]:
    phrase = _phrase(status)
    kind, code = "invalid_request_error", None
    if status == 401:
        code = "invalid_api_key"
    elif status == 404:
        code = "not_found"
    elif status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    text = message or f"Fake {status} error ({phrase})."
    return {"error": {"message": text, "type": kind, "param": None, "code": code}}


_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _anthropic_error(status: int, request_id: str) -> dict[str, Any]:
    kind = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": f"Fake {status} error ({_phrase(status)})."},
        "request_id": request_id,
    }


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _is_sse(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


def _split_sse(raw: bytes) -> list[bytes]:
    """Split a recorded SSE body into events (each keeps its blank-line terminator)."""
    events = [e + b"\n\n" for e in re.split(rb"\r?\n\r?\n", raw) if e.strip()]
    return events or [raw]


# --------------------------------------------------------------------------- endpoints


@dataclass
class _Call:
    """One request being answered: its parsed body, the reply to apply, and its number."""

    body: dict[str, Any]
    reply: Reply
    num: int

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    def tool_calls(self) -> list[tuple[str, str]]:
        return list(self.reply.tool_calls or [])

    def call_id(self, k: int) -> str:
        ids = self.reply.tool_call_ids
        return ids[k] if ids is not None and k < len(ids) else f"call_{k}"


def _json_text(fmt: Any, fallback: str) -> str | None:
    """Default text for a structured-output request: a JSON value valid for its schema."""
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema", fmt)  # chat nests it; the Responses API does not
        return json.dumps(example_for_schema(spec.get("schema") or {}))
    if fmt.get("type") == "json_object":
        return json.dumps({"echo": fallback})
    return None


def _chat(call: _Call) -> _Out:
    body, reply = call.body, call.reply
    model = reply.model or _dated(str(body.get("model") or DEFAULT_OPENAI_MODEL))
    n = int(reply.n or body.get("n") or 1)
    tools = call.tool_calls()
    messages = body.get("messages") or []
    text = reply.text
    if text is None and not tools:
        echo = "echo: " + _last_user_text(messages)
        text = _json_text(body.get("response_format"), echo) or echo
    prompt = _count(messages)
    completion = n * (_words(text) + sum(_words(args) for _, args in tools))
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    finish = "tool_calls" if tools else "stop"
    head = {"id": f"chatcmpl-{call.num}", "created": CREATED, "model": model}
    tail = {"service_tier": "default", "system_fingerprint": FINGERPRINT}

    if not call.stream:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text,
            "refusal": None,
            "annotations": [],
        }
        if tools:
            message["tool_calls"] = [
                {
                    "id": call.call_id(k),
                    "type": "function",
                    "function": {"name": name, "arguments": args},
                }
                for k, (name, args) in enumerate(tools)
            ]
        obj: dict[str, Any] = {
            **head,
            "object": "chat.completion",
            "choices": [
                {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                for i in range(n)
            ],
            **tail,
        }
        if reply.usage:
            obj["usage"] = usage
        return _json(obj)

    include_usage = reply.usage and bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None,
              extra: dict[str, Any] | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        obj = {**head, "object": "chat.completion.chunk", **tail, "choices": [choice]}
        obj.update(extra or {})
        if include_usage:
            obj["usage"] = None
        return _data_event(obj)

    events: list[bytes] = []
    for i in range(n):
        first = {"role": "assistant", "content": "" if text is not None else None, "refusal": None}
        events.append(chunk(i, first))
        events.extend(chunk(i, {"content": piece}) for piece in _pieces(text or ""))
        for k, (name, args) in enumerate(tools):
            start = {"index": k, "id": call.call_id(k), "type": "function"}
            start["function"] = {"name": name, "arguments": ""}
            events.append(chunk(i, {"tool_calls": [start]}))
            for piece in _halves(args):
                delta = {"index": k, "function": {"arguments": piece}}
                events.append(chunk(i, {"tool_calls": [delta]}))
        groq = reply.x_groq and reply.usage and i == n - 1
        x_groq = {"x_groq": {"id": f"req_{call.num}", "usage": usage}} if groq else None
        events.append(chunk(i, {}, finish, x_groq))
    if include_usage:
        events.append(
            _data_event(
                {**head, "object": "chat.completion.chunk", **tail, "choices": [], "usage": usage}
            )
        )
    events.append(_DONE)
    return _Out(200, events=events, content_type="text/event-stream; charset=utf-8")


def _completions(call: _Call) -> _Out:
    body, reply = call.body, call.reply
    model = reply.model or _dated(str(body.get("model") or "gpt-3.5-turbo-instruct"))
    n = int(reply.n or body.get("n") or 1)
    prompt = body.get("prompt", "")
    prompts = (
        prompt
        if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt)
        else [prompt if isinstance(prompt, str) else ""]
    )
    texts = [
        reply.text if reply.text is not None else "echo: " + p for p in prompts for _ in range(n)
    ]
    used = _count(prompts)
    made = sum(_words(t) for t in texts)
    usage = {"prompt_tokens": used, "completion_tokens": made, "total_tokens": used + made}
    head = {"id": f"cmpl-{call.num}", "object": "text_completion", "created": CREATED}
    head.update(model=model, system_fingerprint=FINGERPRINT)

    if not call.stream:
        choices = [
            {"text": t, "index": i, "logprobs": None, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ]
        obj: dict[str, Any] = {**head, "choices": choices}
        if reply.usage:
            obj["usage"] = usage
        return _json(obj)

    include_usage = reply.usage and bool((body.get("stream_options") or {}).get("include_usage"))
    events: list[bytes] = []
    for i, t in enumerate(texts):
        for piece, finish in [*((p, None) for p in _pieces(t)), ("", "stop")]:
            choice = {"text": piece, "index": i, "logprobs": None, "finish_reason": finish}
            events.append(_data_event({**head, "choices": [choice]}))
    if include_usage:
        events.append(_data_event({**head, "choices": [], "usage": usage}))
    events.append(_DONE)
    return _Out(200, events=events, content_type="text/event-stream; charset=utf-8")


def _vector(value: Any, dims: int) -> list[float]:
    """Deterministic floats that are exact in float32, so base64 and float formats agree."""
    seed = json.dumps(value, sort_keys=True).encode()
    out: list[float] = []
    block = 0
    while len(out) < dims:
        digest = hashlib.sha256(seed + block.to_bytes(4, "little")).digest()
        out.extend((b - 128) / 128 for b in digest)
        block += 1
    return out[:dims]


def _embeddings(call: _Call) -> _Out:
    body, reply = call.body, call.reply
    raw_input = body.get("input", "")
    single = isinstance(raw_input, str) or (
        isinstance(raw_input, list) and all(isinstance(x, int) for x in raw_input)
    )
    inputs: list[Any] = [raw_input] if single else list(raw_input)
    dims = int(body.get("dimensions") or EMBEDDING_DIMS)
    b64 = body.get("encoding_format") == "base64"
    data = []
    for i, item in enumerate(inputs):
        vec = _vector(item, dims)
        emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if b64 else vec
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(len(x) if isinstance(x, list) else _words(str(x)) for x in inputs)
    obj: dict[str, Any] = {
        "object": "list",
        "data": data,
        "model": reply.model or str(body.get("model") or "text-embedding-3-small"),
    }
    if reply.usage:
        obj["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _json(obj)


def _responses(call: _Call) -> _Out:
    body, reply = call.body, call.reply
    model = reply.model or _dated(str(body.get("model") or DEFAULT_OPENAI_MODEL))
    tools = call.tool_calls()
    text = reply.text
    if text is None and not tools:
        echo = "echo: " + _last_user_text(body.get("input"))
        text = _json_text((body.get("text") or {}).get("format"), echo) or echo
    used = _count(body.get("input"), body.get("instructions"))
    made = _words(text) + sum(_words(args) for _, args in tools)
    usage = {
        "input_tokens": used,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": made,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": used + made,
    }

    items: list[dict[str, Any]] = []
    if text is not None:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        items.append(
            {
                "id": f"msg_{call.num}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for k, (name, args) in enumerate(tools):
        items.append(
            {
                "id": f"fc_{call.num}_{k}",
                "type": "function_call",
                "status": "completed",
                "call_id": call.call_id(k),
                "name": name,
                "arguments": args,
            }
        )

    def response(status: str, output: list[dict[str, Any]], with_usage: bool) -> dict[str, Any]:
        return {
            "id": f"resp_{call.num}",
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": True,
            "temperature": 1.0,
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": body.get("tools") or [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage if with_usage and reply.usage else None,
            "user": None,
            "metadata": {},
        }

    if not call.stream:
        return _json(response("completed", items, True))

    seq = iter(range(1_000_000))
    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(_typed_event({"type": kind, "sequence_number": next(seq), **fields}))

    emit("response.created", response=response("in_progress", [], False))
    emit("response.in_progress", response=response("in_progress", [], False))
    for index, item in enumerate(items):
        ids = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            full = item["content"][0]
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            emit("response.content_part.added", **ids, content_index=0, part={**full, "text": ""})
            for piece in _pieces(full["text"]):
                emit("response.output_text.delta", **ids, content_index=0, delta=piece, logprobs=[])
            emit(
                "response.output_text.done", **ids, content_index=0, text=full["text"], logprobs=[]
            )
            emit("response.content_part.done", **ids, content_index=0, part=full)
        else:
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for piece in _halves(item["arguments"]):
                emit("response.function_call_arguments.delta", **ids, delta=piece)
            emit(
                "response.function_call_arguments.done",
                **ids,
                name=item["name"],
                arguments=item["arguments"],
            )
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed", response=response("completed", items, True))
    return _Out(200, events=events, content_type="text/event-stream; charset=utf-8")


def _tool_input(arguments: str) -> Any:
    try:
        return json.loads(arguments) if arguments else {}
    except ValueError:
        return {}


def _messages(call: _Call) -> _Out:
    body, reply = call.body, call.reply
    model = reply.model or str(body.get("model") or DEFAULT_ANTHROPIC_MODEL)
    tools = call.tool_calls()
    text = reply.text
    if text is None and not tools:
        text = "echo: " + _last_user_text(body.get("messages"))
    thinking = reply.thinking
    signature = "sig_" + hashlib.sha256((thinking or "").encode()).hexdigest()[:40]
    used = _count(body.get("messages"), body.get("system"))
    made = _words(text) + _words(thinking) + sum(_words(args) for _, args in tools)
    stop_reason = "tool_use" if tools else "end_turn"

    def usage(output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": used,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        }

    message: dict[str, Any] = {
        "id": f"msg_{call.num:024d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }

    if not call.stream:
        blocks: list[dict[str, Any]] = []
        if thinking is not None:
            blocks.append({"type": "thinking", "thinking": thinking, "signature": signature})
        if text is not None:
            blocks.append({"type": "text", "text": text})
        for k, (name, args) in enumerate(tools):
            use = {"type": "tool_use", "id": f"toolu_{k}", "name": name}
            blocks.append({**use, "input": _tool_input(args)})
        obj = {**message, "content": blocks, "stop_reason": stop_reason}
        if reply.usage:
            obj["usage"] = usage(made)
        return _json(obj)

    events: list[bytes] = []
    start: dict[str, Any] = {"type": "message_start", "message": dict(message)}
    if reply.usage:
        start["message"]["usage"] = usage(1)
    events.append(_typed_event(start))
    index = 0

    def block(content_block: dict[str, Any], deltas: Iterable[dict[str, Any]]) -> None:
        nonlocal index
        events.append(
            _typed_event(
                {"type": "content_block_start", "index": index, "content_block": content_block}
            )
        )
        for delta in deltas:
            events.append(
                _typed_event({"type": "content_block_delta", "index": index, "delta": delta})
            )
        events.append(_typed_event({"type": "content_block_stop", "index": index}))
        index += 1

    if thinking is not None:
        block(
            {"type": "thinking", "thinking": "", "signature": ""},
            [
                *({"type": "thinking_delta", "thinking": p} for p in _pieces(thinking)),
                {"type": "signature_delta", "signature": signature},
            ],
        )
    if text is not None:
        block(
            {"type": "text", "text": ""}, ({"type": "text_delta", "text": p} for p in _pieces(text))
        )
    for k, (name, args) in enumerate(tools):
        block(
            {"type": "tool_use", "id": f"toolu_{k}", "name": name, "input": {}},
            ({"type": "input_json_delta", "partial_json": p} for p in _halves(args)),
        )
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
    }
    if reply.usage:
        delta["usage"] = {"output_tokens": made}
    events.append(_typed_event(delta))
    events.append(_typed_event({"type": "message_stop"}))
    return _Out(200, events=events, content_type="text/event-stream; charset=utf-8")


def _count_tokens(call: _Call) -> _Out:
    return _json({"input_tokens": _count(call.body.get("messages"), call.body.get("system"))})


_BUILDERS = {
    "/chat/completions": _chat,
    "/completions": _completions,
    "/embeddings": _embeddings,
    "/responses": _responses,
    "/messages": _messages,
    "/messages/count_tokens": _count_tokens,
}


# --------------------------------------------------------------------------- HTTP server


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that remembers its open connections so stop() can end them."""

    daemon_threads = True
    block_on_close = True  # server_close() joins the handler threads
    request_queue_size = 128

    def __init__(self, fake: LoopbackServer) -> None:
        self.fake = fake
        self.open_conns: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), fake.handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conn_lock:
            self.open_conns.add(request)
            self.fake.connections += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.open_conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client hang-ups are normal in tests (timeouts, closed streams): stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60  # a forgotten keep-alive connection cannot hold a thread forever
    disable_nagle_algorithm = True  # else small header/body writes stall on delayed ACKs

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging on stderr."""

    def do_POST(self) -> None:
        self._answer()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self) -> None:
        fake = self.server.fake
        raw_body = self._read_body()
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        url = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        num, reply = fake._accept(Recorded(self.command, url.path, url.query, headers, body))
        try:
            out = self._plan(url.path, body, reply, num)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake: answer 500, keep it
            fake.errors.append(exc)
            traceback.print_exc()
            out = _json(_openai_error(500, f"fake_llm internal error: {exc!r}"), 500)
        if reply.delay_s and fake._stopping.wait(reply.delay_s):
            self.close_connection = True
            return
        try:
            self._send(out, reply, num)
        except OSError:  # the client went away (timeout, closed stream): nothing to do
            self.close_connection = True

    def _plan(self, path: str, body: Any, reply: Reply, num: int) -> _Out:
        custom = self.server.fake.answer(self.command, path, body, reply, num)
        if custom is not None:
            return custom
        endpoint = next((e for e in _ENDPOINTS if path.endswith(e)), None)
        if self.command != "POST":
            endpoint = None
        anthropic = endpoint in ("/messages", "/messages/count_tokens")
        if reply.status >= 400 and reply.raw is None:
            error = reply.error
            if error is None:
                error = (
                    _anthropic_error(reply.status, f"req_{num}")
                    if anthropic
                    else _openai_error(reply.status)
                )
            out = _json(error, reply.status)
            if reply.status in (408, 409, 429) or reply.status >= 500:
                out.headers["retry-after-ms"] = "5"  # keep SDK retries fast in tests
            return out
        if reply.raw is not None:
            ctype = reply.content_type or (
                "text/event-stream; charset=utf-8"
                if reply.raw.lstrip()[:6] in (b"data: ", b"event:")
                else "application/json"
            )
            if _is_sse(ctype):
                return _Out(reply.status, events=_split_sse(reply.raw), content_type=ctype)
            return _Out(reply.status, body=reply.raw, content_type=ctype)
        if endpoint is None:
            return _json(_openai_error(404, f"Unknown path: {self.command} {path}"), 404)
        call = _Call(body if isinstance(body, dict) else {}, reply, num)
        out = _BUILDERS[endpoint](call)
        out.status = reply.status
        if reply.content_type:
            out.content_type = reply.content_type
        return out

    def _send(self, out: _Out, reply: Reply, num: int) -> None:
        self.send_response(out.status)
        self.send_header("Content-Type", out.content_type)
        self.send_header("x-request-id", f"req_{num}")
        self.send_header("request-id", f"req_{num}")
        for name, value in out.headers.items():
            self.send_header(name, value)
        if out.events is None:
            self.send_header("Content-Length", str(len(out.body)))
            self.end_headers()
            self.wfile.write(out.body)
            return
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        stopping = self.server.fake._stopping
        for i, event in enumerate(out.events):
            if reply.drop_after is not None and i >= reply.drop_after:
                self._abort()
                return
            if i and reply.chunk_delay_s and stopping.wait(reply.chunk_delay_s):
                self._abort()
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        if reply.drop_after is not None and reply.drop_after <= len(out.events):
            self._abort()
            return
        self.wfile.write(b"0\r\n\r\n")

    def _abort(self) -> None:
        """End the stream mid-body: the chunked body never terminates, so the client errors."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class LoopbackServer:
    """Context manager: ``with Fake() as srv:`` serves on 127.0.0.1:<free port>, each
    request answered by the subclass's ``handler`` with the next scripted reply.

    On exit it stops accepting, ends open keep-alive connections, joins every thread and
    closes every socket, so the suite's thread and fd leak checks stay green.
    """

    handler: type[BaseHTTPRequestHandler]
    name = "fake"

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.errors: list[BaseException] = []  # exceptions raised by the fake's own code
        self.connections = 0  # TCP connections accepted (keep-alive reuse shows as fewer)
        self._script: deque[Any] = deque()
        self._lock = threading.Lock()
        self._num = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._stopping.clear()
        self._server = _Server(self)
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"{self.name}-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with server.conn_lock:
            conns = list(server.open_conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()  # closes the listener and joins the handler threads
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def script(self, *replies: Any) -> None:
        """Queue replies; each following request (any path) takes the next one."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        """Forget the recorded requests and any replies still queued."""
        with self._lock:
            self.requests.clear()
            self._script.clear()

    def _reply(self) -> Any:
        """The reply for a request that has none scripted."""
        raise NotImplementedError

    def _accept(self, recorded: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(recorded)
            self._num += 1
            reply = self._script.popleft() if self._script else self._reply()
            return self._num, reply


class FakeLLM(LoopbackServer):
    """A fake OpenAI and Anthropic server (and, in subclasses, other providers' wire
    formats: see ``answer``)."""

    handler = _Handler
    name = "fake-llm"
    requests: list[Recorded]

    def __init__(self) -> None:
        super().__init__()
        self.openai_base_url = ""
        self.anthropic_base_url = ""

    def start(self) -> Self:
        super().start()
        self.openai_base_url = self.url + "/v1"
        self.anthropic_base_url = self.url
        return self

    def count(self, path_suffix: str | None = None) -> int:
        """Requests received so far, optionally only those whose path ends with path_suffix."""
        with self._lock:
            return sum(
                1 for r in self.requests if path_suffix is None or r.path.endswith(path_suffix)
            )

    def answer(self, method: str, path: str, body: Any, reply: Reply, num: int) -> _Out | None:
        """Another provider's wire format (subclasses in ``tests/fake_<provider>.py``): the
        response to send, or None for the OpenAI / Anthropic handling."""
        return None

    def _reply(self) -> Reply:
        return Reply()


# --------------------------------------------------------------------------- clients


def openai_client(srv: FakeLLM, async_: bool = False, **kw: Any) -> Any:
    """A real ``openai.OpenAI`` (or ``AsyncOpenAI``) pointed at the fake; close it after use."""
    import openai

    kw.setdefault("api_key", OPENAI_KEY)
    kw.setdefault("max_retries", 0)
    kw.setdefault("base_url", srv.openai_base_url)
    return openai.AsyncOpenAI(**kw) if async_ else openai.OpenAI(**kw)


def anthropic_client(srv: FakeLLM, async_: bool = False, **kw: Any) -> Any:
    """A real ``anthropic.Anthropic`` (or ``AsyncAnthropic``) pointed at the fake."""
    import anthropic

    kw.setdefault("api_key", ANTHROPIC_KEY)
    kw.setdefault("max_retries", 0)
    kw.setdefault("base_url", srv.anthropic_base_url)
    return anthropic.AsyncAnthropic(**kw) if async_ else anthropic.Anthropic(**kw)


# --------------------------------------------------------------------------- cassettes


def _header_map(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        values = value if isinstance(value, list) else [value]
        out[str(name).lower()] = ", ".join(str(v) for v in values)
    return out


def _body_bytes(part: dict[str, Any]) -> tuple[bytes, bool]:
    """A cassette body as bytes, and whether it was re-encoded (parsed_body)."""
    if "parsed_body" in part:
        return _dumps(part["parsed_body"]), True
    body = part.get("body")
    if isinstance(body, dict):
        body = body.get("string")
    if body is None:
        return b"", False
    return (body.encode() if isinstance(body, str) else bytes(body)), False


def load_cassette(relpath: str) -> list[dict[str, Any]]:
    """Interactions of a recorded vcrpy cassette, with plain (gunzipped) response bodies.

    Each item is ``{"request": {"method", "uri", "body"}, "response": {"status", "headers",
    "body"}}``. Skips the test when the shared fixtures folder is not present.
    """
    import pytest
    import yaml  # type: ignore[import-untyped,unused-ignore]

    if not FIXTURES.is_dir():
        pytest.skip(f"recorded fixtures not found at {FIXTURES}")
    data = yaml.safe_load((FIXTURES / relpath).read_text(encoding="utf-8"))
    out: list[dict[str, Any]] = []
    for item in data["interactions"]:
        request, response = item["request"], item["response"]
        req_bytes, _ = _body_bytes(request)
        if req_bytes[:2] == b"\x1f\x8b":
            req_bytes = gzip.decompress(req_bytes)
        try:
            req_body = json.loads(req_bytes) if req_bytes else None
        except ValueError:
            req_body = None
        headers = _header_map(response.get("headers"))
        body, changed = _body_bytes(response)
        if headers.get("content-encoding", "").lower() == "gzip" or body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
            changed = True
        headers.pop("content-encoding", None)
        if changed:  # the recorded framing no longer matches the bytes we hold
            headers.pop("content-length", None)
            headers.pop("transfer-encoding", None)
        status = response.get("status")
        code = status.get("code") if isinstance(status, dict) else status
        out.append(
            {
                "request": {
                    "method": request.get("method"),
                    "uri": request.get("uri"),
                    "body": req_body,
                },
                "response": {"status": int(code or 200), "headers": headers, "body": body},
            }
        )
    return out


def replay(interaction: dict[str, Any]) -> Reply:
    """A Reply that sends a recorded response verbatim (status, content type, body)."""
    response = interaction["response"]
    return Reply(
        status=response["status"],
        raw=response["body"],
        content_type=response["headers"].get("content-type") or "application/json",
    )
