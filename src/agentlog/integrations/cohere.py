"""Cohere SDK adapter: the v2 API's ``chat``, ``chat_stream`` and ``embed``, sync and async.

Cohere's SDK is Fern-generated, without one ``request`` method that all calls share, so
the v2 client's methods are patched where they are defined (``V2Client`` and
``AsyncV2Client``), which covers ``ClientV2``, ``AsyncClientV2`` and ``Client().v2``.
``chat_stream`` is a generator of typed events that makes its request on the first one.
Usage is the ``billed_units`` Cohere charges for (``tokens`` also counts the prompt
template it adds), so that cost is what the bill says.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .._patching import Patches
from . import _llm, _stainless
from ._llm import Outcome, Request, get

PATCHES = Patches()

_NOT_PARAMS = frozenset({"model", "messages", "texts", "images", "inputs", "stream"})


def _number(value: Any) -> int | None:
    """Cohere's counts are typed float (``7.0``); ours are integers."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value if type(value) is int else None


def usage(u: Any) -> dict[str, Any] | None:
    """``billed_units`` (what is charged), else ``tokens``; embed has no output tokens."""
    if u is None:
        return None
    counts = get(u, "billed_units") or get(u, "tokens")
    if counts is None:
        return None
    return _llm.usage(_number(get(counts, "input_tokens")), _number(get(counts, "output_tokens")))


def _wrapper(client: Any) -> Any:
    # ``ClientV2`` keeps it itself; the ``V2Client`` of ``Client().v2`` in its raw client.
    found = getattr(client, "_client_wrapper", None)
    return found if found is not None else getattr(
        getattr(client, "_raw_client", None), "_client_wrapper", None)


def _server(wrapper: Any) -> tuple[str, str | None]:
    """(provider, address) from the client's base URL."""
    base = wrapper.get_base_url() if wrapper is not None else None
    if not isinstance(base, str):
        return "cohere", None
    host, address = _llm.address(base)
    return _stainless.provider_for(host, "cohere"), address


def _message(text: str | None, thinking: str | None, plan: str | None,
             calls: list[dict[str, Any]]) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": text}
    if thinking:
        msg["thinking"] = thinking
    if plan:
        msg["tool_plan"] = plan
    if calls:
        msg["tool_calls"] = calls
    return msg


class CohereTranslator:
    """One per patched method: ``operation`` and ``streamed`` are the method's."""

    name = "cohere"

    def __init__(self, operation: str, streamed: bool) -> None:
        self.operation = operation
        self.streamed = streamed

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request | None:
        # Keyword-only methods; ``...`` is Fern's "not given", and None is not sent either.
        data = {k: v for k, v in kwargs.items()
                if v is not ... and v is not None and k != "request_options"}
        tools = data.get("tools")
        if isinstance(tools, (list, tuple)) and not all(isinstance(t, dict) for t in tools):
            # ``ToolV2`` objects: as the dicts sent, so that the record names them.
            data["tools"] = [t.model_dump(by_alias=True, exclude_none=True)
                             if hasattr(t, "model_dump") else t for t in tools]
        wrapper = _wrapper(args[0])
        token = getattr(wrapper, "_token", None)
        if isinstance(token, str):
            _llm.note_keys(token)
        if self.operation == "chat":
            content: Any = data.get("messages")
            # The caller's list, often appended to after the call: keep it as it is now.
            content = list(content) if isinstance(content, (list, tuple)) else content
        else:
            content = next((data[k] for k in ("texts", "inputs", "images") if k in data), None)
        provider, address = _server(wrapper)
        model = data.get("model")
        return Request(provider, self.operation, model if isinstance(model, str) else None,
                       content, data, _NOT_PARAMS, self.streamed, address)

    def response(self, req: Request, obj: Any) -> Outcome:
        out: Outcome = {"response_id": get(obj, "id")}
        if req.operation == "embeddings":
            out["usage"] = usage(get(obj, "meta"))
            out["output"] = _embeddings(get(obj, "embeddings"))
            return out
        message = get(obj, "message")
        texts, thinking = [], []
        for item in get(message, "content") or ():
            kind = get(item, "type")
            if kind == "text":
                texts.append(get(item, "text") or "")
            elif kind == "thinking":
                thinking.append(get(item, "thinking") or "")
        calls = [_llm.function_call(tc) for tc in get(message, "tool_calls") or ()]
        out["output"] = _message("".join(texts) if texts else None, "".join(thinking) or None,
                                 get(message, "tool_plan"), calls)
        reason = get(obj, "finish_reason")
        out["finish_reasons"] = [str(reason)] if reason else []
        out["usage"] = usage(get(obj, "usage"))
        if calls:
            out["tool_calls"] = calls
        return out

    def accumulator(self, req: Request) -> _Stream:
        return _Stream()


