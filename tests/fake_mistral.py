"""A fake Mistral API (mistralai wire format) on 127.0.0.1, on top of ``fake_llm.FakeLLM``.

Speaks ``POST /v1/chat/completions`` (plain JSON, or SSE ``data:`` chunks ending with
``data: [DONE]`` when the body says ``stream: true``; usage rides on the last chunk, as in
the recorded traffic under ``shared/fixtures/recorded/mistral``), ``/v1/agents/completions``
(the same), ``/v1/embeddings``, and Mistral's error bodies. Tool calls come whole in one
delta, with 9-character ids. Replies are scripted with ``fake_llm.Reply``; token counts are
word counts, ids come from the request counter.
"""

from __future__ import annotations

from typing import Any

from fake_llm import (
    EMBEDDING_DIMS,
    FakeLLM,
    Reply,
    _count,
    _data_event,
    _json,
    _last_user_text,
    _Out,
    _phrase,
    _pieces,
    _vector,
    _words,
)

MISTRAL_KEY = "mistral-test-canary-0000"
DEFAULT_MODEL = "mistral-small-latest"
CREATED = 1757759490


def mistral_error(status: int) -> dict[str, Any]:
    if status == 422:  # FastAPI's validation error: the SDK raises HTTPValidationError
        return {"detail": [{"type": "missing", "loc": ["body", "model"], "msg": "Field required",
                            "input": None}]}
    return {"object": "error", "message": f"Fake {status} error ({_phrase(status)}).",
            "type": "invalid_request_error", "param": None, "code": str(status)}


def tool_id(num: int, k: int) -> str:
    return f"T{num:04d}x{k:03d}"  # 9 characters, as Mistral's are


class FakeMistral(FakeLLM):
    """``FakeLLM`` answering Mistral's paths; ``cached_tokens`` is reported as
    ``prompt_tokens_details.cached_tokens`` when set."""

    def __init__(self) -> None:
        super().__init__()
        self.cached_tokens = 0

    def answer(self, method: str, path: str, body: Any, reply: Reply, num: int) -> _Out | None:
        if reply.raw is not None:
            return None  # sent verbatim by FakeLLM
        if reply.status >= 400:
            return _json(reply.error or mistral_error(reply.status), reply.status)
        body = body if isinstance(body, dict) else {}
        if path.endswith("/chat/completions") or path.endswith("/agents/completions"):
            return self._chat(body, reply, num)
        if path.endswith("/embeddings"):
            return self._embeddings(body, reply)
        return _json({"detail": "Not Found"}, 404)

    def _usage(self, prompt: int, completion: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion}
        if self.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return usage

    def _chat(self, body: dict[str, Any], reply: Reply, num: int) -> _Out:
        model = reply.model or str(body.get("model") or DEFAULT_MODEL)
        tools = reply.tool_calls or []
        text = reply.text
        messages = body.get("messages") or []
        if text is None and not tools:
            text = "echo: " + _last_user_text(messages)
        prompt = _count(messages)
        completion = _words(text) + sum(_words(args) for _, args in tools)
        finish = "tool_calls" if tools else "stop"
        calls = [{"id": tool_id(num, k), "type": "function", "index": k,
                  "function": {"name": name, "arguments": args}}
                 for k, (name, args) in enumerate(tools)]
        head = {"id": f"cmpl-{num}", "created": CREATED, "model": model}
        if not body.get("stream"):
            obj: dict[str, Any] = {
                **head, "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant", "content": text or "",
                                         "tool_calls": calls or None, "prefix": False}}],
            }
            if reply.usage:
                obj["usage"] = self._usage(prompt, completion)
            return _json(obj)

        def chunk(delta: dict[str, Any], reason: str | None = None,
                  usage: dict[str, Any] | None = None) -> bytes:
            obj = {**head, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
            if usage is not None:
                obj["usage"] = usage
            return _data_event(obj)

        events = [chunk({"role": "assistant", "content": ""})]
        events.extend(chunk({"content": piece}) for piece in _pieces(text or ""))
        if calls:
            events.append(chunk({"tool_calls": calls}))
        events.append(chunk({"content": ""}, finish,
                            self._usage(prompt, completion) if reply.usage else None))
        events.append(b"data: [DONE]\n\n")
        return _Out(200, events=events, content_type="text/event-stream")

    def _embeddings(self, body: dict[str, Any], reply: Reply) -> _Out:
        inputs = body.get("inputs") or body.get("input") or []
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        dims = int(body.get("output_dimension") or EMBEDDING_DIMS)
        tokens = sum(_words(str(x)) for x in inputs)
        obj: dict[str, Any] = {
            "id": "emb-1", "object": "list",
            "data": [{"object": "embedding", "embedding": _vector(x, dims), "index": i}
                     for i, x in enumerate(inputs)],
            "model": reply.model or str(body.get("model") or "mistral-embed"),
        }
        if reply.usage:
            obj["usage"] = {"prompt_tokens": tokens, "completion_tokens": 0,
                            "total_tokens": tokens}
        return _json(obj)


def mistral_client(srv: FakeLLM, **kw: Any) -> Any:
    """A real ``Mistral`` client pointed at the fake (sync and async in one object)."""
    try:
        from mistralai.client import Mistral  # 3.x
    except ImportError:  # 1.x
        from mistralai import Mistral  # type: ignore[attr-defined,no-redef]

    kw.setdefault("api_key", MISTRAL_KEY)
    kw.setdefault("server_url", srv.url)
    return Mistral(**kw)
