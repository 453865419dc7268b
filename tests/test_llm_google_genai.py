"""What agentlog records for every ``google-genai`` call form, against the real SDK.

Each test drives the real ``google.genai.Client`` (``client.models`` and ``client.aio``)
over loopback HTTP to ``tests/fake_google.py`` inside ``agentlog.testing.capture()``, folds
the captured events into a document, validates it against the schema, and compares the
``llm`` record with what the server sent and what the SDK returned: exactly one record per
request the server received (chats and automatic function calling included). Recorded
Gemini API traffic (``shared/fixtures/recorded/google``) is replayed at the end.

Covers A3: sync and async streams stay the SDK's own generators, read with ``for`` /
``async for``, and make exactly one record each.
Covers A4: a stream closed early, or dropped and collected, is one incomplete record.
Covers A5: a non-streamed response is the SDK's own ``GenerateContentResponse``.
Covers A7: the SDK imported before agentlog is recorded (subprocess).
Covers A8: a chat turn over ``models`` is one record, not two; records equal requests.
"""

from __future__ import annotations

import asyncio
import gc
import json
import types as pytypes
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.genai import errors, types

import agentlog
from agentlog.testing import capture
from fake_google import GOOGLE_KEY, FakeGoogle, google_client
from fake_llm import Reply, load_cassette, replay
from helpers import Result
from llm_testing import (
    MODES,
    STREAMED,
    aw,
    cut_record,
    drain,
    first_then_close,
    folded,
    host_run,
    only_record,
    usage,
)

# google-genai's async client uses aiohttp when it is installed; aiohttp warns about the
# SDK's subclass of its session (the SDK's warning, not ours).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

MODEL = "gemini-2.5-flash"
QUESTION = "What is four plus five?"
WEATHER = ("get_weather", '{"city": "Paris"}')
TIME = ("get_time", '{"city": "Oslo"}')
TOOLS = [types.Tool(function_declarations=[
    types.FunctionDeclaration(name=name, description=f"{name} for a place",
                              parameters_json_schema={"type": "object"})
    for name in ("get_weather", "get_time")])]


@pytest.fixture
def srv() -> Iterator[FakeGoogle]:
    with FakeGoogle() as server:
        yield server
    assert not server.errors


def drive(srv: FakeGoogle, async_: bool, body: Callable[[Any], Awaitable[Any]],
          **kw: Any) -> Any:
    """Run ``body(side)`` where ``side`` is the client (sync) or ``client.aio``; both are
    closed afterwards. Bodies are written once, with ``aw``/``drain``, for both."""

    async def main() -> Any:
        client = google_client(srv, **kw)
        try:
            return await body(client.aio if async_ else client)
        finally:
            client.close()
            await client.aio.aclose()

    return asyncio.run(main())


def usage_of(u: Any) -> dict[str, Any]:
    """What the record should say for an SDK ``usage_metadata``."""
    thoughts = u.thoughts_token_count
    return usage(u.prompt_token_count, (u.candidates_token_count or 0) + (thoughts or 0),
                 cache_read=u.cached_content_token_count, reasoning=thoughts)


def text_of(chunks: list[Any]) -> str:
    return "".join(c.text or "" for c in chunks)


# --------------------------------------------------------------------------- generate


@MODES
def test_generate_content(srv: FakeGoogle, async_: bool) -> None:
    """A plain call: its own interaction; the SDK's own response object comes back."""
    config = types.GenerateContentConfig(system_instruction="Be brief.", temperature=0.3,
                                         max_output_tokens=50, response_mime_type="text/plain")

    async def body(side: Any) -> Any:
        return await aw(side.models.generate_content(model=MODEL, contents=QUESTION,
                                                     config=config))

    with capture() as cap:
        r = drive(srv, async_, body)
    assert type(r) is types.GenerateContentResponse
    record = only_record(cap, srv, ":generateContent")
    assert record["agent_name"] == f"google:{MODEL}" and record["actions"] == []
    assert record["input_data"] == [{"role": "system", "content": "Be brief."}, QUESTION]
    assert record["output_data"] == {"role": "assistant", "content": r.text}
    llm = record["llm"]
    assert llm["provider"] == "google" and llm["operation"] == "generate_content"
    assert (llm["request_model"], llm["response_model"]) == (MODEL, r.model_version)
    assert llm["params"] == {"temperature": 0.3, "max_output_tokens": 50,
                             "response_mime_type": "text/plain"}
    assert llm["streamed"] is False and llm["incomplete"] is False
    assert llm["finish_reasons"] == ["STOP"]
    assert llm["usage"] == usage_of(r.usage_metadata) and llm["usage"]["input_tokens"] == 7
    assert llm["response_id"] == r.response_id
    assert llm["server_address"] == srv.url.removeprefix("http://")
    assert llm["cost_usd"] > 0 and llm["pricing_source"].startswith("genai-prices")