def _embeddings(by_type: Any) -> dict[str, Any]:
    """Counts, not vectors: the first embedding type's number and length of vectors."""
    fields = by_type if isinstance(by_type, dict) else getattr(by_type, "__dict__", {})
    return _llm.embeddings_output(next((v for v in fields.values() if isinstance(v, list)), []))


class _Stream:
    """v2 stream events: text and tool-plan deltas, tool calls in pieces, usage at the end."""

    __slots__ = ("calls", "id", "plan", "reason", "text", "thinking", "usage")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.plan: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.id: Any = None
        self.reason: Any = None
        self.usage: Any = None

    def add(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        delta = getattr(event, "delta", None)
        message = getattr(delta, "message", None)
        if kind == "content-delta":
            content = getattr(message, "content", None)
            text = getattr(content, "text", None)
            if text:
                self.text.append(text)
            thinking = getattr(content, "thinking", None)
            if thinking:
                self.thinking.append(thinking)
        elif kind == "tool-call-delta":
            call = self.calls.get(getattr(event, "index", None) or 0)
            fn = getattr(getattr(message, "tool_calls", None), "function", None)
            piece = getattr(fn, "arguments", None)
            if call is not None and piece:
                call["arguments"] += piece
        elif kind == "tool-call-start":
            tc = getattr(message, "tool_calls", None)
            start = _llm.function_call(tc)
            start["arguments"] = start["arguments"] or ""
            self.calls[getattr(event, "index", None) or 0] = start
        elif kind == "tool-plan-delta":
            piece = getattr(message, "tool_plan", None)
            if piece:
                self.plan.append(piece)
        elif kind == "message-start":
            self.id = getattr(event, "id", None)
        elif kind == "message-end":
            self.reason = getattr(delta, "finish_reason", None)
            self.usage = getattr(delta, "usage", None)

    def outcome(self) -> Outcome:
        calls = [self.calls[i] for i in sorted(self.calls)]
        out: Outcome = {
            "response_id": self.id,
            "output": _message("".join(self.text) or None, "".join(self.thinking) or None,
                               "".join(self.plan) or None, calls),
            "finish_reasons": [str(self.reason)] if self.reason else [],
            "usage": usage(self.usage),
        }
        if calls:
            out["tool_calls"] = calls
        if self.usage is None:
            out["usage_missing_reason"] = "the stream ended before message-end"
        return out


_METHODS = (("chat", "chat", False), ("chat_stream", "chat", True),
            ("embed", "embeddings", False))


def install(module: ModuleType) -> None:
    """Called once ``cohere`` is imported."""
    try:
        v2 = importlib.import_module("cohere.v2.client")
    except ImportError:  # a cohere 5 without the v2 client: nothing to patch
        return
    _llm.install()
    for owner in (v2.V2Client, v2.AsyncV2Client):
        for name, operation, streamed in _METHODS:
            _llm.patch(PATCHES, owner, name, CohereTranslator(operation, streamed))


def uninstall() -> None:
    PATCHES.remove()
