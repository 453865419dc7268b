"""What agentlog records for every ``mistralai`` call form, against the real SDK.

Each test drives the real ``Mistral`` client (sync and ``_async`` methods) over loopback
HTTP to ``tests/fake_mistral.py`` inside ``agentlog.testing.capture()``, folds the
captured events into a document, validates it against the schema, and compares the
``llm`` record with what the server sent and what the SDK returned: exactly one record
per request the server received. Recorded Mistral traffic
(``shared/fixtures/recorded/mistral``) is replayed at the end.

Covers A3: ``chat.stream`` returns the SDK's own ``EventStream``/``EventStreamAsync``;
``for``, ``async for``, ``with``, ``async with`` and ``close()`` behave as unwrapped, and
each stream is exactly one record.
Covers A4: a stream left early (``break`` in ``with``, ``close()``, dropped and collected)
is one incomplete record.
Covers A5: a non-streamed response is the SDK's own ``ChatCompletionResponse``.
Covers A7: the SDK imported before agentlog is recorded (subprocess).
Covers A8: ``chat.parse`` over ``chat.complete`` is one record; records equal requests.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import pickle
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mistralai.client import errors, models
from mistralai.client.utils.eventstreaming import EventStream, EventStreamAsync
from pydantic import BaseModel

import agentlog
from agentlog.testing import capture
from fake_llm import Reply, load_cassette, replay
from fake_mistral import MISTRAL_KEY, FakeMistral, mistral_client, tool_id
from helpers import Result, validate_document
from llm_testing import (
    MODES,
    STREAMED,
    aw,
    cut_record,
    drain,
    folded,
    host_run,
    llm_records,
    only_record,
    opened,
    usage,
)

MODEL = "mistral-small-latest"
MSGS = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is four plus five?"}]
TOOLS = [{"type": "function",
          "function": {"name": name, "description": f"{name} for a place",
                       "parameters": {"type": "object",
                                      "properties": {"city": {"type": "string"}}}}}
         for name in ("get_weather", "get_time")]
WEATHER = ("get_weather", '{"city": "Paris"}')
TIME = ("get_time", '{"city": "Oslo"}')


@pytest.fixture
def srv() -> Iterator[FakeMistral]:
    with FakeMistral() as server:
        yield server
    assert not server.errors


def drive(srv: FakeMistral, async_: bool, body: Callable[[Any, Callable[..., Any]],
                                                          Awaitable[Any]], **kw: Any) -> Any:
    """Run ``body(client, method)``: ``method(owner, "complete")`` is the sync method or
    its ``_async`` twin; the client's HTTP clients are closed afterwards."""

    def method(owner: Any, name: str) -> Any:
        return getattr(owner, f"{name}_async" if async_ else name)

    async def main() -> Any:
        client = mistral_client(srv, **kw)
        async with client:
            with client:
                return await body(client, method)

    return asyncio.run(main())


def usage_of(u: Any) -> dict[str, Any]:
    details = getattr(u, "prompt_tokens_details", None)
    return usage(u.prompt_tokens, u.completion_tokens,
                 details["cached_tokens"] if details else None)


def text_of(events: list[Any]) -> str:
    return "".join(e.data.choices[0].delta.content or "" for e in events
                   if e.data.choices and isinstance(e.data.choices[0].delta.content, str))


# --------------------------------------------------------------------------- chat


