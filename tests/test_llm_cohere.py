"""What agentlog records for the ``cohere`` SDK's v2 API: chat, chat_stream and embed, sync
and async, against ``tests/fake_cohere.py`` over loopback HTTP (SSE streams included).

Covers A3: a Cohere chat_stream (a generator of typed events) passes every event on; one record.
Covers A4: a Cohere stream closed early or cut by the server is recorded incomplete.
Covers A5: a non-streamed Cohere result is the SDK's own object; a stream stays a generator.
Covers A7: cohere imported before agentlog is recorded (a client built after agentlog).
Covers A8: one record per request the Cohere server received, SDK retries included.
Covers D1: the Cohere api_key, echoed back by the server, never reaches the document.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cohere
import pytest

from agentlog.testing import capture
from fake_cohere import COHERE_KEY, TEMPLATE_TOKENS, FakeCohere, Reply, close_cohere, cohere_client
from fake_llm import load_cassette, replay
from helpers import Result, validate_document
from llm_testing import (
    MODES,
    STREAMED,
    aw,
    cut_by_server,
    cut_short,
    drain,
    driver,
    first_then_close,
    folded,
    host_run,
    only_record,
    usage,
)

MODEL = "command-r-plus"
MSGS = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is four plus five?"}]
TOOLS = [{"type": "function", "function": {
    "name": name, "description": f"{name} for a place",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
    for name in ("get_weather", "get_time")]
WEATHER = ("get_weather", '{"city": "Paris"}')
TIME = ("get_time", '{"city": "Oslo"}')


@pytest.fixture
def srv() -> Iterator[FakeCohere]:
    with FakeCohere() as server:
        yield server
    assert not server.errors


drive = driver(cohere_client, close_cohere)


def billed(u: Any) -> dict[str, Any]:
    """What the record should say for a Cohere ``usage``: the billed units, as integers."""
    return usage(int(u.billed_units.input_tokens), int(u.billed_units.output_tokens))


# --------------------------------------------------------------------------- chat


@MODES
def test_chat_plain(srv: FakeCohere, async_: bool) -> None:
    async def body(client: Any) -> Any:
        return await aw(client.chat(model=MODEL, messages=MSGS, temperature=0.3, max_tokens=50))

    with capture() as cap:
        r = drive(srv, async_, body)
    assert type(r) is cohere.V2ChatResponse
    record = only_record(cap, srv, "/v2/chat")
    assert record["agent_name"] == f"cohere:{MODEL}"
    assert record["input_data"] == MSGS
    assert record["output_data"] == {"role": "assistant", "content": r.message.content[0].text}
    llm = record["llm"]
    assert (llm["provider"], llm["operation"]) == ("cohere", "chat")
    assert (llm["request_model"], llm["response_model"]) == (MODEL, None)  # not in the reply
    assert llm["params"] == {"temperature": 0.3, "max_tokens": 50}
    assert llm["streamed"] is False and llm["finish_reasons"] == ["COMPLETE"]
    assert llm["response_id"] == r.id
    # The billed units, not ``tokens`` (which counts Cohere's prompt template too).
    assert llm["usage"] == billed(r.usage)
    assert r.usage.tokens.input_tokens == r.usage.billed_units.input_tokens + TEMPLATE_TOKENS
    assert llm["server_address"] == srv.url.removeprefix("http://")
    assert llm["cost_usd"] > 0 and llm["pricing_source"].startswith("genai-prices")


@MODES
def test_chat_stream(srv: FakeCohere, async_: bool) -> None:
    async def body(client: Any) -> list[Any]:
        stream = client.chat_stream(model=MODEL, messages=MSGS)
        assert (inspect.isasyncgen if async_ else inspect.isgenerator)(stream)
        return await drain(stream)

    with capture() as cap:
        events = drive(srv, async_, body)
    kinds = [e.type for e in events]
    assert kinds[0] == "message-start" and kinds[-1] == "message-end"
    assert kinds.count("content-delta") > 2
    record = only_record(cap, srv, "/v2/chat")
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert record["output_data"] == {"role": "assistant", "content": text}
    llm = record["llm"]
    assert llm["streamed"] is True and llm["incomplete"] is False
    assert llm["response_id"] == events[0].id
    assert llm["finish_reasons"] == ["COMPLETE"]
    assert llm["usage"] == billed(events[-1].delta.usage)
    assert llm["cost_usd"] > 0
    # The request the generator makes on its first event is the LLM call's, not a fetch.
    assert validate_document(cap.document())["resources_used"] == []


@MODES
@STREAMED
def test_tool_calls(srv: FakeCohere, async_: bool, stream: bool) -> None:
    """Tool calls (arguments joined from the stream's deltas) and the tool plan."""
    srv.script(Reply(tool_calls=[WEATHER, TIME]))

    async def body(client: Any) -> Any:
        if stream:
            return await drain(client.chat_stream(model=MODEL, messages=MSGS, tools=TOOLS))
        return await aw(client.chat(model=MODEL, messages=MSGS, tools=TOOLS))

    with capture() as cap:
        result = drive(srv, async_, body)
    record = only_record(cap, srv)
    expected = [{"id": f"{name}_{k}", "name": name, "arguments": args}
                for k, (name, args) in enumerate([WEATHER, TIME])]
    if stream:  # the server really sent the arguments in pieces
        pieces = [e.delta.message.tool_calls.function.arguments
                  for e in result if e.type == "tool-call-delta"]
        assert len(pieces) == 4 and "".join(pieces) == WEATHER[1] + TIME[1]
    else:
        sdk = result.message.tool_calls
        assert [(c.id, c.function.name, c.function.arguments) for c in sdk] == [
            (c["id"], c["name"], c["arguments"]) for c in expected]
    llm = record["llm"]
    assert llm["tool_calls"] == expected and llm["finish_reasons"] == ["TOOL_CALL"]
    assert record["output_data"] == {"role": "assistant", "content": None,
                                     "tool_plan": "I will call get_weather, get_time.",
                                     "tool_calls": expected}
    assert llm["params"] == {"tools": ["get_weather", "get_time"]}


@MODES
def test_embed_records_counts_not_vectors(srv: FakeCohere, async_: bool) -> None:
    async def body(client: Any) -> Any:
        return await aw(client.embed(model="embed-v4.0", texts=["one two", "three"],
                                     input_type="search_document", embedding_types=["float"]))

    with capture() as cap:
        r = drive(srv, async_, body)
    assert type(r) is cohere.EmbedByTypeResponse
    record = only_record(cap, srv, "/v2/embed")
    assert record["input_data"] == ["one two", "three"]
    assert record["output_data"] == {"embeddings": 2, "dimensions": len(r.embeddings.float_[0])}
    llm = record["llm"]
    assert llm["operation"] == "embeddings" and llm["response_id"] == r.id
    assert llm["params"] == {"input_type": "search_document"}
    assert llm["usage"]["input_tokens"] == int(r.meta.billed_units.input_tokens) == 3
    assert llm["usage"]["output_tokens"] is None


def test_sdk_objects_as_arguments(srv: FakeCohere) -> None:
    """Messages and tools given as the SDK's own types are recorded as the JSON sent."""
    tools = [cohere.ToolV2(type="function", function=cohere.ToolV2Function(
        name="get_weather", parameters={"type": "object"}))]
    messages = [cohere.SystemChatMessageV2(content="Be brief."),
                cohere.UserChatMessageV2(content="What is four plus five?")]
    with capture() as cap, cohere.ClientV2(api_key=COHERE_KEY, base_url=srv.url,
                                           max_retries=0) as client:
        client.chat(model=MODEL, messages=messages, tools=tools)
    record = only_record(cap, srv)
    assert record["input_data"] == MSGS == srv.requests[0].body["messages"]
    assert record["llm"]["params"] == {"tools": ["get_weather"]}


def test_the_v2_client_of_a_v1_client_is_recorded(srv: FakeCohere) -> None:
    """``cohere.Client(...).v2`` is the same ``V2Client``."""
    client = cohere.Client(api_key=COHERE_KEY, base_url=srv.url, max_retries=0)
    try:
        with capture() as cap:
            r = client.v2.chat(model=MODEL, messages=MSGS)
    finally:
        asyncio.run(close_cohere(client))
    record = only_record(cap, srv, "/v2/chat")
    assert record["output_data"]["content"] == r.message.content[0].text


def test_input_is_the_messages_as_sent(srv: FakeCohere) -> None:
    """The caller appends to its message list right after the call; the record keeps what
    was sent (records are written later, in batches)."""
    messages = list(MSGS)
    with capture() as cap, cohere.ClientV2(api_key=COHERE_KEY, base_url=srv.url,
                                           max_retries=0) as client:
        r = client.chat(model=MODEL, messages=messages)
        messages.append({"role": "assistant", "content": r.message.content[0].text})
    record = only_record(cap, srv)
    assert record["input_data"] == MSGS == srv.requests[0].body["messages"]


# --------------------------------------------------------------------------- errors


@MODES
@STREAMED
@pytest.mark.parametrize(("status", "error"), [
    (429, cohere.TooManyRequestsError),
    (400, cohere.BadRequestError),
    (500, cohere.InternalServerError),
])
def test_http_errors_reach_the_caller_and_are_logged_once(
    srv: FakeCohere, async_: bool, stream: bool, status: int, error: type[Exception]
) -> None:
    srv.script(Reply(status=status))
    caught: list[BaseException] = []

    async def body(client: Any) -> None:
        try:
            if stream:
                await drain(client.chat_stream(model=MODEL, messages=MSGS))
            else:
                await aw(client.chat(model=MODEL, messages=MSGS))
        except cohere.core.ApiError as exc:
            caught.append(exc)
            raise

    with capture() as cap, pytest.raises(error) as info:
        drive(srv, async_, body)
    assert caught[0] is info.value and type(info.value) is error
    assert info.value.status_code == status and srv.count() == 1
    doc, (record,) = folded(cap, 1)
    name = f"{error.__module__}.{error.__name__}"
    assert record["error"]["type"] == name and record["error"]["error"] == str(info.value)
    assert record["llm"]["http_status"] == status and record["llm"]["streamed"] is stream
    assert record["llm"]["usage"] is None and record["llm"]["usage_missing_reason"]
    (entry,) = doc["error_log"]
    assert entry["source"] == "llm" and entry["type"] == name


@MODES
def test_retries_make_one_record(srv: FakeCohere, async_: bool) -> None:
    srv.script(Reply(status=500), Reply(text="nine"))

    async def body(client: Any) -> Any:
        return await aw(client.chat(model=MODEL, messages=MSGS))

    with capture() as cap:
        r = drive(srv, async_, body, max_retries=1)
    assert srv.count() == 2 and r.message.content[0].text == "nine"
    doc, (record,) = folded(cap, 1)
    assert doc["error_log"] == [] and "error" not in record
    assert record["output_data"]["content"] == "nine"


# --------------------------------------------------------------------------- early ends


@MODES
def test_stream_closed_early_is_incomplete(srv: FakeCohere, async_: bool) -> None:
    async def body(client: Any) -> Any:
        return await first_then_close(client.chat_stream(model=MODEL, messages=MSGS))

    with capture() as cap:
        first = drive(srv, async_, body)
    assert first.type == "message-start" and srv.count() == 1
    _, record = cut_short(cap)
    llm = record["llm"]
    assert llm["incomplete_reason"] == "closed before its end" and llm["ttft_ms"] is not None
    assert llm["response_id"] == first.id
    assert llm["usage"] is None and "message-end" in llm["usage_missing_reason"]
    assert "error" not in record


@MODES
def test_stream_cut_by_the_server_is_an_error(srv: FakeCohere, async_: bool) -> None:
    srv.script(Reply(drop_after=3))

    async def body(client: Any) -> list[Any]:
        return await drain(client.chat_stream(model=MODEL, messages=MSGS))

    with capture() as cap, pytest.raises(Exception) as info:
        drive(srv, async_, body)
    cut_by_server(cap, info.value)


# --------------------------------------------------------------------------- the rest


@MODES
def test_verbosity_0_records_nothing(
    srv: FakeCohere, async_: bool, verbosity: Callable[[int], None]
) -> None:
    verbosity(0)

    async def body(client: Any) -> Any:
        plain = await aw(client.chat(model=MODEL, messages=MSGS))
        events = await drain(client.chat_stream(model=MODEL, messages=MSGS))
        return plain, events

    with capture() as cap:
        plain, events = drive(srv, async_, body)
    assert plain.message.content[0].text == "".join(
        e.delta.message.content.text for e in events if e.type == "content-delta")
    assert srv.count() == 2 and list(cap) == []


def test_no_key_in_the_document(srv: FakeCohere) -> None:
    """The api_key, pasted into a prompt and echoed back, is redacted."""
    key = "co-canary-4d1e8b"
    ask = [{"role": "user", "content": f"my key is {key}"}]
    with capture() as cap, cohere.ClientV2(api_key=key, base_url=srv.url,
                                           max_retries=0) as client:
        client.chat(model=MODEL, messages=ask)
        list(client.chat_stream(model=MODEL, messages=ask))
    assert srv.requests[0].headers["authorization"] == f"Bearer {key}"
    doc, (plain, streamed) = folded(cap, 2)
    assert key not in json.dumps(doc)
    assert "my key is" in plain["output_data"]["content"]
    assert "my key is" in streamed["output_data"]["content"]


# --------------------------------------------------------------------------- recorded traffic


def _sent(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec["request"]["body"].items() if k in ("model", "messages", "tools")}


@pytest.mark.parametrize("path", [
    "cohere/test_cohere_v2_chat_legacy.yaml",
    "cohere/test_cohere_v2_chat_legacy_with_streaming.yaml",
    "cohere/test_cohere_v2_chat_legacy_with_tool_calls_and_streaming.yaml",
    "cohere/test_cohere_v2_chat_legacy_with_tool_calls_and_history.yaml",
])
def test_replay_chat(srv: FakeCohere, path: str) -> None:
    """Real Cohere responses (JSON, and SSE with typed events) through the same path."""
    recs = load_cassette(path)
    srv.script(*(replay(rec) for rec in recs))
    with capture() as cap, cohere.ClientV2(api_key=COHERE_KEY, base_url=srv.url,
                                           max_retries=0) as client:
        for rec in recs:
            if rec["request"]["body"].get("stream"):
                list(client.chat_stream(**_sent(rec)))
            else:
                client.chat(**_sent(rec))
    assert srv.count() == len(recs)
    _, records = folded(cap, len(recs))
    for rec, record in zip(recs, records, strict=True):
        body = rec["response"]["body"]
        if rec["request"]["body"].get("stream"):
            events = [json.loads(line[5:]) for line in body.splitlines()
                      if line.startswith(b"data: {")]
            text = "".join(e["delta"]["message"]["content"].get("text", "")
                           for e in events if e["type"] == "content-delta")
            end = events[-1]["delta"]
            calls = [e for e in events if e["type"] == "tool-call-start"]
        else:
            sent = json.loads(body)
            text = "".join(c["text"] for c in sent["message"].get("content") or ())
            end = sent
            calls = sent["message"].get("tool_calls") or []
        llm = record["llm"]
        assert (record["output_data"]["content"] or "") == text
        assert llm["usage"]["input_tokens"] == end["usage"]["billed_units"]["input_tokens"]
        assert llm["usage"]["output_tokens"] == end["usage"]["billed_units"]["output_tokens"]
        assert llm["finish_reasons"] == [end["finish_reason"]]
        assert len(llm.get("tool_calls", [])) == len(calls)
        for call in llm.get("tool_calls", []):
            json.loads(call["arguments"])  # joined from its deltas into whole JSON


def test_replay_embed(srv: FakeCohere) -> None:
    (rec,) = load_cassette("cohere/test_cohere_v2_embed_legacy.yaml")
    sent = rec["request"]["body"]
    srv.script(replay(rec))
    with capture() as cap, cohere.ClientV2(api_key=COHERE_KEY, base_url=srv.url,
                                           max_retries=0) as client:
        r = client.embed(model=sent["model"], texts=sent["texts"], input_type=sent["input_type"],
                         embedding_types=["float"])
    record = only_record(cap, srv)
    assert record["output_data"] == {"embeddings": len(sent["texts"]),
                                     "dimensions": len(r.embeddings.float_[0])}
    assert record["llm"]["usage"]["input_tokens"] == 208


# --------------------------------------------------------------------------- processes

SDK_FIRST = """\
import sys
sys.path.insert(0, {tests!r})
import cohere
from fake_cohere import FakeCohere, cohere_client
import agentlog
with FakeCohere() as srv:
    with cohere.ClientV2(api_key="k-not-secret-000", base_url=srv.url, max_retries=0) as co:
        co.chat(model="command-r-plus", messages=[{{"role": "user", "content": "hi"}}])
        list(co.chat_stream(model="command-r-plus", messages=[{{"role": "user", "content": "hi"}}]))
    print("RESULT", srv.count(), "agentlog.integrations.cohere" in sys.modules)
"""


@pytest.mark.parametrize("disabled", [False, True], ids=["enabled", "disabled"])
def test_sdk_imported_first_and_disable(run: Callable[..., Result], disabled: bool) -> None:
    """Import order does not matter; ``AGENTLOG_DISABLE=cohere`` turns the adapter off."""
    env = {"AGENTLOG_DISABLE": "cohere"} if disabled else {}
    line, records = host_run(run, SDK_FIRST.format(tests=str(Path(__file__).resolve().parent)),
                             **env)
    assert line == f"RESULT 2 {not disabled}"
    assert len(records) == (0 if disabled else 2)
    if not disabled:
        assert [r["llm"]["streamed"] for r in records] == [False, True]
