"""Benchmark call form for ``groq``: one non-streamed chat on an in-process transport.

``make_call()`` returns a zero-arg callable; no sockets (``httpx.MockTransport``).
"""

from __future__ import annotations

from collections.abc import Callable

import groq
import httpx

MODEL = "llama-3.3-70b-versatile"


def _chat_json(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": "Paris."}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14,
                  "queue_time": 0.01, "prompt_time": 0.001, "completion_time": 0.002,
                  "total_time": 0.003},
        "x_groq": {"id": "req_1"},
    })


def make_call() -> Callable[[], object]:
    client = groq.Groq(api_key="gsk-bench", max_retries=0, base_url="http://bench.invalid",
                       http_client=httpx.Client(transport=httpx.MockTransport(_chat_json)))
    messages = [{"role": "user", "content": "What is the capital of France?"}]

    def call() -> object:
        return client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]

    return call