@MODES
def test_complete(srv: FakeMistral, async_: bool) -> None:
    async def body(client: Any, method: Callable[..., Any]) -> Any:
        return await aw(method(client.chat, "complete")(
            model=MODEL, messages=MSGS, temperature=0.3, max_tokens=50, random_seed=7))

    with capture() as cap:
        r = drive(srv, async_, body)
    assert type(r) is models.ChatCompletionResponse
    record = only_record(cap, srv, "/v1/chat/completions")
    assert record["agent_name"] == f"mistral:{MODEL}" and record["actions"] == []
    assert record["input_data"] == MSGS
    assert record["output_data"] == {"role": "assistant", "content": r.choices[0].message.content}
    llm = record["llm"]
    assert llm["provider"] == "mistral" and llm["operation"] == "chat"
    assert (llm["request_model"], llm["response_model"]) == (MODEL, r.model)
    assert llm["params"] == {"temperature": 0.3, "max_tokens": 50, "random_seed": 7}
    assert llm["streamed"] is False and llm["incomplete"] is False
    assert llm["finish_reasons"] == ["stop"]
    assert llm["usage"] == usage_of(r.usage) and llm["usage"]["input_tokens"] == 7
    assert llm["response_id"] == r.id
    assert llm["server_address"] == srv.url.removeprefix("http://")
    assert llm["cost_usd"] > 0 and llm["pricing_source"].startswith("genai-prices")


@MODES
def test_stream(srv: FakeMistral, async_: bool) -> None:
    """The SDK's own stream object, recorded once at its end with the last chunk's usage."""

    async def body(client: Any, method: Callable[..., Any]) -> list[Any]:
        stream = await aw(method(client.chat, "stream")(model=MODEL, messages=MSGS))
        assert type(stream) is (EventStreamAsync if async_ else EventStream)
        return await drain(stream)

    with capture() as cap:
        events = drive(srv, async_, body)
    assert all(type(e) is models.CompletionEvent for e in events)
    record = only_record(cap, srv)
    llm = record["llm"]
    assert record["output_data"] == {"role": "assistant", "content": text_of(events)}
    assert llm["streamed"] is True and llm["incomplete"] is False
    assert llm["response_model"] == MODEL and llm["response_id"] == events[0].data.id
    assert llm["finish_reasons"] == ["stop"]
    assert llm["usage"] == usage_of(events[-1].data.usage)
    assert srv.requests[0].body["stream"] is True


@MODES
def test_stream_read_to_its_end_inside_with(srv: FakeMistral, async_: bool) -> None:
    """``with`` / ``async with`` closes the stream after its end: still one whole record."""

    async def body(client: Any, method: Callable[..., Any]) -> list[Any]:
        async with opened(await aw(method(client.chat, "stream")(
                model=MODEL, messages=MSGS))) as stream:
            return await drain(stream)

    with capture() as cap:
        events = drive(srv, async_, body)
    record = only_record(cap, srv)
    assert record["llm"]["incomplete"] is False
    assert record["output_data"]["content"] == text_of(events)


@MODES
@pytest.mark.parametrize("how", ["with-break", "close"])
def test_stream_left_early_is_one_incomplete_record(
    srv: FakeMistral, async_: bool, how: str
) -> None:
    srv.script(Reply(text="one two three four"))

    async def body(client: Any, method: Callable[..., Any]) -> list[Any]:
        stream = await aw(method(client.chat, "stream")(model=MODEL, messages=MSGS))
        seen = []
        if how == "with-break":
            async with opened(stream) as s:
                async for event in _aiter(s):
                    seen.append(event)
                    if len(seen) == 3:
                        break
        else:
            seen = [await _next(stream) for _ in range(3)]
            await aw(stream.close())
        assert await drain(stream) == []  # closed: the SDK's own behaviour
        return seen

    with capture() as cap:
        seen = drive(srv, async_, body)
    record = cut_record(cap, srv)
    assert record["llm"]["incomplete_reason"] == "closed before its end"
    assert record["output_data"]["content"] == text_of(seen) == "one two"
    assert record["llm"]["usage"] is None


async def _aiter(stream: Any) -> Any:
    if hasattr(stream, "__aiter__"):
        async for item in stream:
            yield item
    else:
        for item in stream:
            yield item


async def _next(stream: Any) -> Any:
    return await stream.__anext__() if hasattr(stream, "__anext__") else next(stream)


