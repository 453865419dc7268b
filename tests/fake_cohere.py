"""A fake Cohere v2 server on 127.0.0.1 (``/v2/chat``, ``/v2/embed``) for driving the real
``cohere`` SDK in tests.

It is ``FakeLLM`` (same ``Reply`` script, request log, connection handling and
``drop_after``/``delay_s`` faults) answering in Cohere's v2 wire format, which follows
the recorded traffic in ``shared/fixtures/recorded/cohere``: a chat is one JSON object;
a chat stream is SSE, each event an ``event: <type>`` line and a ``data:`` line whose JSON
repeats the type (message-start, content-start/delta/end, tool-plan-delta,
tool-call-start/delta/end, message-end with the usage), then ``data: [DONE]``. Usage has
``billed_units`` (what is charged) and ``tokens`` (which also counts Cohere's prompt
template: here ``TEMPLATE_TOKENS`` more input tokens, one more output token). Errors
are ``{"id": ..., "message": ...}``.
"""

from __future__ import annotations

from typing import Any

from fake_llm import (
    EMBEDDING_DIMS,
    FakeLLM,
    Reply,
    _count,
    _dumps,
    _halves,
    _last_user_text,
    _Out,
    _phrase,
    _pieces,
    _vector,
    _words,
)

__all__ = ["COHERE_KEY", "TEMPLATE_TOKENS", "FakeCohere", "Reply", "close_cohere", "cohere_client"]

COHERE_KEY = "co-test-canary-0000"
TEMPLATE_TOKENS = 50
SSE = "text/event-stream"


def _event(obj: dict[str, Any]) -> bytes:
    return b"event: " + str(obj["type"]).encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


class FakeCohere(FakeLLM):
    """``with FakeCohere() as srv:``; point a client at ``base_url=srv.url``."""

    def answer(self, method: str, path: str, body: Any, reply: Reply, num: int) -> _Out | None:
        if reply.raw is not None:
            return None  # sent verbatim by FakeLLM
        if reply.status >= 400:
            message = f"fake {reply.status} error ({_phrase(reply.status)})"
            error = reply.error or {"id": f"err-{num}", "message": message}
            out = _Out(reply.status, body=_dumps(error))
            if reply.status in (408, 409, 429) or reply.status >= 500:
                out.headers["retry-after-ms"] = "5"  # keep SDK retries fast in tests
            return out
        body = body if isinstance(body, dict) else {}
        if method == "POST" and path == "/v2/chat":
            return _chat(body, reply, num)
        if method == "POST" and path == "/v2/embed":
            return _embed(body, reply, num)
        return _Out(404, body=_dumps({"id": f"err-{num}", "message": f"unknown path {path}"}))


def _usage(prompt: int, made: int) -> dict[str, Any]:
    return {"billed_units": {"input_tokens": prompt, "output_tokens": made},
            "tokens": {"input_tokens": prompt + TEMPLATE_TOKENS, "output_tokens": made + 1}}


def _chat(body: dict[str, Any], reply: Reply, num: int) -> _Out:
    messages = body.get("messages") or []
    tools = list(reply.tool_calls or [])
    ids = reply.tool_call_ids or [f"{name}_{k}" for k, (name, _) in enumerate(tools)]
    text = reply.text
    if text is None and not tools:
        text = "echo: " + _last_user_text(messages)
    plan = f"I will call {', '.join(name for name, _ in tools)}." if tools else None
    made = _words(text) + _words(plan) + sum(_words(args) for _, args in tools)
    usage = _usage(_count(messages), made)
    finish = "TOOL_CALL" if tools else "COMPLETE"
    rid = f"chat-{num}"
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant"}
        if plan:
            message["tool_plan"] = plan
            message["tool_calls"] = [
                {"id": ids[k], "type": "function", "function": {"name": name, "arguments": args}}
                for k, (name, args) in enumerate(tools)]
        if text is not None:
            message["content"] = [{"type": "text", "text": text}]
        obj: dict[str, Any] = {"id": rid, "message": message, "finish_reason": finish}
        if reply.usage:
            obj["usage"] = usage
        return _Out(200, body=_dumps(obj))

    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events = [_event({"id": rid, "type": "message-start", "delta": {"message": start}})]
    for piece in _pieces(plan or ""):
        delta = {"message": {"tool_plan": piece}}
        events.append(_event({"type": "tool-plan-delta", "delta": delta}))
    for k, (name, args) in enumerate(tools):
        call = {"id": ids[k], "type": "function", "function": {"name": name, "arguments": ""}}
        events.append(_event({"type": "tool-call-start", "index": k,
                              "delta": {"message": {"tool_calls": call}}}))
        for piece in _halves(args):
            delta = {"message": {"tool_calls": {"function": {"arguments": piece}}}}
            events.append(_event({"type": "tool-call-delta", "index": k, "delta": delta}))
        events.append(_event({"type": "tool-call-end", "index": k}))
    if text is not None:
        events.append(_event({"type": "content-start", "index": 0,
                              "delta": {"message": {"content": {"type": "text", "text": ""}}}}))
        for piece in _pieces(text):
            events.append(_event({"type": "content-delta", "index": 0,
                                  "delta": {"message": {"content": {"text": piece}}}}))
        events.append(_event({"type": "content-end", "index": 0}))
    end: dict[str, Any] = {"finish_reason": finish}
    if reply.usage:
        end["usage"] = usage
    events.append(_event({"type": "message-end", "delta": end}))
    events.append(b"data: [DONE]\n\n")
    return _Out(200, events=events, content_type=SSE)


def _embed(body: dict[str, Any], reply: Reply, num: int) -> _Out:
    texts = list(body.get("texts") or [])
    kinds = body.get("embedding_types") or ["float"]
    dims = int(body.get("output_dimension") or EMBEDDING_DIMS)
    vectors = [_vector(t, dims) for t in texts]
    obj: dict[str, Any] = {
        "id": f"embed-{num}",
        "texts": texts,
        "embeddings": {kind: vectors for kind in kinds},
        "response_type": "embeddings_by_type",
        "meta": {"api_version": {"version": "2"}},
    }
    if reply.usage:
        obj["meta"]["billed_units"] = {"input_tokens": _count(texts)}
    return _Out(200, body=_dumps(obj))


async def close_cohere(client: Any) -> None:
    """Cohere's clients have no ``close()``: close the HTTP client they hold."""
    http = client._client_wrapper.httpx_client.httpx_client
    result = http.close() if hasattr(http, "close") else http.aclose()
    if result is not None:
        await result


def cohere_client(srv: FakeLLM, async_: bool = False, **kw: Any) -> Any:
    """A real ``cohere.ClientV2`` (or ``AsyncClientV2``) pointed at the fake; close it after
    use (``close()`` closes its HTTP client)."""
    import cohere

    kw.setdefault("api_key", COHERE_KEY)
    kw.setdefault("base_url", srv.url)
    kw.setdefault("max_retries", 0)
    return cohere.AsyncClientV2(**kw) if async_ else cohere.ClientV2(**kw)
