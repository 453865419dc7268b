"""A fake Gemini API (google-genai wire format) on 127.0.0.1, on top of ``fake_llm.FakeLLM``.

Speaks REST ``models/{model}:generateContent``, ``:streamGenerateContent?alt=sse`` (SSE of
GenerateContentResponse JSON, ``data:`` lines only, no terminator, usageMetadata on every
chunk and growing, as the recorded traffic in ``shared/fixtures/recorded/google`` shows),
``:batchEmbedContents`` / ``:embedContent``, and Google's error body
``{"error": {"code", "message", "status"}}``. Replies are scripted with ``fake_llm.Reply``
(text, tool_calls, thinking, usage, model, status, raw, drop_after, chunk delays); token
counts are word counts, ids come from the request counter.

Usage::

    with FakeGoogle() as srv:
        client = google_client(srv)
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
"""

from __future__ import annotations

import json
from typing import Any

from fake_llm import (
    EMBEDDING_DIMS,
    FakeLLM,
    Reply,
    _data_event,
    _json,
    _Out,
    _phrase,
    _pieces,
    _vector,
    _words,
)

GOOGLE_KEY = "AIza-test-canary-google-0000"
DEFAULT_MODEL = "gemini-2.5-flash"

_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
           404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def google_error(status: int) -> dict[str, Any]:
    return {"error": {"code": status, "message": f"Fake {status} error ({_phrase(status)}).",
                      "status": _STATUS.get(status, "UNKNOWN")}}


def _prompt_words(value: Any) -> int:
    """Words in every ``text`` of a request's contents (parts nest under ``parts``)."""
    if isinstance(value, list):
        return sum(_prompt_words(v) for v in value)
    if isinstance(value, dict):
        return _words(value.get("text")) + _prompt_words(value.get("parts"))
    return 0


def _last_user_text(contents: Any) -> str:
    for content in reversed(contents if isinstance(contents, list) else []):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            texts = [p["text"] for p in content.get("parts") or [] if "text" in p]
            if texts:
                return " ".join(texts)
    return ""


class FakeGoogle(FakeLLM):
    """``FakeLLM`` answering the Gemini API's paths; ``cached_tokens`` is reported as
    ``cachedContentTokenCount`` (part of the prompt count) when set."""

    def __init__(self) -> None:
        super().__init__()
        self.cached_tokens = 0

    def answer(self, method: str, path: str, body: Any, reply: Reply, num: int) -> _Out | None:
        if reply.raw is not None:
            return None  # sent verbatim by FakeLLM
        if reply.status >= 400:
            return _json(reply.error or google_error(reply.status), reply.status)
        model, _, action = path.rpartition("/models/")[2].partition(":")
        body = body if isinstance(body, dict) else {}
        if action == "generateContent":
            return _json(self._response(body, reply, model or DEFAULT_MODEL, num, None))
        if action == "streamGenerateContent":
            return self._stream(body, reply, model or DEFAULT_MODEL, num)
        if action in ("batchEmbedContents", "embedContent"):
            return self._embed(body, reply, action)
        return _json(google_error(404), 404)

    # -- generateContent -------------------------------------------------------------
    def _plan(self, body: dict[str, Any], reply: Reply) -> tuple[str | None, int]:
        tools = reply.tool_calls or []
        text = reply.text
        if text is None and not tools:
            text = "echo: " + _last_user_text(body.get("contents"))
        prompt = _prompt_words(body.get("contents")) + _prompt_words(
            body.get("systemInstruction"))
        return text, prompt

    def _usage(self, prompt: int, candidates: int | None, thoughts: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"promptTokenCount": prompt,
                                 "promptTokensDetails": [{"modality": "TEXT",
                                                          "tokenCount": prompt}]}
        total = prompt + thoughts
        if candidates is not None:
            usage["candidatesTokenCount"] = candidates
            total += candidates
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if self.cached_tokens:
            usage["cachedContentTokenCount"] = self.cached_tokens
        usage["totalTokenCount"] = total
        return usage

    def _response(self, body: dict[str, Any], reply: Reply, model: str, num: int,
                  parts: list[dict[str, Any]] | None, finish: bool = True,
                  usage: dict[str, Any] | None = None) -> dict[str, Any]:
        text, prompt = self._plan(body, reply)
        if parts is None:
            parts = []
            if reply.thinking:
                parts.append({"text": reply.thinking, "thought": True})
            if text:
                parts.append({"text": text})
            parts.extend({"functionCall": {"name": name, "args": json.loads(args)}}
                         for name, args in reply.tool_calls or [])
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = "STOP"
        obj: dict[str, Any] = {"candidates": [candidate]}
        if reply.usage:
            obj["usageMetadata"] = usage or self._usage(
                prompt, _words(text) + sum(_words(a) for _, a in reply.tool_calls or []),
                _words(reply.thinking))
        obj["modelVersion"] = reply.model or model
        obj["responseId"] = f"resp_{num}"
        return obj

    def _stream(self, body: dict[str, Any], reply: Reply, model: str, num: int) -> _Out:
        text, prompt = self._plan(body, reply)
        thoughts = _words(reply.thinking)
        chunks: list[list[dict[str, Any]]] = []
        if reply.thinking:
            chunks.append([{"text": reply.thinking, "thought": True}])
        chunks.extend([{"text": piece}] for piece in _pieces(text or ""))
        if reply.tool_calls:  # function calls arrive whole, in one chunk
            chunks.append([{"functionCall": {"name": name, "args": json.loads(args)}}
                           for name, args in reply.tool_calls])
        events = []
        so_far = 0
        for i, parts in enumerate(chunks):
            last = i == len(chunks) - 1
            so_far += sum(_words(p.get("text")) for p in parts if not p.get("thought"))
            so_far += sum(_words(json.dumps(p["functionCall"]["args"])) for p in parts
                          if "functionCall" in p)
            # Live usage on every chunk; candidates counted once there are any.
            usage = self._usage(prompt, so_far or None, thoughts)
            events.append(_data_event(self._response(body, reply, model, num, parts,
                                                     finish=last, usage=usage)))
        return _Out(200, events=events, content_type="text/event-stream")

    # -- embeddings ------------------------------------------------------------------
    def _embed(self, body: dict[str, Any], reply: Reply, action: str) -> _Out:
        requests = body.get("requests") if action == "batchEmbedContents" else [body]
        dims = EMBEDDING_DIMS
        embeddings = []
        for item in requests or []:
            content = item.get("content") or {}
            dims = int(item.get("outputDimensionality") or dims)
            embeddings.append({"values": _vector(content, dims)})
        if action == "embedContent":
            return _json({"embedding": embeddings[0]})
        return _json({"embeddings": embeddings})


def google_client(srv: FakeLLM, vertex: bool = False, **kw: Any) -> Any:
    """A real ``google.genai.Client`` pointed at the fake (``client.aio`` for async)."""
    from google import genai
    from google.genai import types

    options = types.HttpOptions(base_url=srv.url, **kw.pop("http_options", {}))
    if vertex:
        return genai.Client(vertexai=True, api_key=GOOGLE_KEY, http_options=options, **kw)
    return genai.Client(api_key=kw.pop("api_key", GOOGLE_KEY), http_options=options, **kw)
