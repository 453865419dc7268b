"""What agentlog records for every ``openai`` call form, against the real SDK.

Each test drives the real ``openai`` client (sync and async) over loopback HTTP to
``tests/fake_llm.py`` inside ``agentlog.testing.capture()``, folds the captured events into
a document, validates it against the schema, and compares the ``llm`` record with what the
server sent and what the SDK returned. Exactly one record per LLM request the server
received, none for other requests. Recorded provider traffic (``shared/fixtures/recorded``)
is replayed through the same path at the end.

Covers A8: exactly one record per LLM request the fake server received, none for others.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
from pydantic import BaseModel

import agentlog
from agentlog.integrations import _stainless
from agentlog.testing import capture
from fake_llm import FakeLLM, Reply, load_cassette, openai_client, replay
from helpers import validate_document
from llm_testing import MODES, STREAMED, aw, closed_port, drain, driver, folded, only_record, opened

MODEL = "gpt-4o-mini"
MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is four plus five?"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} for a place",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    for name in ("get_weather", "get_time")
]
WEATHER = ("get_weather", '{"city": "Paris"}')
TIME = ("get_time", '{"city": "Oslo"}')


# --------------------------------------------------------------------------- helpers


drive = driver(openai_client)


def azure_client(srv: FakeLLM, async_: bool = False, **kw: Any) -> Any:
    kw = {"azure_endpoint": srv.url, "api_version": "2024-06-01", "api_key": "azure-key-0000",
          "max_retries": 0, **kw}
    return openai.AsyncAzureOpenAI(**kw) if async_ else openai.AzureOpenAI(**kw)


def address(srv: FakeLLM) -> str:
    return srv.url.removeprefix("http://")


def chat_usage(u: Any) -> dict[str, Any]:
    """What the record should say for a Chat Completions ``usage`` from the SDK."""
    return {
        "input_tokens": u.prompt_tokens,
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.prompt_tokens_details.cached_tokens,
        "cache_write_input_tokens": None,
        "reasoning_output_tokens": u.completion_tokens_details.reasoning_tokens,
    }


def responses_usage(u: Any) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.input_tokens_details.cached_tokens,
        "cache_write_input_tokens": None,
        "reasoning_output_tokens": u.output_tokens_details.reasoning_tokens,
    }


def streamed_text(chunks: list[Any], index: int = 0) -> str:
    return "".join(
        c.choices[0].delta.content or ""
        for c in chunks
        if c.choices and c.choices[0].index == index
    )


# --------------------------------------------------------------------------- chat


@MODES
def test_chat_plain(srv: FakeLLM, async_: bool) -> None:
    """A plain call: an interaction of its own, in an automatic iteration."""

    async def body(client: Any) -> Any:
        return await aw(client.chat.completions.create(
            model=MODEL, messages=MSGS, temperature=0.3, max_tokens=50, user="u-1"))

    with capture() as cap:
        r = drive(srv, async_, body)
    record = only_record(cap, srv)
    (iteration,) = validate_document(cap.document())["iterations"]
    assert iteration["auto"] is True and iteration["interactions"] == [record]
    assert record["agent_name"] == "openai:gpt-4o-mini" and record["actions"] == []
    assert record["input_data"] == MSGS
    assert record["output_data"] == {"role": "assistant", "content": r.choices[0].message.content}
    llm = record["llm"]
    assert llm["provider"] == "openai" and llm["operation"] == "chat"
    assert (llm["request_model"], llm["response_model"]) == (MODEL, r.model)
    assert llm["params"] == {"temperature": 0.3, "max_tokens": 50, "user": "u-1"}
    assert llm["streamed"] is False and llm["incomplete"] is False
    assert llm["finish_reasons"] == ["stop"]
    assert llm["usage"] == chat_usage(r.usage)
    assert llm["response_id"] == r.id
    assert llm["server_address"] == address(srv)


@MODES
@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "usage"])
def test_chat_stream(srv: FakeLLM, async_: bool, include_usage: bool) -> None:
    """A stream is recorded at its end; usage only when the caller asked the provider for it."""
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}

    async def body(client: Any) -> list[Any]:
        stream = await aw(client.chat.completions.create(
            model=MODEL, messages=MSGS, stream=True, **extra))
        assert isinstance(stream, openai.AsyncStream if async_ else openai.Stream)
        return await drain(stream)

    with capture() as cap:
        chunks = drive(srv, async_, body)
    record = only_record(cap, srv)
    llm = record["llm"]
    assert record["output_data"] == {"role": "assistant", "content": streamed_text(chunks)}
    assert llm["streamed"] is True and llm["incomplete"] is False
    assert llm["response_model"] == chunks[0].model and llm["response_id"] == chunks[0].id
    assert llm["finish_reasons"] == ["stop"]
    assert llm["params"] == extra
    if include_usage:
        assert chunks[-1].usage is not None
        assert llm["usage"] == chat_usage(chunks[-1].usage)
        assert "usage_missing_reason" not in llm
    else:
        assert all(c.usage is None for c in chunks)
        assert llm["usage"] is None
        assert "include_usage" in llm["usage_missing_reason"]
    # The request went out as the caller wrote it: nothing injected.
    assert srv.requests[0].body.get("stream_options") == extra.get("stream_options")


@MODES
@STREAMED
def test_chat_parallel_tool_calls(srv: FakeLLM, async_: bool, stream: bool) -> None:
    """Tool calls (arguments joined from the stream's deltas), their names in params."""
    srv.script(Reply(tool_calls=[WEATHER, TIME]))

    async def body(client: Any) -> Any:
        result = await aw(client.chat.completions.create(
            model=MODEL, messages=MSGS, tools=TOOLS, parallel_tool_calls=True, stream=stream))
        return await drain(result) if stream else result

    with capture() as cap:
        result = drive(srv, async_, body)
    record = only_record(cap, srv)
    expected = [{"id": f"call_{k}", "name": name, "arguments": args}
                for k, (name, args) in enumerate([WEATHER, TIME])]
    if not stream:
        sdk = result.choices[0].message.tool_calls
        assert [(c.id, c.function.name, c.function.arguments) for c in sdk] == [
            (c["id"], c["name"], c["arguments"]) for c in expected]
    else:  # the server really sent the arguments in pieces
        deltas = [tc for c in result for tc in c.choices[0].delta.tool_calls or ()]
        pieces = [tc.function.arguments for tc in deltas if tc.function and tc.function.arguments]
        assert len(pieces) == 4 and "".join(pieces) == WEATHER[1] + TIME[1]
    llm = record["llm"]
    assert llm["tool_calls"] == expected
    assert record["output_data"] == {"role": "assistant", "content": None, "tool_calls": expected}
    assert llm["finish_reasons"] == ["tool_calls"]
    assert llm["params"] == {"tools": ["get_weather", "get_time"], "parallel_tool_calls": True}


@MODES
@STREAMED
def test_chat_n_choices(srv: FakeLLM, async_: bool, stream: bool) -> None:
    """n > 1: one output per choice and one finish reason per choice."""
    srv.script(Reply(text="nine it is"))

    async def body(client: Any) -> Any:
        result = await aw(client.chat.completions.create(
            model=MODEL, messages=MSGS, n=3, stream=stream))
        return await drain(result) if stream else result

    with capture() as cap:
        result = drive(srv, async_, body)
    record = only_record(cap, srv)
    if stream:
        texts = [streamed_text(result, i) for i in range(3)]
    else:
        texts = [c.message.content for c in result.choices]
    assert texts == ["nine it is"] * 3
    assert record["output_data"] == [{"role": "assistant", "content": t} for t in texts]
    assert record["llm"]["finish_reasons"] == ["stop"] * 3
    assert record["llm"]["params"]["n"] == 3


def test_chat_n_choices_keep_their_own_finish_reasons(srv: FakeLLM) -> None:
    """Each choice's finish reason is kept in choice order, not only the first."""
    choices = [
        {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
        for i, (text, reason) in enumerate([("nine", "stop"), ("nine and", "length")])
    ]
    srv.script(Reply(raw=json.dumps({
        "id": "chatcmpl-n", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": choices,
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }).encode()))
    with capture() as cap, openai_client(srv) as client:
        r = client.chat.completions.create(model=MODEL, messages=MSGS, n=2)
    record = only_record(cap, srv)
    assert [c.finish_reason for c in r.choices] == ["stop", "length"]
    assert record["llm"]["finish_reasons"] == ["stop", "length"]
    assert [o["content"] for o in record["output_data"]] == ["nine", "nine and"]
    assert record["llm"]["usage"]["input_tokens"] == 7
    assert record["llm"]["usage"]["output_tokens"] == 3


@MODES
def test_chat_stream_helper(srv: FakeLLM, async_: bool) -> None:
    """``chat.completions.stream(...)``: one streamed record, equal to the final completion."""

    async def body(client: Any) -> Any:
        async with opened(client.chat.completions.stream(
                model=MODEL, messages=MSGS, stream_options={"include_usage": True})) as s:
            return await aw(s.get_final_completion())

    with capture() as cap:
        final = drive(srv, async_, body)
    record = only_record(cap, srv)
    llm = record["llm"]
    assert llm["streamed"] is True and llm["incomplete"] is False
    assert record["output_data"] == {"role": "assistant",
                                     "content": final.choices[0].message.content}
    assert llm["usage"] == chat_usage(final.usage)
    assert llm["response_model"] == final.model and llm["finish_reasons"] == ["stop"]


class Answer(BaseModel):
    city: str
    population: int


@MODES
def test_chat_parse_with_a_pydantic_model(srv: FakeLLM, async_: bool) -> None:
    """``chat.completions.parse``: the JSON text is recorded, the format named in params."""

    async def body(client: Any) -> Any:
        return await aw(client.chat.completions.parse(
            model=MODEL, messages=MSGS, response_format=Answer))

    with capture() as cap:
        r = drive(srv, async_, body)
    record = only_record(cap, srv)
    message = r.choices[0].message
    assert isinstance(message.parsed, Answer)
    assert record["output_data"] == {"role": "assistant", "content": message.content}
    assert json.loads(record["output_data"]["content"]) == message.parsed.model_dump()
    assert record["llm"]["params"] == {"response_format": "json_schema"}
    assert record["llm"]["usage"] == chat_usage(r.usage)


# --------------------------------------------------------------------------- responses


@MODES
@pytest.mark.parametrize("form", ["create", "stream=True", "stream()"])
def test_responses(srv: FakeLLM, async_: bool, form: str) -> None:
    """The Responses API in its three forms; ``instructions`` become a system message."""
    kw: dict[str, Any] = {"model": MODEL, "input": "What is four plus five?",
                          "instructions": "Be brief.", "max_output_tokens": 40}

    async def body(client: Any) -> Any:
        if form == "create":
            return await aw(client.responses.create(**kw))
        if form == "stream=True":
            events = await drain(await aw(client.responses.create(stream=True, **kw)))
            return next(e.response for e in events if e.type == "response.completed")
        async with opened(client.responses.stream(**kw)) as s:
            return await aw(s.get_final_response())

    with capture() as cap:
        response = drive(srv, async_, body)
    record = only_record(cap, srv)
    llm = record["llm"]
    assert record["input_data"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "What is four plus five?"}]
    assert record["output_data"] == {"role": "assistant", "content": response.output_text}
    assert llm["operation"] == "responses" and llm["streamed"] is (form != "create")
    assert llm["response_model"] == response.model and llm["response_id"] == response.id
    assert llm["finish_reasons"] == ["completed"]
    assert llm["usage"] == responses_usage(response.usage)
    assert llm["params"] == {"max_output_tokens": 40}


# --------------------------------------------------------------------------- others


@MODES
def test_embeddings_record_counts_not_vectors(srv: FakeLLM, async_: bool) -> None:
    async def body(client: Any) -> Any:
        return await aw(client.embeddings.create(
            model="text-embedding-3-small", input=["four plus", "five"], dimensions=8))

    with capture() as cap:
        e = drive(srv, async_, body)
    record = only_record(cap, srv)
    assert len(e.data) == 2 and len(e.data[0].embedding) == 8
    assert record["input_data"] == ["four plus", "five"]
    assert record["output_data"] == {"embeddings": 2, "dimensions": 8}
    llm = record["llm"]
    assert llm["operation"] == "embeddings" and llm["response_model"] == e.model
    assert llm["usage"]["input_tokens"] == e.usage.prompt_tokens == 3
    assert llm["usage"]["output_tokens"] is None
    assert not any(isinstance(v, float) for v in _leaves(record["input_data"]))
    assert not any(isinstance(v, float) for v in _leaves(record["output_data"]))
    assert str(e.data[0].embedding[0]) not in json.dumps(record)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


@MODES
@STREAMED
def test_legacy_completions(srv: FakeLLM, async_: bool, stream: bool) -> None:
    async def body(client: Any) -> Any:
        result = await aw(client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say nine", max_tokens=5, stream=stream))
        return await drain(result) if stream else result

    with capture() as cap:
        result = drive(srv, async_, body)
    record = only_record(cap, srv)
    llm = record["llm"]
    if stream:
        text = "".join(c.choices[0].text for c in result if c.choices)
        model = result[0].model
        assert llm["usage"] is None and llm["usage_missing_reason"]
    else:
        text, model = result.choices[0].text, result.model
        assert llm["usage"]["input_tokens"] == result.usage.prompt_tokens
        assert llm["usage"]["output_tokens"] == result.usage.completion_tokens
    assert record["input_data"] == "Say nine" and record["output_data"] == text
    assert llm["operation"] == "text_completion" and llm["streamed"] is stream
    assert llm["response_model"] == model and llm["finish_reasons"] == ["stop"]
    assert llm["params"] == {"max_tokens": 5}


@MODES
def test_with_raw_response_is_recorded_once_when_parsed(srv: FakeLLM, async_: bool) -> None:
    async def body(client: Any) -> Any:
        raw = await aw(client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MSGS))
        assert raw.http_response.status_code == 200
        assert cap.interactions == []  # not parsed yet: the record waits
        first = await aw(raw.parse())
        again = await aw(raw.parse())
        assert again is first
        return first

    with capture() as cap:
        r = drive(srv, async_, body)
    record = only_record(cap, srv)
    assert record["output_data"] == {"role": "assistant", "content": r.choices[0].message.content}
    assert record["llm"]["usage"] == chat_usage(r.usage)
    assert record["llm"]["response_id"] == r.id


@MODES
def test_with_raw_response_never_parsed_is_recorded_from_its_body(
    srv: FakeLLM, async_: bool
) -> None:
    """A raw response dropped unparsed is closed at garbage collection, from the body read."""

    async def body(client: Any) -> dict[str, Any]:
        raw = await aw(client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MSGS))
        sent = raw.http_response.json()
        del raw
        gc.collect()
        return sent  # type: ignore[no-any-return]

    with capture() as cap:
        sent = drive(srv, async_, body)
    record = only_record(cap, srv)
    assert record["output_data"] == {"role": "assistant",
                                     "content": sent["choices"][0]["message"]["content"]}
    usage = record["llm"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (
        sent["usage"]["prompt_tokens"], sent["usage"]["completion_tokens"])
    assert record["llm"]["response_model"] == sent["model"]


@MODES
def test_with_streaming_response(srv: FakeLLM, async_: bool) -> None:
    async def body(client: Any) -> Any:
        async with opened(client.chat.completions.with_streaming_response.create(
                model=MODEL, messages=MSGS)) as r:
            return await aw(r.parse())

    with capture() as cap:
        c = drive(srv, async_, body)
    record = only_record(cap, srv)
    assert record["output_data"] == {"role": "assistant", "content": c.choices[0].message.content}
    assert record["llm"]["usage"] == chat_usage(c.usage)


# --------------------------------------------------------------------------- providers


@MODES
def test_azure_client_is_provider_azure(srv: FakeLLM, async_: bool) -> None:
    async def body(client: Any) -> Any:
        return await aw(client.chat.completions.create(model="dep-4o", messages=MSGS))

    with capture() as cap:
        r = drive(srv, async_, body, factory=azure_client)
    record = only_record(cap, srv)
    assert srv.requests[0].path == "/openai/deployments/dep-4o/chat/completions"
    llm = record["llm"]
    assert llm["provider"] == "azure" and llm["server_address"] == address(srv)
    assert llm["request_model"] == "dep-4o" and llm["response_model"] == r.model
    assert record["agent_name"] == "azure:dep-4o"


def test_openai_compatible_base_url_keeps_the_sdk_name(srv: FakeLLM) -> None:
    """An unknown host (a local server) stays "openai"; server_address says where it went."""
    with capture() as cap, openai_client(srv, base_url=srv.url + "/compat/v1") as client:
        client.chat.completions.create(model="my-local-model", messages=MSGS)
    llm = only_record(cap, srv)["llm"]
    assert srv.requests[0].path == "/compat/v1/chat/completions"
    assert llm["provider"] == "openai" and llm["server_address"] == address(srv)


@pytest.mark.parametrize(("host", "provider"), [
    ("api.openai.com", "openai"),
    ("api.groq.com", "groq"),
    ("openrouter.ai", "openrouter"),
    ("my-res.openai.azure.com", "azure"),
    ("127.0.0.1", "openai"),
    ("llm.internal.example", "openai"),
])
def test_provider_for_host(host: str, provider: str) -> None:
    assert _stainless.provider_for(host, "openai") == provider


def test_known_host_sets_the_provider() -> None:
    """End to end on a mock transport: a client for api.groq.com is recorded as groq."""
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200, json={
            "id": "chatcmpl-g", "object": "chat.completion", "created": 1,
            "model": "llama-3.1-8b-instant",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "nine"}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
        })

    with capture() as cap, httpx2.Client(transport=httpx2.MockTransport(handler)) as http, \
            openai.OpenAI(api_key="gsk-test-0000", base_url="https://api.groq.com/openai/v1",
                          http_client=http, max_retries=0) as client:
        client.chat.completions.create(model="llama-3.1-8b-instant", messages=MSGS)
    assert seen == ["https://api.groq.com/openai/v1/chat/completions"]
    _, (record,) = folded(cap, 1)
    assert record["llm"]["provider"] == "groq"
    assert record["llm"]["server_address"] == "api.groq.com"
    assert record["agent_name"] == "groq:llama-3.1-8b-instant"


