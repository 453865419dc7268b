"""Benchmark call form for ``google-genai``: one non-streamed ``generate_content`` on an
in-process transport.

``make_call()`` returns a zero-arg callable; no sockets (the SDK's default httpx2 client
is replaced by one on an ``httpx2.MockTransport``, through ``HttpOptions.httpx_client``).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx2
from google import genai
from google.genai import types

MODEL = "gemini-2.5-flash"
_BODY = {
    "candidates": [{"content": {"parts": [{"text": "Paris."}], "role": "model"},
                    "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2,
                      "thoughtsTokenCount": 4, "totalTokenCount": 14},
    "modelVersion": MODEL,
    "responseId": "resp-1",
}


def _generate(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json=_BODY)


def make_call() -> Callable[[], object]:
    http = httpx2.Client(transport=httpx2.MockTransport(_generate))
    client = genai.Client(api_key="AIza-bench", http_options=types.HttpOptions(
        base_url="http://bench.invalid", httpx_client=http))
    config = types.GenerateContentConfig(temperature=0.2)

    def call() -> object:
        return client.models.generate_content(model=MODEL, contents="Capital of France?",
                                              config=config)

    return call
