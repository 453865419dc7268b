"""Ollama SDK adapter: ``chat``, ``generate`` and ``embed`` (and legacy ``embeddings``),
streamed or not, on ``Client`` and ``AsyncClient``.

One patch per class, on ``_request``, which every endpoint calls with the JSON body it
has just built. That also covers ``ollama.chat`` and the other module-level functions:
they are methods of a default client bound at import, so a patch on ``Client.chat`` made
after that import would never be seen by them, while ``self._request`` is looked up at
each call. A stream is the SDK's generator, which makes its HTTP request on the first
``next``; the lifecycle observes it item by item. The models run locally, so a record
has no cost, and says why.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import weakref
from types import ModuleType
from typing import Any

from .._patching import Patches
from . import _llm
from ._llm import Outcome, Request, count, get

PATCHES = Patches()

_OPERATIONS = {
    "/api/chat": "chat",
    "/api/generate": "text_completion",
    "/api/embed": "embeddings",
    "/api/embeddings": "embeddings",
}
_NOT_PARAMS = frozenset({"model", "messages", "prompt", "system", "images", "input", "stream",
                         "context"})
_NOT_PARAMS_NO_TOOLS = _NOT_PARAMS | {"tools"}  # ``chat`` always sends a list, often empty
_LOCAL = "a local model (ollama): no price per token"


def usage(obj: Any) -> dict[str, Any] | None:
    """Ollama counts tokens in the final response: prompt_eval_count / eval_count."""
    prompt, made = count(get(obj, "prompt_eval_count")), count(get(obj, "eval_count"))
    return None if prompt is None and made is None else _llm.usage(prompt, made)


def _tool_calls(message: Any) -> list[dict[str, Any]]:
    calls = []
    for tc in get(message, "tool_calls") or ():
        fn = get(tc, "function")
        arguments = get(fn, "arguments")
        calls.append({"id": get(tc, "id"), "name": get(fn, "name"),
                      "arguments": arguments if isinstance(arguments, str)
                      else json.dumps(dict(arguments or {}))})
    return calls


_servers: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()
"""httpx client -> its server address, its key noted: once per client, not per call."""


def _server(client: Any) -> str | None:
    http = getattr(client, "_client", None)
    try:
        return _servers[http]
    except (KeyError, TypeError):  # new, or not an object a weak reference can hold
        pass
    # ``OLLAMA_API_KEY`` (ollama.com) became a Bearer header on the client.
    headers = getattr(http, "headers", None)
    auth = headers.get("authorization") if headers is not None else None
    if isinstance(auth, str) and auth[:7].lower() == "bearer ":
        _llm.note_keys(auth[7:].strip())
    url = getattr(http, "base_url", None)
    host, port = getattr(url, "host", None), getattr(url, "port", None)
    address = (f"{host}:{port}" if port else str(host)) if host else None
    with contextlib.suppress(TypeError):
        _servers[http] = address
    return address


class OllamaTranslator:
    name = "ollama"

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request | None:
        # ``_request(self, cls, method, path, json=..., stream=...)``
        path = args[3] if len(args) > 3 else kwargs.get("url")
        operation = _OPERATIONS.get(path) if isinstance(path, str) else None
        data = kwargs.get("json")
        if operation is None or not isinstance(data, dict):
            return None
        if operation == "chat":
            content: Any = data.get("messages")
        elif operation == "embeddings":
            content = data.get("input", data.get("prompt"))
        else:  # the prompt alone, unless a system prompt or images come with it
            content = {k: data[k] for k in ("system", "prompt", "images") if k in data}
            if list(content) == ["prompt"]:
                content = content["prompt"]
        model = data.get("model")
        skip = _NOT_PARAMS if data.get("tools") else _NOT_PARAMS_NO_TOOLS
        options = data.get("options")
        if isinstance(options, dict) and options:
            # Sampling parameters live in ``options``: the record shows them as params.
            data = {**{k: v for k, v in data.items() if k != "options"}, **options}
        return Request("ollama", operation, model if isinstance(model, str) and model else None,
                       content, data, skip, bool(kwargs.get("stream")), _server(args[0]))

    def response(self, req: Request, obj: Any) -> Outcome:
        out: Outcome = {"response_model": get(obj, "model"), "usage": usage(obj),
                        "cost_missing_reason": _LOCAL}
        if req.operation == "embeddings":
            vectors = get(obj, "embeddings")
            if vectors is None:  # legacy /api/embeddings: one vector
                single = get(obj, "embedding")
                vectors = [single] if single is not None else []
            first = vectors[0] if vectors else None
            out["output"] = {"embeddings": len(vectors),
                             "dimensions": len(first) if first is not None else None}
            return out
        reason = get(obj, "done_reason")
        out["finish_reasons"] = [str(reason)] if reason else []
        if req.operation == "text_completion":
            out["output"] = get(obj, "response")
            return out
        message = get(obj, "message")
        msg: dict[str, Any] = {"role": get(message, "role") or "assistant",
                               "content": get(message, "content") or None}
        thinking = get(message, "thinking")
        if thinking:
            msg["thinking"] = thinking
        calls = _tool_calls(message)
        if calls:
            msg["tool_calls"] = out["tool_calls"] = calls
        out["output"] = msg
        return out

    def accumulator(self, req: Request) -> _Stream:
        return _Stream(req.operation)


class _Stream:
    """NDJSON parts: text fragments, tool calls whole, counts in the last (``done``) part."""

    __slots__ = ("calls", "final", "model", "operation", "text", "thinking")

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.model: Any = None
        self.final: Any = None

    def add(self, part: Any) -> None:
        if self.model is None:
            self.model = getattr(part, "model", None)
        if self.operation == "chat":
            message = getattr(part, "message", None)
            text = getattr(message, "content", None)
            thinking = getattr(message, "thinking", None)
            if getattr(message, "tool_calls", None):
                self.calls.extend(_tool_calls(message))
        else:
            text = getattr(part, "response", None)
            thinking = getattr(part, "thinking", None)
        if text:
            self.text.append(text)
        if thinking:
            self.thinking.append(thinking)
        if getattr(part, "done", False):
            self.final = part

    def outcome(self) -> Outcome:
        text = "".join(self.text) or None
        final = self.final
        reason = getattr(final, "done_reason", None)
        out: Outcome = {"response_model": self.model, "usage": usage(final),
                        "finish_reasons": [str(reason)] if reason else [],
                        "cost_missing_reason": _LOCAL}
        if final is None:
            out["usage_missing_reason"] = "the stream ended before its last (done) part"
        if self.operation == "text_completion":
            out["output"] = text
            return out
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        if self.thinking:
            msg["thinking"] = "".join(self.thinking)
        if self.calls:
            msg["tool_calls"] = out["tool_calls"] = self.calls
        out["output"] = msg
        return out


TRANSLATOR = OllamaTranslator()


def install(module: ModuleType) -> None:
    """Called once ``ollama`` is imported."""
    _llm.install()
    client = importlib.import_module("ollama._client")
    for cls in (client.Client, client.AsyncClient):
        _llm.patch(PATCHES, cls, "_request", TRANSLATOR)


def uninstall() -> None:
    PATCHES.remove()
