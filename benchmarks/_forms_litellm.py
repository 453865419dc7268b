"""Benchmark call form for ``litellm``: one non-streamed ``completion`` on an in-process
transport.

``make_call()`` returns a zero-arg callable. litellm calls the real openai SDK, handed to
it as ``client=``, whose ``httpx2.MockTransport`` answers (no sockets). The cost-map flag
keeps ``import litellm`` off the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx2
import litellm
import openai

MODEL = "gpt-4o-mini"


def _chat_json(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json={
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Paris."}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    })


def make_call() -> Callable[[], object]:
    client = openai.OpenAI(api_key="sk-bench", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(_chat_json)))
    messages = [{"role": "user", "content": "What is the capital of France?"}]

    def call() -> object:
        return litellm.completion(model=MODEL, messages=messages, client=client)

    return call