def test_stream_copy_and_pickle_behave_as_unwrapped(srv: FakeMistral) -> None:
    """``copy``, ``deepcopy`` and ``pickle`` of an observed stream do what they do to
    the SDK's own stream (here: copy works, the others raise the same error)."""

    def probe(stream: Any) -> list[str]:
        out = []
        for fn in (copy.copy, copy.deepcopy, pickle.dumps):
            try:
                fn(stream)
                out.append("ok")
            except Exception as exc:  # noqa: BLE001 - what it raises is the point
                out.append(f"{type(exc).__name__}: {exc}")
        return out

    with mistral_client(srv) as client:
        agentlog.set_logging(False)
        try:
            with client.chat.stream(model=MODEL, messages=MSGS) as bare:
                expected = probe(bare)
        finally:
            agentlog.set_logging(True)
        with capture() as cap, client.chat.stream(model=MODEL, messages=MSGS) as observed:
            assert probe(observed) == expected
            assert [e.data.id for e in observed] == [f"cmpl-{2}"] * 8
    assert expected[0] == "ok" and expected[1].startswith("TypeError")
    (record,) = llm_records(validate_document(cap.document()))
    assert record["llm"]["incomplete"] is False


def test_stream_dropped_is_recorded_as_incomplete_after_gc(srv: FakeMistral) -> None:
    with capture() as cap, mistral_client(srv) as client:
        stream = client.chat.stream(model=MODEL, messages=MSGS)
        next(stream)
        del stream
        gc.collect()
        record = cut_record(cap, srv)
    assert record["llm"]["incomplete_reason"] == (
        "the stream was garbage-collected before its end")


@MODES
@STREAMED
def test_tool_calls(srv: FakeMistral, async_: bool, stream: bool) -> None:
    srv.script(Reply(tool_calls=[WEATHER, TIME]))

    async def body(client: Any, method: Callable[..., Any]) -> Any:
        result = await aw(method(client.chat, "stream" if stream else "complete")(
            model=MODEL, messages=MSGS, tools=TOOLS, tool_choice="auto",
            parallel_tool_calls=True))
        return await drain(result) if stream else result

    with capture() as cap:
        result = drive(srv, async_, body)
    if stream:
        sdk = [tc for e in result for tc in e.data.choices[0].delta.tool_calls or ()]
    else:
        sdk = result.choices[0].message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in sdk] == [
        (tool_id(1, k), name, args) for k, (name, args) in enumerate([WEATHER, TIME])]
    record = only_record(cap, srv)
    expected = [{"id": tool_id(1, k), "name": name, "arguments": args}
                for k, (name, args) in enumerate([WEATHER, TIME])]
    llm = record["llm"]
    assert llm["tool_calls"] == expected
    assert record["output_data"] == {"role": "assistant", "content": None,
                                     "tool_calls": expected}
    assert llm["finish_reasons"] == ["tool_calls"]
    assert llm["params"] == {"tools": ["get_weather", "get_time"], "tool_choice": "auto",
                             "parallel_tool_calls": True}


def test_tools_given_as_sdk_objects_are_named(srv: FakeMistral) -> None:
    tools = [models.Tool(function=models.Function(name="get_weather", parameters={}))]
    with capture() as cap, mistral_client(srv) as client:
        client.chat.complete(model=MODEL, messages=MSGS, tools=tools)
    assert only_record(cap, srv)["llm"]["params"] == {"tools": ["get_weather"]}


class Answer(BaseModel):
    answer: int


def test_parse_is_one_record(srv: FakeMistral) -> None:
    """``chat.parse`` calls ``chat.complete``: one record, holding the JSON text."""
    srv.script(Reply(text='{"answer": 9}'))
    with capture() as cap, mistral_client(srv) as client:
        r = client.chat.parse(response_format=Answer, model=MODEL, messages=MSGS)
    assert r.choices[0].message.parsed == Answer(answer=9)
    record = only_record(cap, srv)
    assert record["output_data"]["content"] == '{"answer": 9}'