@MODES
def test_non_llm_requests_are_not_recorded(srv: FakeLLM, async_: bool) -> None:
    srv.script(Reply(raw=b'{"object": "list", "data": []}'))

    async def body(client: Any) -> Any:
        return await aw(client.models.list())

    with capture() as cap:
        page = drive(srv, async_, body)
    assert page.data == [] and srv.count("/models") == 1
    assert list(cap) == []
    folded(cap, 0)


# --------------------------------------------------------------------------- errors


@MODES
@pytest.mark.parametrize(("status", "error"), [
    (429, openai.RateLimitError),
    (400, openai.BadRequestError),
    (500, openai.InternalServerError),
])
def test_http_errors_reach_the_caller_and_are_logged_once(
    srv: FakeLLM, async_: bool, status: int, error: type[Exception]
) -> None:
    srv.script(Reply(status=status))
    caught: list[BaseException] = []

    async def body(client: Any) -> None:
        try:
            await aw(client.chat.completions.create(model=MODEL, messages=MSGS))
        except openai.APIStatusError as exc:
            caught.append(exc)
            raise

    with capture() as cap, pytest.raises(error) as info:
        drive(srv, async_, body)
    assert caught == [info.value] and caught[0] is info.value  # the very same object
    assert type(info.value) is error and info.value.status_code == status
    assert srv.count() == 1
    doc, (record,) = folded(cap, 1)
    name = f"openai.{error.__name__}"
    assert record["error"]["type"] == name and record["error"]["error"] == str(info.value)
    assert record["llm"]["http_status"] == status
    assert record["llm"]["usage"] is None and record["llm"]["usage_missing_reason"]
    (entry,) = doc["error_log"]
    assert entry["source"] == "llm" and entry["type"] == name
    assert entry["error"] == str(info.value)
    assert entry["where"]["agent_name"] == record["agent_name"]


