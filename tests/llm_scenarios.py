"""Host-side scenarios for the LLM differential tests (TESTPLAN "Conventions", A3, A5).

Each scenario drives every call form of one SDK against its own ``FakeLLM`` (started
inside the host process, so ids such as ``chatcmpl-<n>`` restart at 1 in every run) and
prints a canonical transcript on stdout: the type (module + qualname) and ``repr`` /
``model_dump()`` of every value and stream item, stream behaviour (``isinstance``,
item count, ``.response``, ``.close()``, ``with``), and for every error its type,
args, status, ``__cause__`` / ``__context__`` and traceback frames.

A host script is two lines around ``main(name)``; the differential tests run it with
``import agentlog`` as its first line and with ``pass`` there instead (agentlog never
imported at all), then compare the two transcripts byte for byte. Both variants have
the same line numbers, so frame line numbers can be compared too.

This module imports only the standard library and ``fake_llm`` at top level: the
"without agentlog" run must not import agentlog, even indirectly. The SDKs are imported
inside the scenarios, after the host's first line.

Besides stdout, a scenario writes a side file (``SCENARIO_SIDE``) for the test to read:
the number of LLM records agentlog must have written, the agentlog frames that each
error's traceback held (taken out of the transcript), and whether agentlog was imported.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from fake_llm import FakeLLM, Reply, anthropic_client, openai_client

TESTS = Path(__file__).resolve().parent

MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is four plus five?"},
]
A_MSGS = [{"role": "user", "content": "What is four plus five?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
A_TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
WEATHER = ("get_weather", '{"city": "Paris"}')
MODEL = "gpt-4o-mini"
A_MODEL = "claude-sonnet-4-6"


# --------------------------------------------------------------------------- transcript
class _State:
    """What one host run collects besides its transcript."""

    ports: list[int]
    side: dict[str, Any]

    def __init__(self) -> None:
        self.ports = []
        self.side = {"agentlog_frames": {}, "retries": 0, "unreached": 0, "not_llm": 0}


S = _State()
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")


def norm(text: str) -> str:
    """Take out what differs between any two runs: ports and object addresses."""
    for port in S.ports:
        text = text.replace(f":{port}", ":PORT")
    return _ADDRESS.sub("0x?", text)


def out(text: str) -> None:
    print(norm(text))


def kind(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def show(label: str, value: Any) -> None:
    """Type, repr and (for pydantic models) model_dump of a returned value."""
    out(f"{label}: {kind(value)}")
    out(f"  repr={value!r}")
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        out(f"  dump={dump()!r}")


def _short(filename: str) -> str:
    marker = "site-packages" + os.sep
    if marker in filename:
        return filename.split(marker, 1)[1]
    return os.path.basename(filename)


def _agentlog_dir() -> str | None:
    pkg = os.environ.get("SCENARIO_AGENTLOG_PKG")
    return pkg + os.sep if pkg else None


Frame = tuple[str, str, int | None]


def frames(exc: BaseException) -> tuple[list[Frame], list[Frame]]:
    """User-visible traceback frames of ``exc`` and its chain, minus agentlog's own.

    Returns the frames, and agentlog's frames that were taken out.
    """
    pkg = _agentlog_dir()
    found: list[Frame] = []
    ours: list[Frame] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        for fs in traceback.extract_tb(cur.__traceback__):
            if pkg is not None and fs.filename.startswith(pkg):
                ours.append((fs.filename[len(pkg):], fs.name, fs.lineno))
                continue
            found.append((_short(fs.filename), fs.name, fs.lineno))
        found.append(("--", "chained", None))
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return found, ours


def show_exc(label: str, exc: BaseException) -> None:
    out(f"{label}: raised {kind(exc)}")
    out(f"  args={exc.args!r}")
    out(f"  str={exc}")
    for attr in ("status_code", "request_id", "code", "type", "param", "body"):
        if hasattr(exc, attr):
            out(f"  {attr}={getattr(exc, attr)!r}")
    response = getattr(exc, "response", None)
    if response is not None:
        out(f"  response={kind(response)} {response!r}")
    request = getattr(exc, "request", None) if not isinstance(exc, TypeError) else None
    if request is not None:
        out(f"  request={request!r}")
    out(f"  cause={kind(exc.__cause__)} {exc.__cause__!r}")
    out(f"  context={kind(exc.__context__)} suppress={exc.__suppress_context__}")
    out(f"  notes={getattr(exc, '__notes__', None)!r}")
    found, ours = frames(exc)
    S.side["agentlog_frames"][label] = ours
    for frame in found:
        out(f"  frame {frame}")


def attempt(label: str, fn: Callable[[], Any]) -> Any:
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - the transcript shows whatever was raised
        show_exc(label, exc)
        return None
    show(label, value)
    return value


async def aattempt(label: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    try:
        value = await fn()
    except Exception as exc:  # noqa: BLE001 - the transcript shows whatever was raised
        show_exc(label, exc)
        return None
    show(label, value)
    return value


def _stream_types() -> tuple[type, ...]:
    found: list[type] = []
    for name in ("openai", "anthropic"):
        module = sys.modules.get(name)
        if module is not None:
            found += [module.Stream, module.AsyncStream]
    return tuple(found)


def _stream_head(label: str, stream: Any) -> None:
    out(f"{label}: {kind(stream)} {stream!r}")
    for cls in _stream_types():
        out(f"  isinstance {cls.__module__}.{cls.__qualname__}={isinstance(stream, cls)}")
    response = getattr(stream, "response", None)
    if response is not None:
        out(f"  response={kind(response)} {response!r} closed={response.is_closed}")


def _stream_tail(stream: Any, items: list[Any]) -> None:
    out(f"  count={len(items)}")
    response = getattr(stream, "response", None)
    if response is not None:
        out(f"  after: response closed={response.is_closed}")


def consume(label: str, stream: Any, limit: int | None = None) -> list[Any]:
    """Iterate a sync stream (all of it, or ``limit`` items then ``close()``)."""
    _stream_head(label, stream)
    items: list[Any] = []
    try:
        for item in stream:
            items.append(item)
            out(f"  item {kind(item)} {item!r}")
            if limit is not None and len(items) >= limit:
                out(f"  close()={stream.close()!r}")
                _stream_tail(stream, items)
                # Iterating on after close() is left out: whether the SDK still yields
                # what was already buffered depends on socket timing, not on agentlog.
                return items
    except Exception as exc:  # noqa: BLE001 - a stream cut mid-way
        _stream_tail(stream, items)
        show_exc(f"{label} (iteration)", exc)
        return items
    _stream_tail(stream, items)
    out(f"  again={list(stream)!r}")
    return items


async def aconsume(label: str, stream: Any, limit: int | None = None) -> list[Any]:
    """Iterate an async stream (all of it, or ``limit`` items then ``close()``)."""
    _stream_head(label, stream)
    items: list[Any] = []
    try:
        async for item in stream:
            items.append(item)
            out(f"  item {kind(item)} {item!r}")
            if limit is not None and len(items) >= limit:
                out(f"  close()={await stream.close()!r}")
                _stream_tail(stream, items)
                return items
    except Exception as exc:  # noqa: BLE001 - a stream cut mid-way
        _stream_tail(stream, items)
        show_exc(f"{label} (iteration)", exc)
        return items
    _stream_tail(stream, items)
    out(f"  again={[x async for x in stream]!r}")
    return items


def copies(label: str, obj: Any) -> None:
    """``copy``, ``deepcopy`` and ``pickle`` give (or raise) the same with agentlog."""
    for name, fn in (("copy", copy.copy), ("deepcopy", copy.deepcopy), ("pickle", pickle.dumps)):
        try:
            result = fn(obj)
        except Exception as exc:  # noqa: BLE001 - the transcript shows whatever was raised
            out(f"{label} {name} -> {kind(exc)} {exc.args!r}")
        else:
            out(f"{label} {name}: {kind(result)}")


def dead_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    S.ports.append(port)
    return port


def serve() -> FakeLLM:
    srv = FakeLLM().start()
    S.ports.append(int(srv.url.rsplit(":", 1)[1]))
    return srv


# --------------------------------------------------------------------------- openai, sync
def openai_sync() -> None:
    import openai
    from pydantic import BaseModel

    class Answer(BaseModel):
        value: int
        unit: str

    srv = serve()
    try:
        with openai_client(srv) as client:
            chat = client.chat.completions
            out(f"cached resource: {client.chat is client.chat} {chat is client.chat.completions}")
            attempt("chat.plain", lambda: chat.create(model=MODEL, messages=MSGS))
            srv.script(Reply(tool_calls=[WEATHER]))
            attempt("chat.tools", lambda: chat.create(model=MODEL, messages=MSGS, tools=TOOLS))
            attempt("chat.n2", lambda: chat.create(model=MODEL, messages=MSGS, n=2))

            s = chat.create(model=MODEL, messages=MSGS, stream=True)
            copies("chat.stream", s)
            consume("chat.stream", s)
            s = chat.create(
                model=MODEL, messages=MSGS, stream=True, stream_options={"include_usage": True}
            )
            with s as entered:
                out(f"chat.stream.with: entered is s: {entered is s}")
                consume("chat.stream.with", entered)
            out(f"  exited: response closed={s.response.is_closed}")
            srv.script(Reply(tool_calls=[WEATHER]))
            consume("chat.stream.tools", chat.create(model=MODEL, messages=MSGS, tools=TOOLS,
                                                     stream=True))
            consume("chat.stream.n2", chat.create(model=MODEL, messages=MSGS, n=2, stream=True))
            consume("chat.stream.partial", chat.create(model=MODEL, messages=MSGS, stream=True),
                    limit=1)

            with chat.stream(model=MODEL, messages=MSGS) as helper:
                out(f"chat.stream(): {kind(helper)}")
                copies("chat.stream()", helper)
                consume("chat.stream() events", helper)
                show("chat.stream() final", helper.get_final_completion())
            with chat.stream(model=MODEL, messages=MSGS) as helper:
                out(f"chat.stream() early exit: {kind(next(iter(helper)))}")

            attempt("chat.parse", lambda: chat.parse(model=MODEL, messages=MSGS,
                                                     response_format=Answer))

            responses = client.responses
            attempt("responses.plain", lambda: responses.create(
                model=MODEL, input="Four plus five?", instructions="Be brief."))
            srv.script(Reply(tool_calls=[WEATHER]))
            attempt("responses.tools", lambda: responses.create(
                model=MODEL, input="Weather?", tools=[{"type": "function", "name": "get_weather",
                                                      "parameters": {"type": "object"}}]))
            consume("responses.stream", responses.create(model=MODEL, input="Hi there",
                                                         stream=True))
            with responses.stream(model=MODEL, input="Hi there") as helper:
                out(f"responses.stream(): {kind(helper)}")
                consume("responses.stream() events", helper)
                show("responses.stream() final", helper.get_final_response())
            attempt("responses.parse", lambda: responses.parse(model=MODEL, input="Four plus five?",
                                                               text_format=Answer))

            attempt("embeddings", lambda: client.embeddings.create(
                model="text-embedding-3-small", input=["one", "two words"]))
            attempt("embeddings.float", lambda: client.embeddings.create(
                model="text-embedding-3-small", input="one", encoding_format="float"))

            attempt("completions.plain", lambda: client.completions.create(
                model="gpt-3.5-turbo-instruct", prompt="Say hi"))
            consume("completions.stream", client.completions.create(
                model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True))

            raw = chat.with_raw_response.create(model=MODEL, messages=MSGS)
            out(f"raw: {kind(raw)} {raw!r} status={raw.status_code}")
            copies("raw", raw)
            out(f"  x-request-id={raw.headers.get('x-request-id')}")
            parsed = raw.parse()
            show("raw.parse()", parsed)
            out(f"  parse() is parse(): {raw.parse() is parsed}")
            raw = chat.with_raw_response.create(model=MODEL, messages=MSGS, stream=True)
            out(f"raw stream: {kind(raw)} {raw!r}")
            consume("raw.parse() stream", raw.parse())
            raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                             input="one")
            out(f"raw embeddings unparsed: {kind(raw)} {raw.status_code}")
            del raw

            with chat.with_streaming_response.create(model=MODEL, messages=MSGS) as resp:
                out(f"streaming_response: {kind(resp)} {resp!r}")
                show("streaming_response.parse()", resp.parse())
            with chat.with_streaming_response.create(model=MODEL, messages=MSGS,
                                                     stream=True) as resp:
                consume("streaming_response stream", resp.parse())
            with chat.with_streaming_response.create(model=MODEL, messages=MSGS) as resp:
                out(f"streaming_response lines: {list(resp.iter_lines())!r}")
            with responses.with_streaming_response.create(model=MODEL, input="Hi") as resp:
                show("responses streaming_response.parse()", resp.parse())

        with openai.AzureOpenAI(
            api_key="azure-key-not-secret-0000", api_version="2024-10-21",
            azure_endpoint=srv.url, max_retries=0,
        ) as azure:
            attempt("azure.chat", lambda: azure.chat.completions.create(model=MODEL,
                                                                        messages=MSGS))
            consume("azure.stream", azure.chat.completions.create(model=MODEL, messages=MSGS,
                                                                  stream=True))
            attempt("azure.embeddings", lambda: azure.embeddings.create(
                model="text-embedding-3-small", input="one"))
        out(f"azure paths: {[r.path for r in srv.requests[-3:]]} {srv.requests[-1].query}")

        _openai_errors_sync(srv)
        out(f"SERVER_REQUESTS {srv.count()}")
        S.side["server_requests"] = srv.count()
    finally:
        srv.stop()


def _openai_errors_sync(srv: FakeLLM) -> None:
    import openai

    with openai_client(srv) as client:
        chat = client.chat.completions
        srv.script(Reply(status=429))
        attempt("error.429", lambda: chat.create(model=MODEL, messages=MSGS))
        srv.script(Reply(status=401))
        attempt("error.401", lambda: client.responses.create(model=MODEL, input="Hi"))
        retrying = client.with_options(max_retries=1).chat.completions
        srv.script(Reply(status=500), Reply(status=500))
        attempt("error.500 retried", lambda: retrying.create(model=MODEL, messages=MSGS))
        S.side["retries"] += 1
        srv.script(Reply(status=500))
        attempt("error.500 then ok", lambda: retrying.create(model=MODEL, messages=MSGS))
        S.side["retries"] += 1
        srv.script(Reply(delay_s=0.4))
        attempt("error.timeout", lambda: client.with_options(timeout=0.1).chat.completions.create(
            model=MODEL, messages=MSGS))
        srv.script(Reply(drop_after=2))
        consume("error.drop chat", chat.create(model=MODEL, messages=MSGS, stream=True))
        srv.script(Reply(drop_after=3))
        consume("error.drop responses", client.responses.create(model=MODEL, input="Hi",
                                                                stream=True))
        srv.script(Reply(drop_after=2))

        def helper_drop() -> None:
            with chat.stream(model=MODEL, messages=MSGS) as helper:
                for event in helper:
                    out(f"  helper event {kind(event)}")

        attempt("error.drop chat.stream()", helper_drop)
        srv.script(Reply(status=400))
        attempt("error.400 raw", lambda: chat.with_raw_response.create(model=MODEL,
                                                                       messages=MSGS))
        srv.script(Reply(status=404))

        def streaming_404() -> Any:
            with chat.with_streaming_response.create(model=MODEL, messages=MSGS) as resp:
                return resp.parse()

        attempt("error.404 streaming_response", streaming_404)
    port = dead_port()
    with openai.OpenAI(api_key="k-not-secret-000", base_url=f"http://127.0.0.1:{port}/v1",
                       max_retries=0) as gone:
        attempt("error.connection", lambda: gone.chat.completions.create(model=MODEL,
                                                                         messages=MSGS))
        attempt("error.connection stream", lambda: gone.chat.completions.create(
            model=MODEL, messages=MSGS, stream=True))
    S.side["unreached"] += 2



# --------------------------------------------------------------------------- openai, async
def openai_async() -> None:
    asyncio.run(_openai_async())


async def _openai_async() -> None:
    import openai
    from pydantic import BaseModel

    class Answer(BaseModel):
        value: int
        unit: str

    srv = serve()
    try:
        async with openai_client(srv, async_=True) as client:
            chat = client.chat.completions
            await aattempt("async chat.plain", lambda: chat.create(model=MODEL, messages=MSGS))
            srv.script(Reply(tool_calls=[WEATHER]))
            await aattempt("async chat.tools", lambda: chat.create(model=MODEL, messages=MSGS,
                                                                   tools=TOOLS))
            await aattempt("async chat.n2", lambda: chat.create(model=MODEL, messages=MSGS, n=2))
            await aconsume("async chat.stream", await chat.create(
                model=MODEL, messages=MSGS, stream=True, stream_options={"include_usage": True}))
            s = await chat.create(model=MODEL, messages=MSGS, stream=True)
            copies("async chat.stream", s)
            async with s as entered:
                out(f"async chat.stream.with: entered is s: {entered is s}")
                await aconsume("async chat.stream.with", entered)
            out(f"  exited: response closed={s.response.is_closed}")
            await aconsume("async chat.stream.partial", await chat.create(
                model=MODEL, messages=MSGS, stream=True), limit=1)
            async with chat.stream(model=MODEL, messages=MSGS) as helper:
                out(f"async chat.stream(): {kind(helper)}")
                await aconsume("async chat.stream() events", helper)
                show("async chat.stream() final", await helper.get_final_completion())
            await aattempt("async chat.parse", lambda: chat.parse(
                model=MODEL, messages=MSGS, response_format=Answer))

            responses = client.responses
            await aattempt("async responses.plain", lambda: responses.create(
                model=MODEL, input="Four plus five?"))
            await aconsume("async responses.stream", await responses.create(
                model=MODEL, input="Hi there", stream=True))
            async with responses.stream(model=MODEL, input="Hi there") as helper:
                out(f"async responses.stream(): {kind(helper)}")
                await aconsume("async responses.stream() events", helper)
                show("async responses.stream() final", await helper.get_final_response())
            await aattempt("async embeddings", lambda: client.embeddings.create(
                model="text-embedding-3-small", input=["one", "two words"]))
            await aattempt("async completions.plain", lambda: client.completions.create(
                model="gpt-3.5-turbo-instruct", prompt="Say hi"))
            await aconsume("async completions.stream", await client.completions.create(
                model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True))

            raw = await chat.with_raw_response.create(model=MODEL, messages=MSGS)
            out(f"async raw: {kind(raw)} {raw!r} status={raw.status_code}")
            parsed = raw.parse()
            show("async raw.parse()", parsed)
            out(f"  parse() is parse(): {raw.parse() is parsed}")
            raw = await chat.with_raw_response.create(model=MODEL, messages=MSGS, stream=True)
            await aconsume("async raw.parse() stream", raw.parse())
            async with chat.with_streaming_response.create(model=MODEL, messages=MSGS) as resp:
                out(f"async streaming_response: {kind(resp)} {resp!r}")
                show("async streaming_response.parse()", await resp.parse())
            async with chat.with_streaming_response.create(model=MODEL, messages=MSGS,
                                                           stream=True) as resp:
                await aconsume("async streaming_response stream", await resp.parse())

            srv.script(Reply(status=429))
            await aattempt("async error.429", lambda: chat.create(model=MODEL, messages=MSGS))
            srv.script(Reply(status=500), Reply(status=503))
            await aattempt("async error.500 retried", lambda: client.with_options(
                max_retries=1).chat.completions.create(model=MODEL, messages=MSGS))
            S.side["retries"] += 1
            srv.script(Reply(drop_after=2))
            await aconsume("async error.drop chat", await chat.create(
                model=MODEL, messages=MSGS, stream=True))
            srv.script(Reply(drop_after=3))

            async def helper_drop() -> None:
                async with responses.stream(model=MODEL, input="Hi") as helper:
                    async for event in helper:
                        out(f"  helper event {kind(event)}")

            await aattempt("async error.drop responses.stream()", helper_drop)

        async with openai.AsyncAzureOpenAI(
            api_key="azure-key-not-secret-0000", api_version="2024-10-21",
            azure_endpoint=srv.url, max_retries=0,
        ) as azure:
            await aattempt("async azure.chat", lambda: azure.chat.completions.create(
                model=MODEL, messages=MSGS))
            await aconsume("async azure.stream", await azure.chat.completions.create(
                model=MODEL, messages=MSGS, stream=True))

        port = dead_port()
        async with openai.AsyncOpenAI(api_key="k-not-secret-000", max_retries=0,
                                      base_url=f"http://127.0.0.1:{port}/v1") as gone:
            await aattempt("async error.connection", lambda: gone.chat.completions.create(
                model=MODEL, messages=MSGS))
        S.side["unreached"] += 1
        out(f"SERVER_REQUESTS {srv.count()}")
        S.side["server_requests"] = srv.count()
    finally:
        srv.stop()


# --------------------------------------------------------------------------- anthropic
def anthropic_all() -> None:
    srv = serve()
    try:
        _anthropic_sync(srv)
        asyncio.run(_anthropic_async(srv))
        out(f"SERVER_REQUESTS {srv.count()}")
        S.side["server_requests"] = srv.count()
    finally:
        srv.stop()


def _anthropic_sync(srv: FakeLLM) -> None:
    import anthropic

    with anthropic_client(srv) as client:
        m = client.messages
        out(f"cached resource: {client.messages is client.messages}")
        attempt("messages.plain", lambda: m.create(model=A_MODEL, max_tokens=64,
                                                   messages=A_MSGS, system="Be brief."))
        srv.script(Reply(tool_calls=[WEATHER]))
        attempt("messages.tools", lambda: m.create(model=A_MODEL, max_tokens=64,
                                                   messages=A_MSGS, tools=A_TOOLS))
        srv.script(Reply(thinking="Four and five make nine.", text="Nine."))
        attempt("messages.thinking", lambda: m.create(
            model=A_MODEL, max_tokens=2048, messages=A_MSGS,
            thinking={"type": "enabled", "budget_tokens": 1024}))
        consume("messages.stream", m.create(model=A_MODEL, max_tokens=64, messages=A_MSGS,
                                            stream=True))
        s = m.create(model=A_MODEL, max_tokens=64, messages=A_MSGS, stream=True)
        copies("messages.stream", s)
        with s as entered:
            out(f"messages.stream.with: entered is s: {entered is s}")
            consume("messages.stream.with", entered)
        out(f"  exited: response closed={s.response.is_closed}")
        srv.script(Reply(tool_calls=[WEATHER]))
        consume("messages.stream.tools", m.create(model=A_MODEL, max_tokens=64,
                                                  messages=A_MSGS, tools=A_TOOLS, stream=True))
        srv.script(Reply(thinking="Four and five make nine.", text="Nine."))
        consume("messages.stream.thinking", m.create(
            model=A_MODEL, max_tokens=2048, messages=A_MSGS, stream=True,
            thinking={"type": "enabled", "budget_tokens": 1024}))
        consume("messages.stream.partial", m.create(model=A_MODEL, max_tokens=64,
                                                    messages=A_MSGS, stream=True), limit=2)
        with m.stream(model=A_MODEL, max_tokens=64, messages=A_MSGS) as helper:
            out(f"messages.stream(): {kind(helper)}")
            copies("messages.stream()", helper)
            consume("messages.stream() events", helper)
            show("messages.stream() final", helper.get_final_message())
        with m.stream(model=A_MODEL, max_tokens=64, messages=A_MSGS) as helper:
            out(f"messages.stream() text_stream: {list(helper.text_stream)!r}")
            show("messages.stream() text final", helper.get_final_message())
            out(f"  final text: {helper.get_final_text()!r}")
        with m.stream(model=A_MODEL, max_tokens=64, messages=A_MSGS) as helper:
            out(f"messages.stream() early exit: {kind(next(iter(helper)))}")
        attempt("count_tokens", lambda: m.count_tokens(model=A_MODEL, messages=A_MSGS))
        S.side["not_llm"] += 1

        raw = m.with_raw_response.create(model=A_MODEL, max_tokens=64, messages=A_MSGS)
        out(f"raw: {kind(raw)} {raw!r} status={raw.status_code}")
        parsed = raw.parse()
        show("raw.parse()", parsed)
        out(f"  parse() is parse(): {raw.parse() is parsed}")
        with m.with_streaming_response.create(model=A_MODEL, max_tokens=64,
                                              messages=A_MSGS) as resp:
            out(f"streaming_response: {kind(resp)} {resp!r}")
            show("streaming_response.parse()", resp.parse())
        with m.with_streaming_response.create(model=A_MODEL, max_tokens=64, messages=A_MSGS,
                                              stream=True) as resp:
            consume("streaming_response stream", resp.parse())

        srv.script(Reply(status=429))
        attempt("error.429", lambda: m.create(model=A_MODEL, max_tokens=64, messages=A_MSGS))
        srv.script(Reply(status=401))
        attempt("error.401", lambda: m.create(model=A_MODEL, max_tokens=64, messages=A_MSGS))
        srv.script(Reply(status=500), Reply(status=529))
        attempt("error.500 retried", lambda: client.with_options(max_retries=1).messages.create(
            model=A_MODEL, max_tokens=64, messages=A_MSGS))
        S.side["retries"] += 1
        srv.script(Reply(drop_after=2))
        consume("error.drop messages", m.create(model=A_MODEL, max_tokens=64, messages=A_MSGS,
                                                stream=True))
        srv.script(Reply(drop_after=3))

        def helper_drop() -> None:
            with m.stream(model=A_MODEL, max_tokens=64, messages=A_MSGS) as helper:
                for text in helper.text_stream:
                    out(f"  helper text {text!r}")

        attempt("error.drop messages.stream()", helper_drop)

    port = dead_port()
    with anthropic.Anthropic(api_key="k-not-secret-000", base_url=f"http://127.0.0.1:{port}",
                             max_retries=0) as gone:
        attempt("error.connection", lambda: gone.messages.create(
            model=A_MODEL, max_tokens=64, messages=A_MSGS))
    S.side["unreached"] += 1


async def _anthropic_async(srv: FakeLLM) -> None:
    async with anthropic_client(srv, async_=True) as client:
        m = client.messages
        await aattempt("async messages.plain", lambda: m.create(
            model=A_MODEL, max_tokens=64, messages=A_MSGS, system="Be brief."))
        srv.script(Reply(tool_calls=[WEATHER]))
        await aattempt("async messages.tools", lambda: m.create(
            model=A_MODEL, max_tokens=64, messages=A_MSGS, tools=A_TOOLS))
        srv.script(Reply(thinking="Four and five make nine.", text="Nine."))
        await aconsume("async messages.stream.thinking", await m.create(
            model=A_MODEL, max_tokens=2048, messages=A_MSGS, stream=True,
            thinking={"type": "enabled", "budget_tokens": 1024}))
        s = await m.create(model=A_MODEL, max_tokens=64, messages=A_MSGS, stream=True)
        async with s as entered:
            out(f"async messages.stream.with: entered is s: {entered is s}")
            await aconsume("async messages.stream.with", entered, limit=1)
        out(f"  exited: response closed={s.response.is_closed}")
        async with m.stream(model=A_MODEL, max_tokens=64, messages=A_MSGS) as helper:
            out(f"async messages.stream(): {kind(helper)}")
            await aconsume("async messages.stream() events", helper)
            show("async messages.stream() final", await helper.get_final_message())
        raw = await m.with_raw_response.create(model=A_MODEL, max_tokens=64, messages=A_MSGS)
        show("async raw.parse()", await raw.parse())
        srv.script(Reply(status=429))
        await aattempt("async error.429", lambda: m.create(model=A_MODEL, max_tokens=64,
                                                           messages=A_MSGS))
        srv.script(Reply(drop_after=2))
        await aconsume("async error.drop messages", await m.create(
            model=A_MODEL, max_tokens=64, messages=A_MSGS, stream=True))


# --------------------------------------------------------------------------- host side
SCENARIOS: dict[str, Callable[[], None]] = {
    "openai_sync": openai_sync,
    "openai_async": openai_async,
    "anthropic": anthropic_all,
}


def main(name: str) -> None:
    """Run one scenario in this (host) process; write the side file the test reads."""
    SCENARIOS[name]()
    side = S.side
    side["expected_records"] = (
        side["server_requests"] - side["retries"] - side["not_llm"] + side["unreached"]
    )
    side["agentlog_imported"] = "agentlog" in sys.modules
    path = os.environ.get("SCENARIO_SIDE")
    if path:
        Path(path).write_text(json.dumps(side))
    sys.stdout.flush()


# --------------------------------------------------------------------------- test side
HOST = """\
{first}
import sys
sys.path.insert(0, {tests!r})
import llm_scenarios
llm_scenarios.main({name!r})
"""


def host_source(name: str, with_agentlog: bool) -> str:
    """The host script; both variants have the same line numbers."""
    first = "import agentlog" if with_agentlog else "pass  # agentlog is never imported"
    return HOST.format(first=first, tests=str(TESTS), name=name)


def run_hosts(
    jobs: Iterable[tuple[Path, str, dict[str, str]]], parallel: int = 2, timeout: float = 60
) -> list[Any]:
    """Run each ``(folder, source, env)`` as ``<folder>/host.py``, ``parallel`` at a time.

    Returns a ``helpers.Result`` per job, in order, with ``logs`` = ``<folder>/logs``.
    """
    from concurrent.futures import ThreadPoolExecutor

    from helpers import Result  # not at module level: it imports agentlog

    def one(job: tuple[Path, str, dict[str, str]]) -> Any:
        folder, source, env = job
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "host.py").write_text(textwrap.dedent(source))
        proc = subprocess.run(
            [sys.executable, str(folder / "host.py")], env=env, cwd=folder,
            capture_output=True, text=True, timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, folder / "logs")

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, list(jobs)))


# --------------------------------------------------------------------------- small hosts
def basic_calls(srv: FakeLLM, oa: Any = None, an: Any = None) -> None:
    """A plain and a streamed call on each given client (one record each)."""
    if oa is not None:
        oa.chat.completions.create(model=MODEL, messages=MSGS)
        for _ in oa.chat.completions.create(model=MODEL, messages=MSGS, stream=True):
            pass
    if an is not None:
        an.messages.create(model=A_MODEL, max_tokens=64, messages=A_MSGS)
        for _ in an.messages.create(model=A_MODEL, max_tokens=64, messages=A_MSGS, stream=True):
            pass


def report(srv: FakeLLM, **extra: Any) -> None:
    """One ``RESULT {json}`` line: requests the server saw, per SDK, and ``extra``."""
    found = {
        "openai": srv.count("/chat/completions") + srv.count("/responses"),
        "anthropic": srv.count("/messages"),
        **extra,
    }
    print("RESULT " + json.dumps(found, sort_keys=True), flush=True)


def result_of(stdout: str) -> dict[str, Any]:
    """The ``RESULT`` line a host printed with ``report``."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, stdout
    found: dict[str, Any] = json.loads(lines[0].removeprefix("RESULT "))
    return found


def records(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``llm`` block of a document (interactions and actions)."""
    return [
        holder["llm"]
        for it in doc["iterations"]
        for ix in it["interactions"]
        for holder in (ix, *ix["actions"])
        if holder.get("llm")
    ]