@MODES
def test_agents_complete(srv: FakeMistral, async_: bool) -> None:
    async def body(client: Any, method: Callable[..., Any]) -> Any:
        return await aw(method(client.agents, "complete")(agent_id="ag-123", messages=MSGS))

    with capture() as cap:
        r = drive(srv, async_, body)
    record = only_record(cap, srv, "/v1/agents/completions")
    llm = record["llm"]
    assert llm["request_model"] is None and llm["response_model"] == r.model
    assert llm["params"] == {"agent_id": "ag-123"}
    assert record["agent_name"] == f"mistral:{r.model}"


@MODES
def test_embeddings_record_counts_not_vectors(srv: FakeMistral, async_: bool) -> None:
    async def body(client: Any, method: Callable[..., Any]) -> Any:
        return await aw(method(client.embeddings, "create")(
            model="mistral-embed", inputs=["alpha beta", "gamma"]))

    with capture() as cap:
        r = drive(srv, async_, body)
    record = only_record(cap, srv, "/v1/embeddings")
    assert record["input_data"] == ["alpha beta", "gamma"]
    assert record["output_data"] == {"embeddings": 2, "dimensions": len(r.data[0].embedding)}
    llm = record["llm"]
    assert llm["operation"] == "embeddings"
    assert llm["usage"]["input_tokens"] == r.usage.prompt_tokens == 3
    assert llm["cost_usd"] > 0
    assert str(r.data[0].embedding[0]) not in json.dumps(record)


def test_cached_tokens(srv: FakeMistral) -> None:
    srv.cached_tokens = 4
    with capture() as cap, mistral_client(srv) as client:
        r = client.chat.complete(model=MODEL, messages=MSGS)
    usage = only_record(cap, srv)["llm"]["usage"]
    assert usage == usage_of(r.usage) and usage["cache_read_input_tokens"] == 4


# --------------------------------------------------------------------------- errors


@MODES
@STREAMED
@pytest.mark.parametrize(("status", "error"), [(400, errors.SDKError),
                                                (422, errors.HTTPValidationError)])
def test_http_errors_reach_the_caller_and_are_logged_once(
    srv: FakeMistral, async_: bool, stream: bool, status: int, error: type[Exception]
) -> None:
    srv.script(Reply(status=status))
    caught: list[BaseException] = []

    async def body(client: Any, method: Callable[..., Any]) -> None:
        try:
            await aw(method(client.chat, "stream" if stream else "complete")(
                model=MODEL, messages=MSGS))
        except errors.MistralError as exc:
            caught.append(exc)
            raise

    with capture() as cap, pytest.raises(error) as info:
        drive(srv, async_, body)
    assert caught[0] is info.value and type(info.value) is error  # the very same object
    assert srv.count() == 1
    doc, (record,) = folded(cap, 1)
    name = f"{error.__module__.rsplit('.', 1)[0]}.{error.__name__}"
    assert record["error"]["type"] in (name, f"{error.__module__}.{error.__name__}")
    llm = record["llm"]
    assert llm["http_status"] == status and llm["streamed"] is stream
    assert llm["usage"] is None and llm["usage_missing_reason"]
    (entry,) = doc["error_log"]
    assert entry["source"] == "llm" and entry["type"] == record["error"]["type"]


# --------------------------------------------------------------------------- context


@MODES
def test_inside_an_agent_the_call_is_an_action(srv: FakeMistral, async_: bool) -> None:
    @agentlog.agent("planner")
    async def planner(client: Any, method: Callable[..., Any]) -> str:
        r = await aw(method(client.chat, "complete")(model=MODEL, messages=MSGS))
        return r.choices[0].message.content  # type: ignore[no-any-return]

    async def body(client: Any, method: Callable[..., Any]) -> str:
        with agentlog.iteration():
            return await planner(client, method)

    with capture() as cap:
        answer = drive(srv, async_, body)
    doc, (action,) = folded(cap, 1)
    (ix,) = doc["iterations"][0]["interactions"]
    assert ix["agent_name"] == "planner" and ix["output_data"] == answer
    assert ix["actions"] == [action] and action["action_name"] == "llm:mistral.chat"


