"""Shared by the scripts here: agentlog only when asked, clients of the fake server."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for fake_llm

if os.environ.get("WITH_AGENTLOG") == "1":
    import agentlog  # noqa: F401  - the only difference between the two runs

import httpx2

from fake_llm import FakeLLM, Reply, anthropic_client, openai_client

__all__ = ["FakeLLM", "Reply", "client", "create_stream", "text_of"]


def client(srv: FakeLLM, sdk: str, async_: bool = False) -> Any:
    http = (httpx2.AsyncClient if async_ else httpx2.Client)(verify=False)
    make = openai_client if sdk == "openai" else anthropic_client
    return make(srv, async_=async_, http_client=http)


def create_stream(c: Any, sdk: str, tag: str) -> Any:
    """A streamed chat call whose prompt names the case (the record shows which it was)."""
    messages = [{"role": "user", "content": tag}]
    if sdk == "openai":
        return c.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    return c.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=messages,
                             stream=True)


def text_of(item: Any) -> str:
    """The text a chunk or event carries, if any."""
    choices = getattr(item, "choices", None)
    if choices:
        return getattr(choices[0].delta, "content", None) or ""
    delta = getattr(item, "delta", None)
    return getattr(delta, "text", None) or ""
