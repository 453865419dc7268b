"""What agentlog records for every ``anthropic`` call form, against the real SDK.

Each test drives the real ``anthropic`` client (sync and async) over loopback HTTP to
``tests/fake_llm.py`` inside ``agentlog.testing.capture()``, folds the captured events into
a document, validates it against the schema, and compares the ``llm`` record with what the
server sent and what the SDK returned: exactly one record per ``/messages`` request the
server received, none for ``count_tokens``. Recorded provider traffic
(``shared/fixtures/recorded/anthropic``) is replayed through the same path at the end.

Covers A8: exactly one record per ``/messages`` request the fake server received.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import pytest

import agentlog
from agentlog.testing import capture
from fake_llm import FakeLLM, Reply, anthropic_client, load_cassette, replay
from llm_testing import MODES, STREAMED, aw, closed_port, drain, driver, folded, only_record, opened

MODEL = "claude-sonnet-4-6"
SYSTEM = "Be brief."
MSGS = [{"role": "user", "content": "What is four plus five?"}]
TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
WEATHER = ("get_weather", '{"city": "Paris"}')


# --------------------------------------------------------------------------- helpers


drive = driver(anthropic_client)


async def create(client: Any, stream: bool, **kw: Any) -> Any:
    """``messages.create``: the Message, or the list of stream events."""
    kw = {"model": MODEL, "max_tokens": 256, "messages": MSGS, **kw}
    result = await aw(client.messages.create(stream=stream, **kw))
    if stream:
        assert isinstance(result, (anthropic.Stream, anthropic.AsyncStream))
        return await drain(result)
    return result


def normalised(usage: Any) -> dict[str, Any]:
    """What the record should say for an Anthropic ``usage``: input includes the cache."""
    get = usage.get if isinstance(usage, dict) else lambda k: getattr(usage, k, None)
    read = get("cache_read_input_tokens")
    write = get("cache_creation_input_tokens")
    return {
        "input_tokens": get("input_tokens") + (read or 0) + (write or 0),
        "output_tokens": get("output_tokens"),
        "cache_read_input_tokens": read,
        "cache_write_input_tokens": write,
        "reasoning_output_tokens": None,
    }


class Folded:
    """A Message rebuilt from raw stream events (SDK objects or parsed JSON)."""

    def __init__(self, events: list[Any]) -> None:
        get = _getter(events[0])
        self.text = self.thinking = ""
        self.tool_args: dict[int, str] = {}
        self.usage: dict[str, Any] = {}
        self.stop_reason = self.model = self.id = None
        for e in events:
            kind = get(e, "type")
            if kind == "message_start":
                message = get(e, "message")
                self.model, self.id = get(message, "model"), get(message, "id")
                self._usage(get(message, "usage"), get)
            elif kind == "content_block_delta":
                delta = get(e, "delta")
                dkind = get(delta, "type")
                if dkind == "text_delta":
                    self.text += get(delta, "text")
                elif dkind == "thinking_delta":
                    self.thinking += get(delta, "thinking")
                elif dkind == "input_json_delta":
                    index = get(e, "index")
                    self.tool_args[index] = self.tool_args.get(index, "") + get(
                        delta, "partial_json")
            elif kind == "message_delta":
                self.stop_reason = get(get(e, "delta"), "stop_reason")
                self._usage(get(e, "usage"), get)

    def _usage(self, usage: Any, get: Callable[[Any, str], Any]) -> None:
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                    "cache_creation_input_tokens"):
            value = get(usage, key) if usage is not None else None
            if value is not None:
                self.usage[key] = value


def _getter(sample: Any) -> Callable[[Any, str], Any]:
    if isinstance(sample, dict):
        return lambda obj, key: obj.get(key) if isinstance(obj, dict) else None
    return lambda obj, key: getattr(obj, key, None)


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


# --------------------------------------------------------------------------- messages


@MODES
@STREAMED
def test_messages_create(srv: FakeLLM, async_: bool, stream: bool) -> None:
    """Plain and ``stream=True``; the system prompt comes first in input_data."""

    async def body(client: Any) -> Any:
        return await create(client, stream, system=SYSTEM, service_tier="auto")

    with capture() as cap:
        result = drive(srv, async_, body)
    record = only_record(cap, srv, "/messages")
    if stream:
        got = Folded(result)
        text, usage, model, rid = got.text, got.usage, got.model, got.id
        reason = got.stop_reason
    else:
        text, usage, model, rid = text_of(result), result.usage, result.model, result.id
        reason = result.stop_reason
    assert text == "echo: What is four plus five?"
    assert record["agent_name"] == "anthropic:claude-sonnet-4-6" and record["actions"] == []
    assert record["input_data"] == [{"role": "system", "content": SYSTEM}, *MSGS]
    assert record["output_data"] == {"role": "assistant", "content": text}
    llm = record["llm"]
    assert llm["provider"] == "anthropic" and llm["operation"] == "chat"
    assert (llm["request_model"], llm["response_model"], llm["response_id"]) == (MODEL, model, rid)
    assert llm["params"] == {"max_tokens": 256, "service_tier": "auto"}
    assert llm["streamed"] is stream and llm["incomplete"] is False
    assert llm["finish_reasons"] == [reason] == ["end_turn"]
    assert llm["usage"] == normalised(usage)
    assert llm["server_address"] == srv.url.removeprefix("http://")


@MODES
@STREAMED
def test_tool_use(srv: FakeLLM, async_: bool, stream: bool) -> None:
    """tool_use blocks become tool_calls whose arguments are the input as JSON."""
    srv.script(Reply(tool_calls=[WEATHER]))

    async def body(client: Any) -> Any:
        return await create(client, stream, tools=TOOLS)

    with capture() as cap:
        result = drive(srv, async_, body)
    record = only_record(cap, srv, "/messages")
    if stream:
        assert Folded(result).tool_args == {0: WEATHER[1]}  # sent in pieces, joined
    else:
        (block,) = result.content
        assert (block.id, block.name, block.input) == ("toolu_0", "get_weather", {"city": "Paris"})
    llm = record["llm"]
    (call,) = llm["tool_calls"]
    assert (call["id"], call["name"]) == ("toolu_0", "get_weather")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert record["output_data"] == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert llm["finish_reasons"] == ["tool_use"]
    assert llm["params"] == {"max_tokens": 256, "tools": ["get_weather"]}


LONG_THOUGHT = "Four plus five: count on from four. " * 100  # 3,600 chars > the 2,000 cap


@MODES
@STREAMED
def test_thinking_is_recorded_and_capped_at_verbosity_1(
    srv: FakeLLM, async_: bool, stream: bool
) -> None:
    srv.script(Reply(thinking=LONG_THOUGHT, text="Nine."))

    async def body(client: Any) -> Any:
        return await create(client, stream, thinking={"type": "enabled", "budget_tokens": 1024})

    with capture() as cap:
        result = drive(srv, async_, body)
    record = only_record(cap, srv, "/messages")
    thought = Folded(result).thinking if stream else result.content[0].thinking
    assert thought == LONG_THOUGHT
    output = record["output_data"]
    assert output["content"] == "Nine."
    capped = output["thinking"]
    assert capped["_agentlog"] == "truncated" and capped["length"] == len(LONG_THOUGHT)
    assert LONG_THOUGHT.startswith(capped["preview"]) and len(capped["preview"]) <= 2000
    assert record["llm"]["params"]["thinking"] == "enabled"
    assert record["_lossy"]  # the cut is noted on the record


def test_thinking_is_kept_whole_at_verbosity_2(
    srv: FakeLLM, verbosity: Callable[[int], None]
) -> None:
    verbosity(2)
    srv.script(Reply(thinking=LONG_THOUGHT, text="Nine."))
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with capture() as cap, anthropic_client(srv) as client:
        client.messages.create(model=MODEL, max_tokens=2048, messages=MSGS, thinking=thinking,
                               tools=TOOLS)
    record = only_record(cap, srv, "/messages")
    assert record["output_data"]["thinking"] == LONG_THOUGHT
    assert record["llm"]["params"] == {"max_tokens": 2048, "thinking": thinking, "tools": TOOLS}


@MODES
def test_messages_stream_helper(srv: FakeLLM, async_: bool) -> None:
    """``messages.stream(...)``: text_stream, then get_final_message; one record."""

    async def body(client: Any) -> tuple[str, Any]:
        async with opened(client.messages.stream(
                model=MODEL, max_tokens=256, system=SYSTEM, messages=MSGS)) as s:
            text = "".join(await drain(s.text_stream))
            return text, await aw(s.get_final_message())

    with capture() as cap:
        text, final = drive(srv, async_, body)
    record = only_record(cap, srv, "/messages")
    assert text == text_of(final)
    assert record["output_data"] == {"role": "assistant", "content": text}
    llm = record["llm"]
    assert llm["streamed"] is True and llm["incomplete"] is False
    assert llm["usage"] == normalised(final.usage)
    assert llm["response_model"] == final.model and llm["finish_reasons"] == ["end_turn"]


@MODES
def test_count_tokens_is_not_recorded(srv: FakeLLM, async_: bool) -> None:
    async def body(client: Any) -> Any:
        return await aw(client.messages.count_tokens(model=MODEL, messages=MSGS))

    with capture() as cap:
        counted = drive(srv, async_, body)
    assert counted.input_tokens > 0 and srv.count("/messages/count_tokens") == 1
    assert list(cap) == []
    folded(cap, 0)


CACHED = {"input_tokens": 5, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 20,
          "output_tokens": 7}


@MODES
def test_usage_counts_cached_input(srv: FakeLLM, async_: bool) -> None:
    """input_tokens includes cache reads and writes; each is also kept on its own."""
    srv.script(Reply(raw=json.dumps({
        "id": "msg_cached", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "text", "text": "Nine."}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": CACHED,
    }).encode()))

    async def body(client: Any) -> Any:
        return await create(client, False)

    with capture() as cap:
        message = drive(srv, async_, body)
    record = only_record(cap, srv, "/messages")
    assert message.usage.input_tokens == 5
    assert record["llm"]["usage"] == {
        "input_tokens": 1025, "output_tokens": 7, "cache_read_input_tokens": 1000,
        "cache_write_input_tokens": 20, "reasoning_output_tokens": None,
    }
    assert record["llm"]["cost_usd"] > 0


# --------------------------------------------------------------------------- errors


@MODES
@pytest.mark.parametrize(("status", "error"), [
    (429, anthropic.RateLimitError),
    (400, anthropic.BadRequestError),
    (500, anthropic.InternalServerError),
])
def test_http_errors_reach_the_caller_and_are_logged_once(
    srv: FakeLLM, async_: bool, status: int, error: type[Exception]
) -> None:
    srv.script(Reply(status=status))
    caught: list[BaseException] = []

    async def body(client: Any) -> None:
        try:
            await create(client, False)
        except anthropic.APIStatusError as exc:
            caught.append(exc)
            raise

    with capture() as cap, pytest.raises(error) as info:
        drive(srv, async_, body)
    assert caught[0] is info.value and type(info.value) is error
    assert info.value.status_code == status and srv.count() == 1
    doc, (record,) = folded(cap, 1)
    name = f"anthropic.{error.__name__}"
    assert record["error"] == {"type": name, "error": str(info.value)}
    assert record["llm"]["http_status"] == status and record["llm"]["usage"] is None
    (entry,) = doc["error_log"]
    assert (entry["source"], entry["type"], entry["error"]) == ("llm", name, str(info.value))


@MODES
def test_retries_make_one_record(srv: FakeLLM, async_: bool) -> None:
    srv.script(Reply(status=529), Reply(text="Nine."))

    async def body(client: Any) -> Any:
        return await create(client, False)

    with capture() as cap:
        message = drive(srv, async_, body, max_retries=1)
    assert srv.count() == 2 and text_of(message) == "Nine."
    doc, (record,) = folded(cap, 1)
    assert doc["error_log"] == [] and "error" not in record
    assert record["output_data"]["content"] == "Nine."


@MODES
@pytest.mark.parametrize("fault", ["timeout", "connection"])
def test_transport_errors_are_recorded_with_the_sdk_type(
    srv: FakeLLM, async_: bool, fault: str
) -> None:
    if fault == "timeout":
        srv.script(Reply(delay_s=5))
        kw: dict[str, Any] = {"timeout": 0.2}
        error: type[Exception] = anthropic.APITimeoutError
    else:
        kw = {"base_url": f"http://127.0.0.1:{closed_port()}"}
        error = anthropic.APIConnectionError

    async def body(client: Any) -> Any:
        return await create(client, False)

    with capture() as cap, pytest.raises(error) as info:
        drive(srv, async_, body, **kw)
    assert type(info.value) is error
    # A timed-out request may or may not have reached the server's log when the client
    # gives up; a refused connection never does.
    assert srv.count() <= (1 if fault == "timeout" else 0)
    doc, (record,) = folded(cap, 1)
    assert record["error"]["type"] == f"anthropic.{error.__name__}"
    (entry,) = doc["error_log"]
    assert entry["source"] == "llm" and entry["type"] == f"anthropic.{error.__name__}"
    # A long (chained) traceback is capped but stays text, and keeps its last line.
    assert entry["traceback"].splitlines()[-1] == f"anthropic.{error.__name__}: {info.value}"


# --------------------------------------------------------------------------- context


@MODES
def test_inside_an_agent_the_call_is_an_action(srv: FakeLLM, async_: bool) -> None:
    """Within ``@agent("planner")`` in an explicit iteration: an action, no extra iteration."""

    @agentlog.agent("planner")
    async def planner(client: Any, question: str) -> str:
        message = await create(client, False, messages=[{"role": "user", "content": question}])
        return text_of(message)

    async def body(client: Any) -> str:
        with agentlog.iteration():
            return await planner(client, "What is four plus five?")

    with capture() as cap:
        answer = drive(srv, async_, body)
    doc, (action,) = folded(cap, 1)
    (iteration,) = doc["iterations"]
    assert iteration["auto"] is False
    (ix,) = iteration["interactions"]
    assert ix["agent_name"] == "planner" and ix["output_data"] == answer and "llm" not in ix
    assert ix["actions"] == [action] and action["action_name"] == "llm:anthropic.chat"
    assert action["output_data"] == {"role": "assistant", "content": answer}


@MODES
def test_verbosity_0_records_nothing(
    srv: FakeLLM, async_: bool, verbosity: Callable[[int], None]
) -> None:
    verbosity(0)

    async def body(client: Any) -> tuple[Any, Any]:
        return await create(client, False), await create(client, True)

    with capture() as cap:
        message, events = drive(srv, async_, body)
    assert text_of(message) == Folded(events).text
    assert srv.count() == 2 and list(cap) == []


def test_cost_known_and_unknown_models(srv: FakeLLM) -> None:
    srv.script(Reply(), Reply(model="my-local-model"))
    with capture() as cap, anthropic_client(srv) as client:
        client.messages.create(model=MODEL, max_tokens=64, messages=MSGS)
        client.messages.create(model="my-local-model", max_tokens=64, messages=MSGS)
    _, (known, unknown) = folded(cap, 2)
    assert known["llm"]["cost_usd"] > 0
    assert known["llm"]["pricing_source"].startswith("genai-prices")
    assert unknown["llm"]["usage"]["input_tokens"] > 0
    assert unknown["llm"]["cost_usd"] is None and unknown["llm"]["cost_missing_reason"]


# --------------------------------------------------------------------------- recorded traffic


def _events(body: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE body's ``data:`` lines."""
    return [json.loads(line[5:]) for line in body.splitlines() if line.startswith(b"data:")]