@MODES
def test_generate_content_stream(srv: FakeGoogle, async_: bool) -> None:
    """A stream is the SDK's own generator, recorded once at its end, with ttft and the
    last chunk's usage (every chunk carries a running count)."""

    async def body(side: Any) -> list[Any]:
        stream = await aw(side.models.generate_content_stream(model=MODEL, contents=QUESTION))
        kind = pytypes.AsyncGeneratorType if async_ else pytypes.GeneratorType
        assert isinstance(stream, kind)
        return await drain(stream)

    with capture() as cap:
        chunks = drive(srv, async_, body)
    assert len(chunks) == 6 and all(c.usage_metadata for c in chunks)
    assert chunks[0].usage_metadata.candidates_token_count != (
        chunks[-1].usage_metadata.candidates_token_count)
    record = only_record(cap, srv, ":streamGenerateContent")
    llm = record["llm"]
    assert record["output_data"] == {"role": "assistant", "content": text_of(chunks)}
    assert llm["streamed"] is True and llm["incomplete"] is False
    assert llm["response_model"] == MODEL and llm["response_id"] == chunks[0].response_id
    assert llm["finish_reasons"] == ["STOP"]
    assert llm["usage"] == usage_of(chunks[-1].usage_metadata)
    assert srv.requests[0].query == "alt=sse"


@MODES
@STREAMED
def test_tool_calls(srv: FakeGoogle, async_: bool, stream: bool) -> None:
    """Function calls (arguments as JSON text), the offered tools' names in params."""
    srv.script(Reply(tool_calls=[WEATHER, TIME]))
    config = types.GenerateContentConfig(
        tools=TOOLS, automatic_function_calling=types.AutomaticFunctionCallingConfig(
            disable=True))

    async def body(side: Any) -> Any:
        if stream:
            return await drain(await aw(side.models.generate_content_stream(
                model=MODEL, contents=QUESTION, config=config)))
        return await aw(side.models.generate_content(model=MODEL, contents=QUESTION,
                                                     config=config))

    with capture() as cap:
        result = drive(srv, async_, body)
    sdk_calls = result[-1].function_calls if stream else result.function_calls
    assert [(c.name, c.args) for c in sdk_calls] == [
        (name, json.loads(args)) for name, args in (WEATHER, TIME)]
    record = only_record(cap, srv)
    expected = [{"id": None, "name": name, "arguments": json.dumps(json.loads(args))}
                for name, args in (WEATHER, TIME)]
    llm = record["llm"]
    assert llm["tool_calls"] == expected
    assert record["output_data"] == {"role": "assistant", "content": None,
                                     "tool_calls": expected}
    assert llm["params"] == {"tools": ["get_weather", "get_time"]}
    assert llm["finish_reasons"] == ["STOP"]


