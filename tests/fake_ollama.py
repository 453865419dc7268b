"""A fake Ollama server on 127.0.0.1 (``/api/chat``, ``/api/generate``, ``/api/embed``,
``/api/embeddings``) for driving the real ``ollama`` SDK in tests.

It is ``FakeLLM`` (same ``Reply`` script, request log, connection handling and
``drop_after``/``delay_s`` faults) answering in Ollama's wire format, which follows the
recorded traffic in ``shared/fixtures/recorded/ollama``: one JSON object per response,
or ``application/x-ndjson`` lines for a stream, whose last line (``"done": true``) carries
``done_reason`` and the token counts ``prompt_eval_count`` / ``eval_count``. Tool calls
come whole, arguments as a JSON object and no id. Errors are ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from typing import Any

from fake_llm import (
    EMBEDDING_DIMS,
    FakeLLM,
    Reply,
    _count,
    _dumps,
    _last_user_text,
    _Out,
    _phrase,
    _pieces,
    _vector,
    _words,
)

__all__ = ["CREATED_AT", "FakeOllama", "Reply", "ollama_client"]

CREATED_AT = "2024-07-18T00:00:00Z"
NDJSON = "application/x-ndjson"


def _line(obj: Any) -> bytes:
    return _dumps(obj) + b"\n"


class FakeOllama(FakeLLM):
    """``with FakeOllama() as srv:``; point a client at ``srv.url``."""

    def answer(self, method: str, path: str, body: Any, reply: Reply, num: int) -> _Out | None:
        if reply.raw is not None:
            return None  # sent verbatim by FakeLLM
        if reply.status >= 400:
            error = reply.error or {"error": f"fake {reply.status} error ({_phrase(reply.status)})"}
            return _Out(reply.status, body=_dumps(error), content_type="application/json")
        body = body if isinstance(body, dict) else {}
        build = _ENDPOINTS.get(path) if method == "POST" else None
        if build is None:
            return _Out(404, body=_dumps({"error": f"unknown path {method} {path}"}))
        return build(body, reply)


def _counts(reply: Reply, prompt: int, made: int) -> dict[str, Any]:
    if not reply.usage:
        return {}
    return {"total_duration": 1000, "load_duration": 10, "prompt_eval_count": prompt,
            "prompt_eval_duration": 100, "eval_count": made, "eval_duration": 800}


def _answer(body: dict[str, Any], reply: Reply, key: str, text: str, extra: dict[str, Any],
            prompt: int, made: int) -> _Out:
    """A whole response, or the stream of its pieces; ``key`` builds one piece."""
    model = reply.model or str(body.get("model") or "llama3.2")
    head = {"model": model, "created_at": CREATED_AT}
    reason = "stop"
    tail = {"done": True, "done_reason": reason, **_counts(reply, prompt, made)}
    if body.get("stream", True) is False:
        return _Out(200, body=_dumps({**head, **_piece(key, text, extra), **tail}),
                    content_type="application/json; charset=utf-8")
    lines = [_line({**head, **_piece(key, piece, {}), "done": False})
             for piece in _pieces(text)]
    if extra:  # tool calls come whole, in a part of their own
        lines.append(_line({**head, **_piece(key, "", extra), "done": False}))
    lines.append(_line({**head, **_piece(key, "", {}), **tail}))
    return _Out(200, events=lines, content_type=NDJSON)


def _piece(key: str, text: str, extra: dict[str, Any]) -> dict[str, Any]:
    if key == "message":
        return {"message": {"role": "assistant", "content": text, **extra}}
    return {key: text, **extra}


def _chat(body: dict[str, Any], reply: Reply) -> _Out:
    messages = body.get("messages") or []
    tools = list(reply.tool_calls or [])
    text = reply.text
    if text is None:
        text = "" if tools else "echo: " + _last_user_text(messages)
    extra: dict[str, Any] = {}
    if tools:
        extra["tool_calls"] = [{"function": {"name": name, "arguments": json.loads(args)}}
                               for name, args in tools]
    made = _words(text) + sum(_words(args) for _, args in tools)
    return _answer(body, reply, "message", text, extra, _count(messages), made)


def _generate(body: dict[str, Any], reply: Reply) -> _Out:
    prompt = str(body.get("prompt") or "")
    text = reply.text if reply.text is not None else "echo: " + prompt
    used = _count(prompt, body.get("system"))
    return _answer(body, reply, "response", text, {}, used, _words(text))


def _embed(body: dict[str, Any], reply: Reply) -> _Out:
    raw = body.get("input", "")
    inputs = [raw] if isinstance(raw, str) else list(raw)
    obj: dict[str, Any] = {
        "model": reply.model or str(body.get("model") or "all-minilm"),
        "embeddings": [_vector(item, EMBEDDING_DIMS) for item in inputs],
    }
    if reply.usage:
        obj.update(total_duration=1000, load_duration=10, prompt_eval_count=_count(inputs))
    return _Out(200, body=_dumps(obj), content_type="application/json; charset=utf-8")


def _embeddings(body: dict[str, Any], reply: Reply) -> _Out:
    """The legacy endpoint: one prompt, one vector, no counts."""
    vector = _vector(body.get("prompt", ""), EMBEDDING_DIMS)
    return _Out(200, body=_dumps({"embedding": vector}), content_type="application/json")


_ENDPOINTS = {
    "/api/chat": _chat,
    "/api/generate": _generate,
    "/api/embed": _embed,
    "/api/embeddings": _embeddings,
}


def ollama_client(srv: FakeLLM, async_: bool = False, **kw: Any) -> Any:
    """A real ``ollama.Client`` (or ``AsyncClient``) pointed at the fake; close it after use."""
    import ollama

    kw.setdefault("host", srv.url)
    return ollama.AsyncClient(**kw) if async_ else ollama.Client(**kw)