@MODES
def test_retries_make_one_record(srv: FakeLLM, async_: bool) -> None:
    srv.script(Reply(status=500), Reply(text="nine"))

    async def body(client: Any) -> Any:
        return await aw(client.chat.completions.create(model=MODEL, messages=MSGS))

    with capture() as cap:
        r = drive(srv, async_, body, max_retries=1)
    assert srv.count() == 2 and r.choices[0].message.content == "nine"
    doc, (record,) = folded(cap, 1)
    assert doc["error_log"] == [] and "error" not in record
    assert record["output_data"]["content"] == "nine"
    assert "http_status" not in record["llm"]


@MODES
def test_timeout_is_recorded_with_the_sdk_type(srv: FakeLLM, async_: bool) -> None:
    srv.script(Reply(delay_s=5))

    async def body(client: Any) -> Any:
        return await aw(client.chat.completions.create(model=MODEL, messages=MSGS))

    with capture() as cap, pytest.raises(openai.APITimeoutError):
        drive(srv, async_, body, timeout=0.2)
    assert srv.count() == 1
    doc, (record,) = folded(cap, 1)
    assert record["error"]["type"] == "openai.APITimeoutError"
    (entry,) = doc["error_log"]
    assert entry["source"] == "llm" and entry["type"] == "openai.APITimeoutError"
    # A long (chained) traceback is capped but stays text, and keeps its last line.
    assert entry["traceback"].splitlines()[-1] == "openai.APITimeoutError: Request timed out."


