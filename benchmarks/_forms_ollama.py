"""Benchmark call form for ``ollama``: one non-streamed chat on an in-process transport.

``make_call()`` returns a zero-arg callable; no sockets (``httpx.MockTransport``).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import ollama


def _chat_json(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={
        "model": "llama3.2", "created_at": "2024-07-18T00:00:00Z",
        "message": {"role": "assistant", "content": "Paris."},
        "done": True, "done_reason": "stop", "total_duration": 1000, "load_duration": 10,
        "prompt_eval_count": 12, "prompt_eval_duration": 100, "eval_count": 2,
        "eval_duration": 800,
    })


def make_call() -> Callable[[], object]:
    client = ollama.Client(host="http://bench.invalid",
                           transport=httpx.MockTransport(_chat_json))
    messages = [{"role": "user", "content": "What is the capital of France?"}]

    def call() -> object:
        return client.chat(model="llama3.2", messages=messages)

    return call