def test_input_is_what_was_sent_not_what_the_list_became(srv: FakeMistral) -> None:
    """Agent loops append to their message list after each call; records are written
    later, and must hold the messages as sent."""
    messages = list(MSGS)
    with capture() as cap, mistral_client(srv) as client:
        r = client.chat.complete(model=MODEL, messages=messages)
        messages.append({"role": "assistant", "content": r.choices[0].message.content})
        messages.append({"role": "user", "content": "And times two?"})
        client.chat.complete(model=MODEL, messages=messages)
    _, (first, second) = folded(cap, 2)
    assert first["input_data"] == MSGS and len(second["input_data"]) == 4


def test_cost_known_and_unknown_models(srv: FakeMistral) -> None:
    srv.script(Reply(), Reply(model="my-local-model"))
    with capture() as cap, mistral_client(srv) as client:
        client.chat.complete(model="mistral-large-latest", messages=MSGS)
        client.chat.complete(model="my-local-model", messages=MSGS)
    _, (known, unknown) = folded(cap, 2)
    assert known["llm"]["cost_usd"] > 0
    assert unknown["llm"]["cost_usd"] is None and unknown["llm"]["cost_missing_reason"]


def test_no_key_in_the_document(srv: FakeMistral, verbosity: Callable[[int], None]) -> None:
    """The key, in the client and in per-call headers, never reaches the record, even with
    full params at verbosity 2."""
    verbosity(2)
    with capture() as cap, mistral_client(srv) as client:
        client.chat.complete(model=MODEL, messages=MSGS, temperature=0.1,
                             http_headers={"x-extra-auth": MISTRAL_KEY})
    assert srv.requests[0].headers["authorization"] == f"Bearer {MISTRAL_KEY}"
    record = only_record(cap, srv)
    assert record["llm"]["params"] == {"temperature": 0.1}
    assert MISTRAL_KEY not in json.dumps(cap.document())


@MODES
def test_verbosity_0_records_nothing(
    srv: FakeMistral, async_: bool, verbosity: Callable[[int], None]
) -> None:
    verbosity(0)

    async def body(client: Any, method: Callable[..., Any]) -> tuple[Any, Any]:
        plain = await aw(method(client.chat, "complete")(model=MODEL, messages=MSGS))
        events = await drain(await aw(method(client.chat, "stream")(model=MODEL,
                                                                     messages=MSGS)))
        return plain, events

    with capture() as cap:
        plain, events = drive(srv, async_, body)
    assert plain.choices[0].message.content == text_of(events)
    assert srv.count() == 2 and list(cap) == []


# --------------------------------------------------------------------------- processes

SDK_FIRST = """\
import sys, json
sys.path.insert(0, {tests!r})
from mistralai.client import Mistral
from mistralai.client import chat
from fake_mistral import FakeMistral, mistral_client
import agentlog

with FakeMistral() as srv, mistral_client(srv) as client:
    client.chat.complete(model="mistral-small-latest", messages=[{{"role": "user",
                                                                  "content": "hi"}}])
    with client.chat.stream(model="mistral-small-latest",
                            messages=[{{"role": "user", "content": "hi"}}]) as s:
        for _ in s:
            pass
    print("RESULT", json.dumps({{"requests": srv.count(),
        "patched": hasattr(chat.Chat.complete, "__agentlog_patched__")}}))
"""

AGENTLOG_FIRST = SDK_FIRST.replace("import agentlog\n", "").replace(
    "sys.path.insert(0, {tests!r})\n", "sys.path.insert(0, {tests!r})\nimport agentlog\n")