@MODES
def test_connection_error_is_recorded_with_the_sdk_type(srv: FakeLLM, async_: bool) -> None:
    async def body(client: Any) -> Any:
        return await aw(client.chat.completions.create(model=MODEL, messages=MSGS))

    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    with capture() as cap, pytest.raises(openai.APIConnectionError) as info:
        drive(srv, async_, body, base_url=base_url)
    assert type(info.value) is openai.APIConnectionError
    doc, (record,) = folded(cap, 1)
    assert record["error"]["type"] == "openai.APIConnectionError"
    assert record["llm"]["server_address"] == base_url.split("/")[2]
    (entry,) = doc["error_log"]
    assert entry["source"] == "llm" and entry["type"] == "openai.APIConnectionError"


# --------------------------------------------------------------------------- context


@MODES
def test_inside_an_agent_the_call_is_an_action(srv: FakeLLM, async_: bool) -> None:
    """Within ``@agent("planner")`` in an explicit iteration: an action, no extra iteration."""

    @agentlog.agent("planner")
    async def planner(client: Any, question: str) -> str:
        r = await aw(client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": question}]))
        return r.choices[0].message.content  # type: ignore[no-any-return]

    async def body(client: Any) -> str:
        with agentlog.iteration():
            return await planner(client, "What is four plus five?")

    with capture() as cap:
        answer = drive(srv, async_, body)
    doc, (action,) = folded(cap, 1)
    (iteration,) = doc["iterations"]
    assert iteration["auto"] is False
    (ix,) = iteration["interactions"]
    assert ix["agent_name"] == "planner" and "llm" not in ix
    assert ix["output_data"] == answer
    assert ix["actions"] == [action] and action["action_name"] == "llm:openai.chat"
    assert action["output_data"] == {"role": "assistant", "content": answer}
    assert action["llm"]["provider"] == "openai" and action["llm"]["request_model"] == MODEL


def test_verbosity_2_keeps_full_params(srv: FakeLLM, verbosity: Callable[[int], None]) -> None:
    verbosity(2)
    srv.script(Reply(tool_calls=[WEATHER]))
    with capture() as cap, openai_client(srv) as client:
        client.chat.completions.create(model=MODEL, messages=MSGS, tools=TOOLS, temperature=0.2)
    params = only_record(cap, srv)["llm"]["params"]
    assert params["tools"] == TOOLS and params["temperature"] == 0.2


@MODES
def test_verbosity_0_records_nothing(
    srv: FakeLLM, async_: bool, verbosity: Callable[[int], None]
) -> None:
    verbosity(0)

    async def body(client: Any) -> Any:
        plain = await aw(client.chat.completions.create(model=MODEL, messages=MSGS))
        chunks = await drain(await aw(client.chat.completions.create(
            model=MODEL, messages=MSGS, stream=True)))
        return plain, chunks

    with capture() as cap:
        plain, chunks = drive(srv, async_, body)
    assert plain.choices[0].message.content == streamed_text(chunks)
    assert srv.count() == 2 and list(cap) == []


def test_cost_known_and_unknown_models(srv: FakeLLM) -> None:
    srv.script(Reply(), Reply(model="my-local-model"))
    with capture() as cap, openai_client(srv) as client:
        client.chat.completions.create(model=MODEL, messages=MSGS)
        client.chat.completions.create(model="my-local-model", messages=MSGS)
    doc, (known, unknown) = folded(cap, 2)
    assert known["llm"]["cost_usd"] > 0
    assert known["llm"]["pricing_source"].startswith("genai-prices")
    assert unknown["llm"]["usage"]["input_tokens"] > 0
    assert unknown["llm"]["cost_usd"] is None and unknown["llm"]["cost_missing_reason"]
    assert doc["metadata"]["totals"]["cost_usd"] == pytest.approx(known["llm"]["cost_usd"])


# --------------------------------------------------------------------------- recorded traffic


def _sse(body: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE body's ``data:`` lines."""
    return [json.loads(line[5:]) for line in body.splitlines()
            if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]")]


def _request_kwargs(interaction: dict[str, Any]) -> dict[str, Any]:
    sent = interaction["request"]["body"]
    return {k: v for k, v in sent.items() if k in
            ("model", "messages", "input", "instructions", "stream", "stream_options", "tools")}


def test_replay_chat_non_stream(srv: FakeLLM) -> None:
    (rec,) = load_cassette("openai/test_sync_chat_completions_version_latest.yaml")
    sent = json.loads(rec["response"]["body"])
    srv.script(replay(rec))
    with capture() as cap, openai_client(srv) as client:
        client.chat.completions.create(**_request_kwargs(rec))
    record = only_record(cap, srv)
    assert record["output_data"]["content"] == sent["choices"][0]["message"]["content"]
    llm = record["llm"]
    assert llm["response_model"] == sent["model"] and llm["response_id"] == sent["id"]
    assert llm["usage"]["input_tokens"] == sent["usage"]["prompt_tokens"]
    assert llm["usage"]["output_tokens"] == sent["usage"]["completion_tokens"]


@pytest.mark.parametrize("path", [
    "openai/completion_stream.yaml",  # stream_options.include_usage: a usage chunk at the end
    "openai/test_sync_chat_completions_stream_version_latest.yaml",  # no usage at all
])
def test_replay_chat_stream(srv: FakeLLM, path: str) -> None:
    rec = load_cassette(path)[0]
    chunks = _sse(rec["response"]["body"])
    usage = next((c["usage"] for c in chunks if c.get("usage")), None)
    srv.script(replay(rec))
    with capture() as cap, openai_client(srv) as client:
        for _ in client.chat.completions.create(**_request_kwargs(rec)):
            pass
    record = only_record(cap, srv)
    llm = record["llm"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text and record["output_data"] == {"role": "assistant", "content": text}
    assert llm["response_model"] == chunks[0]["model"] and llm["finish_reasons"] == ["stop"]
    if usage is None:
        assert llm["usage"] is None and llm["usage_missing_reason"]
    else:
        assert llm["usage"]["input_tokens"] == usage["prompt_tokens"]
        assert llm["usage"]["output_tokens"] == usage["completion_tokens"]


def test_replay_chat_stream_parallel_tool_calls(srv: FakeLLM) -> None:
    rec = load_cassette("openai/test_open_ai_function_calls_tools_streaming_parallel.yaml")[-1]
    calls: dict[int, dict[str, Any]] = {}
    for chunk in _sse(rec["response"]["body"]):
        deltas = chunk["choices"][0]["delta"].get("tool_calls") if chunk["choices"] else None
        for tc in deltas or ():
            call = calls.setdefault(tc["index"], {"id": None, "name": None, "arguments": ""})
            call["id"] = tc.get("id") or call["id"]
            call["name"] = tc.get("function", {}).get("name") or call["name"]
            call["arguments"] += tc.get("function", {}).get("arguments") or ""
    srv.script(replay(rec))
    with capture() as cap, openai_client(srv) as client:
        for _ in client.chat.completions.create(**_request_kwargs(rec)):
            pass
    llm = only_record(cap, srv)["llm"]
    assert len(calls) == 2 and json.loads(calls[1]["arguments"]) == {"location": "Boston"}
    assert llm["tool_calls"] == [calls[0], calls[1]]
    assert llm["finish_reasons"] == ["tool_calls"]


@pytest.mark.parametrize(
    "path", ["openai/test_responses.yaml", "openai/test_responses_stream.yaml"])
def test_replay_responses(srv: FakeLLM, path: str) -> None:
    rec = load_cassette(path)[0]
    body = rec["response"]["body"]
    streamed = rec["request"]["body"].get("stream", False)
    final = (next(e["response"] for e in _sse(body) if e["type"] == "response.completed")
             if streamed else json.loads(body))
    text = "".join(part["text"] for item in final["output"] if item["type"] == "message"
                   for part in item["content"])
    srv.script(replay(rec))
    with capture() as cap, openai_client(srv) as client:
        result = client.responses.create(**_request_kwargs(rec))
        if streamed:
            for _ in result:
                pass
    record = only_record(cap, srv)
    llm = record["llm"]
    assert record["output_data"] == {"role": "assistant", "content": text}
    assert llm["streamed"] is streamed and llm["response_model"] == final["model"]
    assert llm["usage"]["input_tokens"] == final["usage"]["input_tokens"]
    assert llm["usage"]["output_tokens"] == final["usage"]["output_tokens"]