def test_built_in_and_python_function_tools_are_named(srv: FakeGoogle) -> None:
    """Tools given as a Python function or a built-in tool show by name or kind."""

    def get_weather(city: str) -> str:
        """Weather for a city."""
        return "rainy"

    config = types.GenerateContentConfig(
        tools=[get_weather, types.Tool(google_search=types.GoogleSearch())],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    with capture() as cap, google_client(srv) as client:
        client.models.generate_content(model=MODEL, contents=QUESTION, config=config)
    assert only_record(cap, srv)["llm"]["params"]["tools"] == ["get_weather", "google_search"]


@MODES
def test_automatic_function_calling_records_each_request(srv: FakeGoogle, async_: bool) -> None:
    """The SDK calls the model, runs the tool, calls again: two records, and the tool
    runs outside any recorded call, so an LLM call it makes is recorded too."""
    srv.script(Reply(tool_calls=[WEATHER]), Reply(text="from the tool"),
               Reply(text="It is rainy."))
    inner: list[str] = []

    def get_weather(city: str) -> str:
        """Weather for a city."""
        with google_client(srv) as client:
            inner.append(client.models.generate_content(model=MODEL, contents="inner").text)
        return "rainy"

    config = types.GenerateContentConfig(tools=[get_weather])

    async def body(side: Any) -> Any:
        return await aw(side.models.generate_content(model=MODEL, contents=QUESTION,
                                                     config=config))

    with capture() as cap:
        r = drive(srv, async_, body)
    assert r.text == "It is rainy." and inner == ["from the tool"]
    assert srv.count() == 3
    doc, (first, nested, final) = folded(cap, 3)
    assert doc["error_log"] == []
    assert first["llm"]["tool_calls"][0]["name"] == "get_weather"
    assert nested["input_data"] == "inner"
    assert nested["output_data"]["content"] == "from the tool"
    # The last request carried the question, the function call and its result.
    assert final["output_data"]["content"] == "It is rainy."
    assert len(final["input_data"]) == 3


@MODES
@STREAMED
def test_chat_turn_is_one_record(srv: FakeGoogle, async_: bool, stream: bool) -> None:
    """``chats.create(...).send_message[_stream]`` runs over ``models``: one record per
    turn, never two; the second turn's input holds the history."""

    async def body(side: Any) -> list[str]:
        chat = side.chats.create(model=MODEL)
        answers = []
        for question in ("first question", "second question"):
            if stream:
                chunks = await drain(await aw(chat.send_message_stream(question)))
                answers.append(text_of(chunks))
            else:
                answers.append((await aw(chat.send_message(question))).text)
        return answers

    with capture() as cap:
        answers = drive(srv, async_, body)
    assert answers == ["echo: first question", "echo: second question"]
    assert srv.count() == 2
    doc, records = folded(cap, 2)
    assert doc["error_log"] == []
    assert [r["output_data"]["content"] for r in records] == answers
    assert [r["llm"]["streamed"] for r in records] == [stream, stream]
    # Exactly what was sent: the history (a streamed turn keeps one entry per chunk).
    sent = srv.requests[1].body["contents"]
    assert len(records[0]["input_data"]) == 1 and len(records[1]["input_data"]) == len(sent)
    assert [c["role"] for c in records[1]["input_data"]] == [c["role"] for c in sent]


def test_thinking_counts_as_reasoning_output(srv: FakeGoogle) -> None:
    srv.script(Reply(thinking="Four and five make nine.", text="Nine."))
    with capture() as cap, google_client(srv) as client:
        r = client.models.generate_content(model=MODEL, contents=QUESTION)
    record = only_record(cap, srv)
    assert record["output_data"] == {"role": "assistant", "content": "Nine.",
                                     "thinking": "Four and five make nine."}
    usage = record["llm"]["usage"]
    assert usage["reasoning_output_tokens"] == r.usage_metadata.thoughts_token_count == 5
    assert usage["output_tokens"] == 1 + 5


def test_cached_tokens_are_part_of_the_input(srv: FakeGoogle) -> None:
    srv.cached_tokens = 3
    with capture() as cap, google_client(srv) as client:
        r = client.models.generate_content(model=MODEL, contents=QUESTION)
    usage = only_record(cap, srv)["llm"]["usage"]
    assert usage["cache_read_input_tokens"] == r.usage_metadata.cached_content_token_count == 3
    assert usage["input_tokens"] == r.usage_metadata.prompt_token_count


@MODES
def test_embed_content_records_counts_not_vectors(srv: FakeGoogle, async_: bool) -> None:
    async def body(side: Any) -> Any:
        return await aw(side.models.embed_content(
            model="gemini-embedding-001", contents=["alpha beta", "gamma"],
            config=types.EmbedContentConfig(output_dimensionality=4)))

    with capture() as cap:
        r = drive(srv, async_, body)
    assert len(r.embeddings) == 2
    record = only_record(cap, srv, ":batchEmbedContents")
    assert record["output_data"] == {"embeddings": 2, "dimensions": 4}
    assert record["input_data"] == ["alpha beta", "gamma"]
    llm = record["llm"]
    assert llm["operation"] == "embeddings" and llm["params"] == {"output_dimensionality": 4}
    assert llm["usage"] is None and "embeddings" in llm["usage_missing_reason"]
    assert str(r.embeddings[0].values[0]) not in json.dumps(record)


# --------------------------------------------------------------------------- streams


@MODES
def test_stream_closed_early_is_one_incomplete_record(srv: FakeGoogle, async_: bool) -> None:
    async def body(side: Any) -> Any:
        return await first_then_close(await aw(side.models.generate_content_stream(
            model=MODEL, contents=QUESTION)))

    with capture() as cap:
        first = drive(srv, async_, body)
    record = cut_record(cap, srv)
    # The SDK's own generator was closed; it drops the one it read from, ours.
    assert record["llm"]["incomplete_reason"].endswith("before its end")
    assert record["output_data"]["content"] == first.text


def test_stream_dropped_is_recorded_as_incomplete_after_gc(srv: FakeGoogle) -> None:
    with capture() as cap, google_client(srv) as client:
        stream = client.models.generate_content_stream(model=MODEL, contents=QUESTION)
        next(stream)
        del stream
        gc.collect()
        record = cut_record(cap, srv)
    assert "before its end" in record["llm"]["incomplete_reason"]


def test_stream_cut_by_the_server_is_an_error(srv: FakeGoogle) -> None:
    srv.script(Reply(text="one two three four", drop_after=2))
    with capture() as cap, google_client(srv) as client, pytest.raises(Exception) as info:
        for _ in client.models.generate_content_stream(model=MODEL, contents=QUESTION):
            pass
    record = cut_record(cap, srv)
    assert record["error"]["type"].endswith(type(info.value).__name__)
    assert record["llm"]["incomplete_reason"] == "error"
    assert record["output_data"]["content"] == "one two"


# --------------------------------------------------------------------------- errors


@MODES
@STREAMED
@pytest.mark.parametrize(("status", "error"), [(400, errors.ClientError),
                                                (500, errors.ServerError)])
def test_http_errors_reach_the_caller_and_are_logged_once(
    srv: FakeGoogle, async_: bool, stream: bool, status: int, error: type[Exception]
) -> None:
    srv.script(Reply(status=status))
    caught: list[BaseException] = []

    async def body(side: Any) -> None:
        try:
            if stream:
                await drain(await aw(side.models.generate_content_stream(
                    model=MODEL, contents=QUESTION)))
            else:
                await aw(side.models.generate_content(model=MODEL, contents=QUESTION))
        except errors.APIError as exc:
            caught.append(exc)
            raise

    with capture() as cap, pytest.raises(error) as info:
        drive(srv, async_, body)
    assert caught[0] is info.value and type(info.value) is error  # the very same object
    assert srv.count() == 1
    doc, (record,) = folded(cap, 1)
    name = f"google.genai.errors.{error.__name__}"
    assert record["error"]["type"] == name
    llm = record["llm"]
    assert llm["http_status"] == status and llm["incomplete"] is False
    assert llm["usage"] is None and llm["usage_missing_reason"]
    (entry,) = doc["error_log"]
    assert entry["source"] == "llm" and entry["type"] == name


def test_retries_make_one_record(srv: FakeGoogle) -> None:
    srv.script(Reply(status=503), Reply(text="nine"))
    retry = types.HttpRetryOptions(attempts=2, initial_delay=0.01, max_delay=0.01)
    with capture() as cap, google_client(srv, http_options={"retry_options": retry}) as client:
        r = client.models.generate_content(model=MODEL, contents=QUESTION)
    assert r.text == "nine" and srv.count() == 2
    doc, (record,) = folded(cap, 1)
    assert doc["error_log"] == [] and record["output_data"]["content"] == "nine"


# --------------------------------------------------------------------------- context


def test_vertex_mode_is_provider_google_vertex(srv: FakeGoogle) -> None:
    with capture() as cap, google_client(srv, vertex=True) as client:
        client.models.generate_content(model=MODEL, contents=QUESTION)
    record = only_record(cap, srv)
    assert "/publishers/google/models/" in srv.requests[0].path
    llm = record["llm"]
    assert llm["provider"] == "google-vertex" and llm["request_model"] == MODEL
    assert llm["cost_usd"] > 0


def test_model_names_are_normalised_for_pricing(srv: FakeGoogle) -> None:
    srv.script(Reply(model="gemini-2.5-flash"), Reply(model="my-tuned-model"))
    with capture() as cap, google_client(srv) as client:
        client.models.generate_content(model=f"models/{MODEL}", contents=QUESTION)
        client.models.generate_content(model="my-tuned-model", contents=QUESTION)
    _, (known, unknown) = folded(cap, 2)
    assert known["llm"]["request_model"] == MODEL and known["llm"]["cost_usd"] > 0
    assert unknown["llm"]["cost_usd"] is None and unknown["llm"]["cost_missing_reason"]


@MODES
def test_inside_an_agent_the_call_is_an_action(srv: FakeGoogle, async_: bool) -> None:
    @agentlog.agent("planner")
    async def planner(side: Any) -> str:
        r = await aw(side.models.generate_content(model=MODEL, contents=QUESTION))
        return r.text  # type: ignore[no-any-return]

    async def body(side: Any) -> str:
        with agentlog.iteration():
            return await planner(side)

    with capture() as cap:
        answer = drive(srv, async_, body)
    doc, (action,) = folded(cap, 1)
    (ix,) = doc["iterations"][0]["interactions"]
    assert ix["agent_name"] == "planner" and ix["output_data"] == answer
    assert ix["actions"] == [action]
    assert action["action_name"] == "llm:google.generate_content"


def test_no_key_in_the_document(srv: FakeGoogle, verbosity: Callable[[int], None]) -> None:
    """The API key, in the client and in per-request headers, never reaches the record,
    even with full params at verbosity 2."""
    verbosity(2)
    config = types.GenerateContentConfig(
        temperature=0.1, http_options=types.HttpOptions(headers={"x-goog-api-key": GOOGLE_KEY}))
    with capture() as cap, google_client(srv) as client:
        client.models.generate_content(model=MODEL, contents=QUESTION, config=config)
    assert srv.requests[0].headers["x-goog-api-key"] == GOOGLE_KEY
    record = only_record(cap, srv)
    assert record["llm"]["params"] == {"temperature": 0.1}
    assert GOOGLE_KEY not in json.dumps(cap.document())


@MODES
def test_verbosity_0_records_nothing(
    srv: FakeGoogle, async_: bool, verbosity: Callable[[int], None]
) -> None:
    verbosity(0)

    async def body(side: Any) -> tuple[Any, Any]:
        plain = await aw(side.models.generate_content(model=MODEL, contents=QUESTION))
        chunks = await drain(await aw(side.models.generate_content_stream(
            model=MODEL, contents=QUESTION)))
        return plain, chunks

    with capture() as cap:
        plain, chunks = drive(srv, async_, body)
    assert plain.text == text_of(chunks)
    assert srv.count() == 2 and list(cap) == []


# --------------------------------------------------------------------------- processes

SDK_FIRST = """\
import sys
sys.path.insert(0, {tests!r})
from google import genai
from fake_google import FakeGoogle, google_client
import agentlog
import json

with FakeGoogle() as srv, google_client(srv) as client:
    client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    for _ in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"):
        pass
    print("RESULT", json.dumps({{"requests": srv.count(),
        "patched": hasattr(genai.models.Models._generate_content, "__agentlog_patched__")}}))
"""


@pytest.mark.parametrize("disable", ["", "google", "google.genai"])
def test_sdk_imported_first_and_disable(run: Callable[..., Result], disable: str) -> None:
    """The SDK imported before agentlog is still recorded; ``AGENTLOG_DISABLE`` turns the
    adapter off (no patch, no record) by the SDK's name or its first part."""
    tests = str(Path(__file__).parent)
    line, records = host_run(run, SDK_FIRST.format(tests=tests), AGENTLOG_DISABLE=disable)
    found = json.loads(line[7:])
    assert found["requests"] == 2
    assert found["patched"] is (not disable)
    assert len(records) == (0 if disable else 2)


# --------------------------------------------------------------------------- recorded traffic


def _recorded(rec: dict[str, Any]) -> tuple[str, Any, Any]:
    sent = rec["request"]["body"]
    system = sent.get("systemInstruction")
    config = types.GenerateContentConfig(
        system_instruction=types.Content(**system) if system else None,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    model = rec["request"]["uri"].rpartition("/models/")[2].partition(":")[0]
    return model, sent["contents"], config


def test_replay_generate_content(srv: FakeGoogle) -> None:
    (rec,) = load_cassette("google/test_google_model.yaml")
    sent = json.loads(rec["response"]["body"])
    srv.script(replay(rec))
    model, contents, config = _recorded(rec)
    with capture() as cap, google_client(srv) as client:
        r = client.models.generate_content(model=model, contents=contents, config=config)
    record = only_record(cap, srv)
    llm = record["llm"]
    assert record["output_data"]["content"] == sent["candidates"][0]["content"]["parts"][0]["text"]
    assert llm["response_id"] == sent["responseId"] and llm["response_model"] == model
    meta = sent["usageMetadata"]
    assert llm["usage"] == usage_of(r.usage_metadata)
    assert llm["usage"]["output_tokens"] == meta["candidatesTokenCount"] + meta[
        "thoughtsTokenCount"]
    assert llm["usage"]["reasoning_output_tokens"] == meta["thoughtsTokenCount"]


@pytest.mark.parametrize(("path", "index"), [
    ("google/test_google_model_stream.yaml", 0),
    ("google/test_google_model_iter_stream.yaml", 0),  # a function call
    ("google/test_google_stream_usage_is_live_mid_stream.yaml", 0),
    ("google/test_google_model_thinking_part_iter.yaml", 0),
])
def test_replay_stream(srv: FakeGoogle, path: str, index: int) -> None:
    rec = load_cassette(path)[index]
    srv.script(replay(rec))
    model, contents, config = _recorded(rec)
    with capture() as cap, google_client(srv) as client:
        chunks = list(client.models.generate_content_stream(model=model, contents=contents,
                                                            config=config))
    record = only_record(cap, srv)
    llm = record["llm"]
    last_usage = next(c.usage_metadata for c in reversed(chunks) if c.usage_metadata)
    assert llm["usage"] == usage_of(last_usage)
    texts = [p for c in chunks for p in c.candidates[0].content.parts or ()]
    answer = "".join(p.text for p in texts if p.text and not p.thought) or None
    assert record["output_data"]["content"] == answer
    thoughts = "".join(p.text for p in texts if p.text and p.thought)
    assert record["output_data"].get("thinking", "") == thoughts
    calls = [p.function_call.name for p in texts if p.function_call]
    assert [c["name"] for c in llm.get("tool_calls", ())] == calls
    assert llm["finish_reasons"] == [c.candidates[0].finish_reason.value for c in chunks
                                     if c.candidates[0].finish_reason][-1:]


def test_replay_tool_round_trip(srv: FakeGoogle) -> None:
    recs = load_cassette("google/test_instrument_google_genai.yaml")
    srv.script(*(replay(r) for r in recs))
    with capture() as cap, google_client(srv) as client:
        for rec in recs:
            model, contents, config = _recorded(rec)
            client.models.generate_content(model=model, contents=contents, config=config)
    assert srv.count() == 2
    _, (call, answer) = folded(cap, 2)
    assert call["llm"]["tool_calls"] == [{"id": None, "name": "get_current_weather",
                                          "arguments": '{"location": "Boston, MA"}'}]
    assert answer["output_data"]["content"] == "It is rainy in Boston, MA.\n"
