"""What agentlog records for the ``groq`` SDK (Stainless-generated, like openai), against
the OpenAI-shaped ``tests/fake_llm.py`` over loopback HTTP at Groq's ``/openai/v1`` paths.

Covers A3: a Groq stream keeps its type (groq.Stream / AsyncStream) and makes exactly one record.
Covers A4: a Groq stream closed early is recorded incomplete.
Covers A7: groq imported before agentlog is recorded.
Covers A8: groq and openai both installed patch different base clients: one record per request.
Covers D1: the Groq api_key, echoed back by the server, never reaches the document.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import groq
import pytest

from agentlog.testing import capture
from fake_llm import FakeLLM, Reply, load_cassette, openai_client, replay
from helpers import Result, validate_document
from llm_testing import (
    MODES,
    STREAMED,
    aw,
    drain,
    driver,
    first_then_close,
    folded,
    host_run,
    llm_records,
    only_record,
    usage,
)

MODEL = "llama-3.3-70b-versatile"
MSGS = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is four plus five?"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}]
WEATHER = ("get_weather", '{"city": "Paris"}')
GROQ_KEY = "gsk-test-canary-0000"


def groq_client(srv: FakeLLM, async_: bool = False, **kw: Any) -> Any:
    """A real ``groq.Groq`` (or ``AsyncGroq``) pointed at the fake; close it after use."""
    kw.setdefault("api_key", GROQ_KEY)
    kw.setdefault("max_retries", 0)
    kw.setdefault("base_url", srv.url)  # the SDK adds /openai/v1
    return groq.AsyncGroq(**kw) if async_ else groq.Groq(**kw)


drive = driver(groq_client)


def usage_of(u: Any) -> dict[str, Any]:
    return usage(u.prompt_tokens, u.completion_tokens, cache_read=0, reasoning=0)


@MODES
def test_chat_plain(srv: FakeLLM, async_: bool) -> None:
    srv.script(Reply(model=MODEL))

    async def body(client: Any) -> Any:
        return await aw(client.chat.completions.create(model=MODEL, messages=MSGS,
                                                       temperature=0.3))

    with capture() as cap:
        r = drive(srv, async_, body)
    assert type(r) is groq.types.chat.ChatCompletion
    record = only_record(cap, srv, "/openai/v1/chat/completions")
    assert record["agent_name"] == f"groq:{MODEL}" and record["input_data"] == MSGS
    assert record["output_data"] == {"role": "assistant", "content": r.choices[0].message.content}
    llm = record["llm"]
    assert (llm["provider"], llm["operation"]) == ("groq", "chat")
    assert (llm["request_model"], llm["response_model"]) == (MODEL, MODEL)
    assert llm["params"] == {"temperature": 0.3}
    assert llm["usage"] == usage_of(r.usage) and llm["response_id"] == r.id
    assert llm["server_address"] == srv.url.removeprefix("http://")
    assert llm["cost_usd"] > 0 and llm["pricing_source"].startswith("genai-prices")


@MODES
@pytest.mark.parametrize("where", ["x_groq", "include_usage"])
def test_chat_stream_usage(srv: FakeLLM, async_: bool, where: str) -> None:
    """Groq puts a stream's usage in the last chunk's ``x_groq.usage`` unasked; with
    ``stream_options.include_usage`` it also sends the OpenAI usage chunk."""
    srv.script(Reply(model=MODEL, x_groq=where == "x_groq"))
    # groq 1.x takes no stream_options argument: sent as an extra body field
    extra = ({"extra_body": {"stream_options": {"include_usage": True}}}
             if where == "include_usage" else {})

    async def body(client: Any) -> list[Any]:
        stream = await aw(client.chat.completions.create(model=MODEL, messages=MSGS,
                                                         stream=True, **extra))
        assert isinstance(stream, groq.AsyncStream if async_ else groq.Stream)
        return await drain(stream)

    with capture() as cap:
        chunks = drive(srv, async_, body)
    record = only_record(cap, srv)
    assert ("stream_options" in srv.requests[0].body) is (where == "include_usage")
    if where == "x_groq":
        assert all(c.usage is None for c in chunks)
        sent = chunks[-1].x_groq.usage
    else:
        sent = chunks[-1].usage
    assert sent is not None
    llm = record["llm"]
    assert llm["streamed"] is True and llm["incomplete"] is False
    assert llm["usage"] == usage_of(sent) and "usage_missing_reason" not in llm
    assert llm["cost_usd"] > 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert record["output_data"] == {"role": "assistant", "content": text}


def test_stream_without_usage_says_why(srv: FakeLLM) -> None:
    srv.script(Reply(model=MODEL, x_groq=True, usage=False))
    with capture() as cap, groq_client(srv) as client:
        list(client.chat.completions.create(model=MODEL, messages=MSGS, stream=True))
    llm = only_record(cap, srv)["llm"]
    assert llm["usage"] is None and llm["usage_missing_reason"]


@MODES
@STREAMED
def test_tool_calls(srv: FakeLLM, async_: bool, stream: bool) -> None:
    srv.script(Reply(model=MODEL, tool_calls=[WEATHER], x_groq=True))

    async def body(client: Any) -> Any:
        result = await aw(client.chat.completions.create(model=MODEL, messages=MSGS,
                                                         tools=TOOLS, stream=stream))
        return await drain(result) if stream else result

    with capture() as cap:
        drive(srv, async_, body)
    llm = only_record(cap, srv)["llm"]
    assert llm["tool_calls"] == [{"id": "call_0", "name": "get_weather",
                                  "arguments": WEATHER[1]}]
    assert llm["finish_reasons"] == ["tool_calls"] and llm["usage"]["output_tokens"] > 0


@MODES
@pytest.mark.parametrize(("status", "error"), [
    (429, groq.RateLimitError),
    (400, groq.BadRequestError),
])
def test_http_errors_reach_the_caller(
    srv: FakeLLM, async_: bool, status: int, error: type[Exception]
) -> None:
    srv.script(Reply(status=status))
    caught: list[BaseException] = []

    async def body(client: Any) -> None:
        try:
            await aw(client.chat.completions.create(model=MODEL, messages=MSGS))
        except groq.APIStatusError as exc:
            caught.append(exc)
            raise

    with capture() as cap, pytest.raises(error) as info:
        drive(srv, async_, body)
    assert caught[0] is info.value and type(info.value) is error and srv.count() == 1
    doc, (record,) = folded(cap, 1)
    assert record["error"]["type"] == f"groq.{error.__name__}"
    assert record["llm"]["http_status"] == status and record["llm"]["provider"] == "groq"
    (entry,) = doc["error_log"]
    assert entry["source"] == "llm" and entry["type"] == f"groq.{error.__name__}"


@MODES
def test_stream_closed_early_is_incomplete(srv: FakeLLM, async_: bool) -> None:
    srv.script(Reply(model=MODEL, x_groq=True))

    async def body(client: Any) -> Any:
        return await first_then_close(await aw(client.chat.completions.create(
            model=MODEL, messages=MSGS, stream=True)))

    with capture() as cap:
        first = drive(srv, async_, body)
    (record,) = llm_records(validate_document(cap.document()))
    llm = record["llm"]
    assert llm["incomplete"] is True and llm["incomplete_reason"] == "closed before its end"
    assert llm["response_id"] == first.id and llm["usage"] is None


@MODES
def test_openai_and_groq_together_record_each_request_once(srv: FakeLLM, async_: bool) -> None:
    """Both adapters installed: each SDK passes its own base client's hook only."""
    srv.script(Reply(model=MODEL), Reply(), Reply(model=MODEL, x_groq=True), Reply())

    async def body(gq: Any) -> None:
        oa = openai_client(srv, async_=async_)
        try:
            await aw(gq.chat.completions.create(model=MODEL, messages=MSGS))
            await aw(oa.chat.completions.create(model="gpt-4o-mini", messages=MSGS))
            await drain(await aw(gq.chat.completions.create(model=MODEL, messages=MSGS,
                                                            stream=True)))
            await drain(await aw(oa.chat.completions.create(model="gpt-4o-mini",
                                                            messages=MSGS, stream=True)))
        finally:
            await aw(oa.close())

    with capture() as cap:
        drive(srv, async_, body)
    assert srv.count() == 4
    _, records = folded(cap, 4)
    assert [r["llm"]["provider"] for r in records] == ["groq", "openai", "groq", "openai"]
    assert [r["llm"]["streamed"] for r in records] == [False, False, True, True]


