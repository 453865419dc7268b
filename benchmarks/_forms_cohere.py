"""Benchmark call form for ``cohere`` (v2): one non-streamed chat on an in-process transport.

``make_call()`` returns a zero-arg callable; no sockets (``httpx.MockTransport``).
"""

from __future__ import annotations

from collections.abc import Callable

import cohere
import httpx


def _chat_json(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={
        "id": "chat-1", "finish_reason": "COMPLETE",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "Paris."}]},
        "usage": {"billed_units": {"input_tokens": 12, "output_tokens": 2},
                  "tokens": {"input_tokens": 62, "output_tokens": 3}},
    })


def make_call() -> Callable[[], object]:
    client = cohere.ClientV2(
        api_key="co-bench", base_url="http://bench.invalid", max_retries=0,
        httpx_client=httpx.Client(transport=httpx.MockTransport(_chat_json)))
    messages = [{"role": "user", "content": "What is the capital of France?"}]

    def call() -> object:
        return client.chat(model="command-r-plus", messages=messages)  # type: ignore[arg-type]

    return call
