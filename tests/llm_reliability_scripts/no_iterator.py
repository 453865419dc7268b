"""A6: a stream class without ``_iterator`` (a future SDK): used, warned about once.

Several calls of each SDK, sync and async, through ``stream_cls`` subclasses that keep
their iterator elsewhere. Run with and without agentlog: stdout must match.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
from _common import FakeLLM, client, text_of
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk


class OpenAIStream(openai.Stream[ChatCompletionChunk]):
    _iterator = None  # type: ignore[assignment]

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._it = self.__dict__.pop("_iterator")

    def __next__(self) -> Any:
        return self._it.__next__()

    def __iter__(self) -> Any:
        yield from self._it


class OpenAIAsyncStream(openai.AsyncStream[ChatCompletionChunk]):
    _iterator = None  # type: ignore[assignment]

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._it = self.__dict__.pop("_iterator")

    async def __aiter__(self) -> Any:
        async for item in self._it:
            yield item


class AnthropicStream(anthropic.Stream[RawMessageStreamEvent]):
    _iterator = None  # type: ignore[assignment]

    def __iter__(self) -> Any:
        yield from self.__stream__()


def openai_body(n: int) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "stream": True,
            "messages": [{"role": "user", "content": f"openai call {n}"}]}


def anthropic_body(n: int) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": f"anthropic call {n}"}]}


async def async_calls(srv: FakeLLM) -> None:
    async with client(srv, "openai", async_=True) as c:
        for n in (3, 4):
            s = await c.post("/chat/completions", body=openai_body(n), cast_to=ChatCompletion,
                             stream=True, stream_cls=OpenAIAsyncStream)
            print(type(s).__name__, "".join([text_of(x) async for x in s]))


if __name__ == "__main__":
    with FakeLLM() as srv:
        with client(srv, "openai") as c:
            for n in (1, 2):
                s = c.post("/chat/completions", body=openai_body(n), cast_to=ChatCompletion,
                           stream=True, stream_cls=OpenAIStream)
                print(type(s).__name__, "".join(text_of(x) for x in s))
        asyncio.run(async_calls(srv))
        with client(srv, "anthropic") as c:
            for n in (1, 2):
                s = c.post("/v1/messages", body=anthropic_body(n), cast_to=Message,
                           stream=True, stream_cls=AnthropicStream)
                print(type(s).__name__, "".join(text_of(x) for x in s))
        print("requests:", srv.count())