@MODES
def test_verbosity_0_records_nothing(
    srv: FakeLLM, async_: bool, verbosity: Callable[[int], None]
) -> None:
    verbosity(0)

    async def body(client: Any) -> Any:
        await aw(client.chat.completions.create(model=MODEL, messages=MSGS))
        return await drain(await aw(client.chat.completions.create(
            model=MODEL, messages=MSGS, stream=True)))

    with capture() as cap:
        drive(srv, async_, body)
    assert srv.count() == 2 and list(cap) == []


def test_no_key_in_the_document(srv: FakeLLM) -> None:
    key = "gsk-canary-9b2c61"
    with capture() as cap, groq_client(srv, api_key=key) as client:
        client.chat.completions.create(model=MODEL,
                                       messages=[{"role": "user", "content": f"key {key}"}])
    assert srv.requests[0].headers["authorization"] == f"Bearer {key}"
    doc, (record,) = folded(cap, 1)
    assert key not in json.dumps(doc) and record["output_data"]["content"].startswith("echo")


# --------------------------------------------------------------------------- recorded traffic


def test_replay_chat_and_stream(srv: FakeLLM) -> None:
    """Real Groq responses: usage (with Groq's timing fields) and ``x_groq.usage``."""
    plain = load_cassette("groq/test_chat_legacy.yaml")[0]
    (streamed,) = load_cassette("groq/test_chat_streaming_legacy.yaml")
    srv.script(replay(plain), replay(streamed))
    with capture() as cap, groq_client(srv) as client:
        for rec in (plain, streamed):
            sent = rec["request"]["body"]
            result = client.chat.completions.create(**sent)
            if sent.get("stream"):
                list(result)
    assert srv.count() == 2
    _, (one, two) = folded(cap, 2)
    body = json.loads(plain["response"]["body"])
    assert one["llm"]["usage"]["input_tokens"] == body["usage"]["prompt_tokens"]
    last = [json.loads(x[5:]) for x in streamed["response"]["body"].splitlines()
            if x.startswith(b"data: {")][-1]
    assert two["llm"]["usage"]["input_tokens"] == last["x_groq"]["usage"]["prompt_tokens"] == 18
    assert two["llm"]["usage"]["output_tokens"] == last["x_groq"]["usage"]["completion_tokens"]
    assert one["llm"]["cost_usd"] > 0 and two["llm"]["cost_usd"] > 0