@pytest.mark.parametrize(("order", "disable"), [
    ("sdk_first", ""), ("agentlog_first", ""), ("sdk_first", "mistralai"),
    ("agentlog_first", "mistral"),
])
def test_import_order_and_disable(run: Callable[..., Result], order: str, disable: str) -> None:
    """Either import order is recorded (3.x's ``mistralai`` is a namespace package:
    the hook waits for ``mistralai.client``); ``AGENTLOG_DISABLE`` by the SDK's name or
    the adapter's turns it off: no patch, no record."""
    tests = str(Path(__file__).parent)
    source = SDK_FIRST if order == "sdk_first" else AGENTLOG_FIRST
    line, records = host_run(run, source.format(tests=tests), AGENTLOG_DISABLE=disable)
    found = json.loads(line[7:])
    assert found["requests"] == 2 and found["patched"] is (not disable)
    assert len(records) == (0 if disable else 2)
    assert all(r["llm"]["incomplete"] is False for r in records)


# --------------------------------------------------------------------------- recorded traffic


def _kwargs(rec: dict[str, Any]) -> dict[str, Any]:
    sent = rec["request"]["body"]
    return {k: v for k, v in sent.items() if k in ("model", "messages", "tools", "inputs")}


@pytest.mark.parametrize("path", ["mistral/test_mistralai_chat_legacy.yaml",
                                  "mistral/test_mistralai_chat_with_cache_tokens.yaml",
                                  "mistral/test_image_as_binary_content_tool_response.yaml"])
def test_replay_complete(srv: FakeMistral, path: str) -> None:
    rec = load_cassette(path)[0]
    sent = json.loads(rec["response"]["body"])
    srv.script(replay(rec))
    with capture() as cap, mistral_client(srv) as client:
        r = client.chat.complete(**_kwargs(rec))
    record = only_record(cap, srv)
    llm = record["llm"]
    assert llm["usage"] == usage_of(r.usage)
    assert llm["usage"]["input_tokens"] == sent["usage"]["prompt_tokens"]
    message = sent["choices"][0]["message"]
    assert record["output_data"]["content"] == (message["content"] or None)
    assert [c["id"] for c in llm.get("tool_calls", ())] == [
        c["id"] for c in message.get("tool_calls") or ()]
    if "prompt_tokens_details" in sent["usage"]:
        assert llm["usage"]["cache_read_input_tokens"] == sent["usage"][
            "prompt_tokens_details"]["cached_tokens"]


@pytest.mark.parametrize("path", ["mistral/test_mistralai_streaming_chat_legacy.yaml",
                                  "mistral/test_mistral_model_thinking_part_iter.yaml"])
def test_replay_stream(srv: FakeMistral, path: str) -> None:
    rec = load_cassette(path)[0]
    srv.script(replay(rec))
    with capture() as cap, mistral_client(srv) as client:
        events = list(client.chat.stream(**_kwargs(rec)))
    record = only_record(cap, srv)
    assert record["llm"]["usage"] == usage_of(events[-1].data.usage)
    assert record["output_data"]["content"] == text_of(events)
    thinking = "".join(t.text for e in events if isinstance(e.data.choices[0].delta.content,
                                                            list)
                       for chunk in e.data.choices[0].delta.content
                       for t in getattr(chunk, "thinking", None) or ())
    assert record["output_data"].get("thinking", "") == thinking
    assert record["llm"]["finish_reasons"] == ["stop"]


def test_replay_embeddings(srv: FakeMistral) -> None:
    (rec,) = load_cassette("mistral/test_mistral_embeddings_legacy.yaml")
    sent = json.loads(rec["response"]["body"])
    srv.script(replay(rec))
    with capture() as cap, mistral_client(srv) as client:
        # Recorded by mistralai 1.x, whose request body named it ``input``.
        client.embeddings.create(model=rec["request"]["body"]["model"],
                                 inputs=rec["request"]["body"]["input"])
    record = only_record(cap, srv)
    assert record["output_data"] == {"embeddings": len(sent["data"]),
                                     "dimensions": len(sent["data"][0]["embedding"])}
    assert record["llm"]["usage"]["input_tokens"] == sent["usage"]["prompt_tokens"]