def _request(interaction: dict[str, Any]) -> dict[str, Any]:
    """The recorded request's arguments (the model aside: old names warn in the SDK)."""
    sent = interaction["request"]["body"]
    keep = ("max_tokens", "messages", "system", "stream", "thinking", "tools")
    return {"model": MODEL, **{k: v for k, v in sent.items() if k in keep}}


def test_replay_non_stream(srv: FakeLLM) -> None:
    (rec,) = load_cassette("anthropic/test_sync_messages_version_latest.yaml")
    sent = json.loads(rec["response"]["body"])
    srv.script(replay(rec))
    with capture() as cap, anthropic_client(srv) as client:
        client.messages.create(**_request(rec))
    record = only_record(cap, srv, "/messages")
    system = rec["request"]["body"]["system"]
    assert record["input_data"] == [{"role": "system", "content": system},
                                    *rec["request"]["body"]["messages"]]
    assert record["output_data"]["content"] == sent["content"][0]["text"]
    assert record["llm"]["response_model"] == sent["model"]
    assert record["llm"]["usage"] == normalised(sent["usage"])


@pytest.mark.parametrize(("path", "index"), [
    ("anthropic/test_sync_messages_stream_version_latest.yaml", 0),
    ("anthropic/test_anthropic_thinking_streaming_legacy.yaml", 0),
    ("anthropic/test_anthropic_tools_streaming_legacy.yaml", 0),
    ("anthropic/test_anthropic_prompt_caching_stream_legacy.yaml", 0),  # cache write
    ("anthropic/test_anthropic_prompt_caching_stream_legacy.yaml", 1),  # cache read
])
def test_replay_stream(srv: FakeLLM, path: str, index: int) -> None:
    rec = load_cassette(path)[index]
    want = Folded(_events(rec["response"]["body"]))
    srv.script(replay(rec))
    with capture() as cap, anthropic_client(srv) as client:
        for _ in client.messages.create(**_request(rec)):
            pass
    record = only_record(cap, srv, "/messages")
    llm = record["llm"]
    assert llm["response_model"] == want.model and llm["response_id"] == want.id
    assert llm["usage"] == normalised(want.usage)
    assert llm["finish_reasons"] == [want.stop_reason]
    output = record["output_data"]
    assert output["content"] == (want.text or None)
    if want.thinking:
        assert output["thinking"] == want.thinking
    assert [json.loads(c["arguments"]) for c in llm.get("tool_calls", ())] == [
        json.loads(args) for _, args in sorted(want.tool_args.items())]