def test_replay_tool_use_failed_then_tool_calls(srv: FakeLLM) -> None:
    """A recorded 400 (``tool_use_failed``), then the retried turns that call the tool."""
    recs = load_cassette("groq/test_tool_use_failed_error.yaml")
    srv.script(*(replay(rec) for rec in recs))
    with capture() as cap, groq_client(srv) as client:
        with pytest.raises(groq.BadRequestError) as info:
            client.chat.completions.create(**recs[0]["request"]["body"])
        for rec in recs[1:]:
            client.chat.completions.create(**rec["request"]["body"])
    assert "tool_use_failed" in str(info.value)
    doc, records = folded(cap, len(recs))
    assert records[0]["llm"]["http_status"] == 400 and "error" in records[0]
    assert records[1]["llm"]["tool_calls"][0]["name"] == "get_something_by_name"
    assert records[2]["llm"]["usage"]["cache_read_input_tokens"] == 256
    assert records[2]["llm"]["usage"]["reasoning_output_tokens"] == 59
    assert len(doc["error_log"]) == 1


# --------------------------------------------------------------------------- processes

SDK_FIRST = """\
import sys
sys.path.insert(0, {tests!r})
import groq
from fake_llm import FakeLLM, Reply
import agentlog
with FakeLLM() as srv:
    srv.script(Reply(x_groq=True), Reply(x_groq=True))
    with groq.Groq(api_key="k-not-secret-000", base_url=srv.url, max_retries=0) as gq:
        ask = [{{"role": "user", "content": "hi"}}]
        gq.chat.completions.create(model="llama-3.3-70b-versatile", messages=ask)
        list(gq.chat.completions.create(model="llama-3.3-70b-versatile", messages=ask,
                                        stream=True))
    marked = getattr(groq._base_client.SyncAPIClient.request, "__agentlog_patched__", False)
    print("RESULT", srv.count(), "agentlog.integrations.groq" in sys.modules, marked)
"""


@pytest.mark.parametrize("disabled", [False, True], ids=["enabled", "disabled"])
def test_sdk_imported_first_and_disable(run: Callable[..., Result], disabled: bool) -> None:
    """Import order does not matter; ``AGENTLOG_DISABLE=groq`` turns the adapter off."""
    env = {"AGENTLOG_DISABLE": "groq"} if disabled else {}
    line, records = host_run(run, SDK_FIRST.format(tests=str(Path(__file__).resolve().parent)),
                             **env)
    assert line == f"RESULT 2 {not disabled} {not disabled}"
    assert len(records) == (0 if disabled else 2)
    if not disabled:
        assert all(r["llm"]["usage"]["input_tokens"] > 0 for r in records)
