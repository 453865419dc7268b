"""The fake LLM server speaks what the real openai / anthropic SDKs parse.

These tests check only what the SDKs return (never agentlog's behaviour), so that other
tests can trust ``tests/fake_llm.py`` as a stand-in for the providers.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from pydantic import BaseModel

from fake_llm import (
    FakeLLM,
    Reply,
    anthropic_client,
    example_for_schema,
    load_cassette,
    openai_client,
    replay,
)

MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is four plus five?"},
]
ECHO = "echo: What is four plus five?"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
WEATHER = ("get_weather", '{"city": "Paris"}')
TIME = ("get_time", '{"tz": "UTC"}')
ANT_KW: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "x"}],
}


@pytest.fixture
def srv() -> Any:
    with FakeLLM() as server:
        yield server
    assert not server.errors


# --------------------------------------------------------------------------- chat


def test_chat_plain_usage_and_request_recording(srv: FakeLLM) -> None:
    with openai_client(srv) as client:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert isinstance(r, openai.types.chat.ChatCompletion)
    assert r.id == "chatcmpl-1" and r.object == "chat.completion"
    assert r.model == "gpt-4o-mini-2024-07-18"
    assert r.system_fingerprint and r.created
    assert r.choices[0].message.content == ECHO
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (7, 6, 13)
    assert r.usage.prompt_tokens_details and r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.completion_tokens_details
    assert r.usage.completion_tokens_details.reasoning_tokens == 0
    (req,) = srv.requests
    assert (req.method, req.path, req.query) == ("POST", "/v1/chat/completions", "")
    assert req.headers["authorization"] == "Bearer sk-test-canary-0000"
    assert req.body["messages"] == MSGS
    assert srv.count() == 1 and srv.count("/chat/completions") == 1 and srv.count("/x") == 0
    srv.reset()
    assert srv.count() == 0 and srv.requests == []


def test_chat_n_and_usage_false(srv: FakeLLM) -> None:
    srv.script(Reply(text="hi", usage=False, model="m-1"))
    with openai_client(srv) as client:
        r = client.chat.completions.create(model="gpt-4o", messages=MSGS, n=2)
        again = client.chat.completions.create(model="gpt-4o", messages=MSGS, n=2)
    assert [c.index for c in r.choices] == [0, 1]
    assert [c.message.content for c in r.choices] == ["hi", "hi"]
    assert r.usage is None and r.model == "m-1"
    assert len(again.choices) == 2 and again.usage and again.usage.completion_tokens == 12


def test_chat_tool_calls(srv: FakeLLM) -> None:
    srv.script(Reply(tool_calls=[WEATHER, TIME]))
    with openai_client(srv) as client:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.id for c in calls] == ["call_0", "call_1"]
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "UTC"}),
    ]


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream(srv: FakeLLM, include_usage: bool) -> None:
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    with openai_client(srv) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, stream=True, **extra
        )
        assert isinstance(stream, openai.Stream)
        with stream:
            chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ECHO
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 6  # per word
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage
        assert chunks[-1].usage.total_tokens == 13
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert all(c.usage is None for c in chunks) and chunks[-1].choices


def test_chat_stream_tool_calls_and_n(srv: FakeLLM) -> None:
    srv.script(Reply(tool_calls=[WEATHER, TIME]), Reply(text="a b"))
    with openai_client(srv) as client:
        with client.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, tools=TOOLS, stream=True
        ) as stream:
            chunks = list(stream)
        with client.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, stream=True, n=2
        ) as stream:
            n_chunks = list(stream)
    args: dict[int, list[str]] = {}
    heads: dict[int, tuple[str | None, str | None]] = {}
    for chunk in chunks:
        for tc in chunk.choices[0].delta.tool_calls or []:
            if tc.id:
                heads[tc.index] = (tc.id, tc.function.name if tc.function else None)
            elif tc.function and tc.function.arguments is not None:
                args.setdefault(tc.index, []).append(tc.function.arguments)
    assert heads == {0: ("call_0", "get_weather"), 1: ("call_1", "get_time")}
    assert all(len(pieces) >= 2 for pieces in args.values())
    assert {i: "".join(p) for i, p in args.items()} == {0: WEATHER[1], 1: TIME[1]}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    per_choice: dict[int, str] = {}
    for chunk in n_chunks:
        choice = chunk.choices[0]
        per_choice[choice.index] = per_choice.get(choice.index, "") + (choice.delta.content or "")
    assert per_choice == {0: "a b", 1: "a b"}


def test_chat_stream_helper(srv: FakeLLM) -> None:
    srv.script(Reply(text="Nine, of course."))
    with (
        openai_client(srv) as client,
        client.chat.completions.stream(
            model="gpt-4o-mini", messages=MSGS, stream_options={"include_usage": True}
        ) as stream,
    ):
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == "Nine, of course."
    assert final.choices[0].message.content == "Nine, of course."
    assert final.usage and final.usage.completion_tokens == 3


class Inner(BaseModel):
    flag: bool
    ratio: float


class Answer(BaseModel):
    city: str
    population: int
    tags: list[str]
    inner: Inner
    maybe: float | None


def test_chat_parse_structured_output(srv: FakeLLM) -> None:
    srv.script(
        Reply(),
        Reply(
            text='{"city":"Oslo","population":5,"tags":["a"],'
            '"inner":{"flag":false,"ratio":0.5},"maybe":null}'
        ),
    )
    with openai_client(srv) as client:
        default = client.chat.completions.parse(
            model="gpt-4o-mini", messages=MSGS, response_format=Answer
        )
        scripted = client.chat.completions.parse(
            model="gpt-4o-mini", messages=MSGS, response_format=Answer
        )
    assert srv.requests[0].body["response_format"]["type"] == "json_schema"
    assert default.choices[0].message.parsed == Answer(
        city="x", population=1, tags=[], inner=Inner(flag=True, ratio=1.0), maybe=1.0
    )
    parsed = scripted.choices[0].message.parsed
    assert parsed and parsed.city == "Oslo" and parsed.maybe is None


def test_responses_parse_structured_output(srv: FakeLLM) -> None:
    with openai_client(srv) as client:
        r = client.responses.parse(model="gpt-4.1", input="city?", text_format=Inner)
    assert srv.requests[0].body["text"]["format"]["type"] == "json_schema"
    assert r.output_parsed == Inner(flag=True, ratio=1.0)


def test_example_for_schema_edge_cases() -> None:
    schema = {
        "type": "object",
        "required": ["when", "kind", "n", "xs"],
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "kind": {"enum": ["a", "b"]},
            "n": {"type": "integer", "minimum": 3},
            "xs": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "skipped": {"type": "string"},
        },
    }
    assert example_for_schema(schema) == {
        "when": "2024-07-18T00:00:00Z",
        "kind": "a",
        "n": 3,
        "xs": ["x"],
    }


def test_azure_deployment_path(srv: FakeLLM) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=srv.url,
        azure_deployment="dep-1",
        api_version="2024-02-01",
        api_key="azure-test-canary-0000",
        max_retries=0,
    ) as client:
        r = client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert r.choices[0].message.content == ECHO
    (req,) = srv.requests
    assert req.path == "/openai/deployments/dep-1/chat/completions"
    assert req.query == "api-version=2024-02-01"


# --------------------------------------------------------------------------- responses


def test_responses_plain_and_tools(srv: FakeLLM) -> None:
    srv.script(Reply(), Reply(tool_calls=[WEATHER]))
    items = [{"role": "user", "content": [{"type": "input_text", "text": "hello you"}]}]
    with openai_client(srv) as client:
        r = client.responses.create(model="gpt-4.1", input="What is four plus five?")
        t = client.responses.create(model="gpt-4.1", input=items, instructions="be kind")
    assert r.object == "response" and r.status == "completed"
    assert r.model == "gpt-4.1-2024-07-18"
    assert r.output_text == ECHO
    assert r.output[0].type == "message"
    assert r.usage and (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (
        5,
        6,
        11,
    )
    assert r.usage.input_tokens_details.cached_tokens == 0
    assert r.usage.output_tokens_details.reasoning_tokens == 0
    (call,) = t.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id == "call_0" and json.loads(call.arguments) == {"city": "Paris"}
    assert t.usage and t.usage.input_tokens == 4


def test_responses_stream_create(srv: FakeLLM) -> None:
    with (
        openai_client(srv) as client,
        client.responses.create(
            model="gpt-4.1", input="What is four plus five?", stream=True
        ) as stream,
    ):
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) == 6 and "".join(deltas) == ECHO
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == ECHO and done.response.usage
    assert done.response.usage.total_tokens == 11


def test_responses_stream_helper(srv: FakeLLM) -> None:
    srv.script(Reply(text="Nine."), Reply(tool_calls=[WEATHER]))
    with openai_client(srv) as client:
        with client.responses.stream(model="gpt-4.1", input="What is four plus five?") as s:
            text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
            final = s.get_final_response()
        with client.responses.stream(model="gpt-4.1", input="weather?") as s:
            arg_deltas = [e.delta for e in s if e.type == "response.function_call_arguments.delta"]
            tool_final = s.get_final_response()
    assert text == "Nine." and final.output_text == "Nine."
    assert final.usage and final.usage.output_tokens == 1
    assert len(arg_deltas) >= 2 and "".join(arg_deltas) == WEATHER[1]
    assert tool_final.output[0].type == "function_call"
    assert tool_final.output[0].arguments == WEATHER[1]


# --------------------------------------------------------------------------- embeddings, legacy


def test_embeddings_base64_default_and_float(srv: FakeLLM) -> None:
    with openai_client(srv) as client:
        b64 = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
        flt = client.embeddings.create(
            model="text-embedding-3-small", input=["a b", "c"], encoding_format="float"
        )
        one = client.embeddings.create(model="text-embedding-3-small", input="a b", dimensions=3)
    assert srv.requests[0].body["encoding_format"] == "base64"  # the SDK's own default
    assert [d.index for d in b64.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in b64.data)
    assert [d.embedding for d in b64.data] == [d.embedding for d in flt.data]
    assert b64.data[0].embedding != b64.data[1].embedding
    assert one.data[0].embedding == b64.data[0].embedding[:3]
    assert b64.usage.prompt_tokens == 3 and b64.usage.total_tokens == 3
    assert b64.model == "text-embedding-3-small"


def test_legacy_completions(srv: FakeLLM) -> None:
    with openai_client(srv) as client:
        r = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say this")
        with client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Say this",
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            chunks = list(stream)
    assert r.object == "text_completion" and r.choices[0].text == "echo: Say this"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage and (r.usage.prompt_tokens, r.usage.completion_tokens) == (2, 3)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: Say this"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage and chunks[-1].usage.total_tokens == 5


# --------------------------------------------------------------------------- anthropic


def test_anthropic_messages_plain_tools_thinking(srv: FakeLLM) -> None:
    srv.script(Reply(), Reply(tool_calls=[WEATHER, TIME]), Reply(thinking="Let me add.", text="9"))
    kw: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 100}
    with anthropic_client(srv) as client:
        plain = client.messages.create(
            **kw, system="Be brief.", messages=[{"role": "user", "content": "What is 4+5?"}]
        )
        tools = client.messages.create(**kw, messages=[{"role": "user", "content": "weather?"}])
        think = client.messages.create(
            **kw,
            messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            thinking={"type": "enabled", "budget_tokens": 1024},
        )
        count = client.messages.count_tokens(
            model="claude-sonnet-4-6", messages=[{"role": "user", "content": "one two three"}]
        )
    assert isinstance(plain, anthropic.types.Message)
    assert plain.model == "claude-sonnet-4-6" and plain.stop_reason == "end_turn"
    assert plain.content[0].type == "text" and plain.content[0].text == "echo: What is 4+5?"
    assert (plain.usage.input_tokens, plain.usage.output_tokens) == (5, 4)
    assert plain.usage.cache_read_input_tokens == 0
    assert plain.usage.cache_creation_input_tokens == 0
    assert tools.stop_reason == "tool_use"
    assert [(b.type, b.id, b.name, b.input) for b in tools.content] == [
        ("tool_use", "toolu_0", "get_weather", {"city": "Paris"}),
        ("tool_use", "toolu_1", "get_time", {"tz": "UTC"}),
    ]
    assert [b.type for b in think.content] == ["thinking", "text"]
    assert think.content[0].thinking == "Let me add." and think.content[0].signature
    assert count.input_tokens == 3
    auth = srv.requests[0].headers
    assert "sk-ant-test-canary-0000" in auth.get("x-api-key", auth.get("authorization", ""))
    assert srv.count("/messages") == 3 and srv.count("/count_tokens") == 1


def test_anthropic_raw_stream(srv: FakeLLM) -> None:
    srv.script(Reply(thinking="hmm ok", text="Nine it is", tool_calls=[WEATHER]))
    with anthropic_client(srv) as client:
        stream = client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=100,
            messages=[{"role": "user", "content": "sum?"}],
            stream=True,
        )
        assert isinstance(stream, anthropic.Stream)
        with stream:
            events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert events[0].message.usage.input_tokens == 1
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert "".join(d.text for d in deltas if d.type == "text_delta") == "Nine it is"
    assert "".join(d.thinking for d in deltas if d.type == "thinking_delta") == "hmm ok"
    assert any(d.type == "signature_delta" for d in deltas)
    parts = [d.partial_json for d in deltas if d.type == "input_json_delta"]
    assert len(parts) >= 2 and "".join(parts) == WEATHER[1]
    assert events[-2].delta.stop_reason == "tool_use" and events[-2].usage.output_tokens == 7


def test_anthropic_stream_helper(srv: FakeLLM) -> None:
    srv.script(Reply(text="Four plus five is nine."), Reply(thinking="a b", tool_calls=[TIME]))
    kw: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 100}
    with anthropic_client(srv) as client:
        with client.messages.stream(**kw, messages=[{"role": "user", "content": "4+5?"}]) as s:
            pieces = list(s.text_stream)
            final = s.get_final_message()
        with client.messages.stream(**kw, messages=[{"role": "user", "content": "time?"}]) as s:
            tool_final = s.get_final_message()
    assert len(pieces) == 5 and "".join(pieces) == "Four plus five is nine."
    assert final.content[0].text == "Four plus five is nine."
    assert final.usage.output_tokens == 5 and final.stop_reason == "end_turn"
    assert [b.type for b in tool_final.content] == ["thinking", "tool_use"]
    assert tool_final.content[1].input == {"tz": "UTC"}
    assert tool_final.content[0].signature.startswith("sig_")


# --------------------------------------------------------------------------- async


def test_async_clients(srv: FakeLLM) -> None:
    async def main() -> tuple[str, str, str, str]:
        async with openai_client(srv, async_=True) as oai:
            r = await oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
            stream = await oai.chat.completions.create(
                model="gpt-4o-mini",
                messages=MSGS,
                stream=True,
                stream_options={"include_usage": True},
            )
            assert isinstance(stream, openai.AsyncStream)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            async with oai.responses.stream(model="gpt-4.1", input="hi there") as rs:
                async for _ in rs:
                    pass
                resp = await rs.get_final_response()
        async with (
            anthropic_client(srv, async_=True) as ant,
            ant.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=10,
                messages=[{"role": "user", "content": "yo"}],
            ) as ms,
        ):
            msg = await ms.get_final_message()
        return r.choices[0].message.content or "", text, resp.output_text, msg.content[0].text

    assert asyncio.run(main()) == (ECHO, ECHO, "echo: hi there", "echo: yo")


# --------------------------------------------------------------------------- errors & faults


def test_errors_raise_sdk_exceptions(srv: FakeLLM) -> None:
    srv.script(Reply(status=429), Reply(status=500), Reply(status=400), Reply(status=404))
    with openai_client(srv) as client:
        with pytest.raises(openai.RateLimitError) as rate:
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)
        with pytest.raises(openai.BadRequestError):
            client.responses.create(model="gpt-4.1", input="x")
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="e", input="x")
        with pytest.raises(openai.NotFoundError):  # unknown path, nothing scripted
            client.models.list()
    assert rate.value.status_code == 429 and rate.value.code == "rate_limit_exceeded"
    assert rate.value.body and rate.value.body["type"] == "requests"
    srv.script(Reply(status=429), Reply(status=500), Reply(status=529), Reply(status=400))
    with anthropic_client(srv) as client:
        with pytest.raises(anthropic.RateLimitError) as arate:
            client.messages.create(**ANT_KW)
        with pytest.raises(anthropic.InternalServerError):
            client.messages.create(**ANT_KW, stream=True)
        with pytest.raises(anthropic.OverloadedError):
            client.messages.create(**ANT_KW)
        with pytest.raises(anthropic.BadRequestError), client.messages.stream(**ANT_KW) as s:
            s.get_final_message()
    assert arate.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Fake 429 error (Too Many Requests)."},
        "request_id": "req_6",
    }


def test_usage_false_everywhere(srv: FakeLLM) -> None:
    srv.script(*[Reply(usage=False) for _ in range(4)])
    with openai_client(srv) as oai, anthropic_client(srv) as ant:
        with oai.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, stream=True, stream_options={"include_usage": True}
        ) as stream:
            chunks = list(stream)
        resp = oai.responses.create(model="gpt-4.1", input="x")
        msg = ant.messages.create(**ANT_KW)
        with ant.messages.create(**ANT_KW, stream=True) as events:
            kinds = [(e.type, getattr(e, "usage", None)) for e in events]
    assert chunks[-1].choices and all(c.usage is None for c in chunks)
    assert resp.usage is None and resp.output_text == "echo: x"
    assert msg.usage is None and msg.content[0].text == "echo: x"
    assert ("message_delta", None) in kinds


def test_raw_reply_on_any_path(srv: FakeLLM) -> None:
    body = b'{"candidates": []}'
    srv.script(Reply(raw=body), Reply(status=503, raw=b"busy", content_type="text/plain"))
    with httpx2.Client(base_url=srv.url) as http:
        ok = http.post("/v1beta/models/gemini:generateContent", json={"contents": []})
        busy = http.post("/v2/chat", json={})
        missing = http.get("/v1/models")
    assert (ok.status_code, ok.content, ok.headers["content-type"]) == (
        200,
        body,
        "application/json",
    )
    assert (busy.status_code, busy.text) == (503, "busy")
    assert missing.status_code == 404 and missing.json()["error"]["type"]
    assert [r.method for r in srv.requests] == ["POST", "POST", "GET"]
    assert srv.requests[0].body == {"contents": []}


def test_custom_error_body(srv: FakeLLM) -> None:
    body = {"error": {"message": "quota", "type": "insufficient_quota", "param": None, "code": "q"}}
    srv.script(Reply(status=429, error=body))
    with openai_client(srv) as client, pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert err.value.code == "q" and err.value.type == "insufficient_quota"


def test_retries_then_success(srv: FakeLLM) -> None:
    srv.script(Reply(status=500), Reply(status=429))
    with openai_client(srv, max_retries=2) as client:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert r.choices[0].message.content == ECHO and srv.count() == 3
    assert [q.headers["x-stainless-retry-count"] for q in srv.requests] == ["0", "1", "2"]
    srv.reset()
    srv.script(Reply(status=529))
    with anthropic_client(srv, max_retries=1) as client:
        m = client.messages.create(**ANT_KW)
    assert m.content[0].text == "echo: x" and srv.count() == 2


def test_drop_after_breaks_streams(srv: FakeLLM) -> None:
    srv.script(Reply(drop_after=2), Reply(drop_after=3), Reply(drop_after=4))
    with openai_client(srv) as client:
        got: list[Any] = []
        with (
            pytest.raises(openai.APIConnectionError),
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MSGS, stream=True
            ) as stream,
        ):
            got.extend(stream)
        assert len(got) == 2
        with (
            pytest.raises(openai.APIConnectionError),
            client.responses.stream(model="gpt-4.1", input="hi") as rs,
        ):
            rs.get_final_response()
    # anthropic does not wrap transport errors raised while a stream is read
    with (
        anthropic_client(srv) as client,
        pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"),
        client.messages.stream(**ANT_KW) as ms,
    ):
        ms.get_final_message()


def test_async_drop_after(srv: FakeLLM) -> None:
    srv.script(Reply(drop_after=1))

    async def main() -> int:
        seen = 0
        async with openai_client(srv, async_=True) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MSGS, stream=True
            )
            with pytest.raises(openai.APIConnectionError):
                async for _ in stream:
                    seen += 1
        return seen

    assert asyncio.run(main()) == 1


def test_delay_timeout_and_fast_stop() -> None:
    start = time.monotonic()
    with FakeLLM() as srv, openai_client(srv, timeout=0.2) as client:
        srv.script(Reply(delay_s=5))
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert time.monotonic() - start < 2  # stop() does not wait out the delay


def test_chunk_delay_and_concurrency(srv: FakeLLM) -> None:
    srv.script(*[Reply(delay_s=0.25) for _ in range(8)])
    with openai_client(srv) as client:

        def one(i: int) -> str:
            r = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"n{i}"}]
            )
            return r.choices[0].message.content or ""

        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(8)))
        elapsed = time.monotonic() - start
    assert answers == [f"echo: n{i}" for i in range(8)]
    assert elapsed < 1.2  # served concurrently, not 8 x 0.25 s
    srv.script(Reply(text="a b c", chunk_delay_s=0.05))
    with openai_client(srv) as client:
        stamps = []
        with client.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, stream=True
        ) as stream:
            for _ in stream:
                stamps.append(time.monotonic())
    assert stamps[-1] - stamps[0] >= 0.15


def test_keep_alive_reuses_connection(srv: FakeLLM) -> None:
    with openai_client(srv) as client:
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        client.embeddings.create(model="e", input="x")
    assert srv.count() == 4 and srv.connections == 1


# --------------------------------------------------------------------------- recorded traffic


def test_load_cassette_shapes() -> None:
    (gz,) = load_cassette("openai/test_sync_chat_completions_version_latest.yaml")
    assert gz["request"]["method"] == "POST"
    assert gz["request"]["uri"] == "https://api.openai.com/v1/chat/completions"
    assert gz["request"]["body"]["model"] == "gpt-4.1"
    assert gz["response"]["status"] == 200
    assert "content-encoding" not in gz["response"]["headers"]
    assert json.loads(gz["response"]["body"])["object"] == "chat.completion"
    parsed = load_cassette("openai/test_openai_tool_output.yaml")
    assert len(parsed) == 2 and json.loads(parsed[0]["response"]["body"])["choices"]
    reply = replay(parsed[0])
    assert reply.status == 200 and reply.content_type == "application/json" and reply.raw


def test_replay_openai_non_stream(srv: FakeLLM) -> None:
    gz = load_cassette("openai/test_sync_chat_completions_version_latest.yaml")
    tools = load_cassette("openai/test_openai_tool_output.yaml")
    emb = load_cassette("openai/test_embeddings_version_latest.yaml")
    srv.script(replay(gz[0]), replay(tools[0]), replay(emb[0]))
    with openai_client(srv) as client:
        r = client.chat.completions.create(model="gpt-4.1", messages=MSGS)
        t = client.chat.completions.create(model="gpt-4o", messages=MSGS)
        e = client.embeddings.create(
            model="text-embedding-3-small", input="x", encoding_format="float"
        )
    assert r.id == "chatcmpl-D8EA2W1R8kOQm25yXiAlgYm0iv0f8" and r.model == "gpt-4.1-2025-04-14"
    assert r.choices[0].message.content == "Four plus five is nine."
    assert r.usage and (r.usage.prompt_tokens, r.usage.completion_tokens) == (23, 6)
    (call,) = t.choices[0].message.tool_calls or []
    assert call.function.name == "get_user_country" and t.choices[0].finish_reason == "tool_calls"
    assert e.data and len(e.data[0].embedding) > 8 and e.usage.prompt_tokens > 0


def test_replay_openai_streams(srv: FakeLLM) -> None:
    tools = load_cassette("openai/test_run_stream_sync_streams_real_model.yaml")
    resp = load_cassette("openai/test_responses_stream.yaml")
    srv.script(replay(tools[0]), replay(resp[0]))
    with openai_client(srv) as client:
        with client.chat.completions.stream(
            model="gpt-4o-mini", messages=MSGS, stream_options={"include_usage": True}
        ) as stream:
            final = stream.get_final_completion()
        with client.responses.stream(model="gpt-4.1", input="What is four plus five?") as rs:
            response = rs.get_final_response()
    (call,) = final.choices[0].message.tool_calls or []
    assert call.id == "call_ZR5UUuTt3pf61kjwAJIYdVMj" and call.function.name == "get_capital"
    assert json.loads(call.function.arguments) == {"country": "UK"}
    assert final.usage and (final.usage.prompt_tokens, final.usage.total_tokens) == (53, 68)
    assert response.output_text == "Four plus five equals **nine**."
    assert response.usage and response.usage.total_tokens == 22


def test_replay_anthropic_streams(srv: FakeLLM) -> None:
    plain = load_cassette("anthropic/test_sync_messages_stream_version_latest.yaml")
    think = load_cassette("anthropic/test_anthropic_thinking_streaming_legacy.yaml")
    tools = load_cassette("anthropic/test_anthropic_tools_streaming_legacy.yaml")
    expected = json.loads(
        b"".join(
            line[6:]
            for line in plain[0]["response"]["body"].splitlines()
            if line.startswith(b"data: ") and b'"message_delta"' in line
        )
    )
    srv.script(replay(plain[0]), replay(think[0]), replay(tools[0]))
    with anthropic_client(srv) as client:
        with client.messages.stream(**ANT_KW) as s:
            text = "".join(s.text_stream)
            msg = s.get_final_message()
        with client.messages.stream(**ANT_KW) as s:
            thought = s.get_final_message()
        with client.messages.stream(**ANT_KW) as s:
            used = s.get_final_message()
    assert text and msg.content[0].text == text and msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == expected["usage"]["output_tokens"]
    assert [b.type for b in thought.content] == ["thinking", "text"]
    assert thought.content[0].signature.startswith("ErUBCkYIARgCIkCepoF8")
    assert thought.usage.output_tokens == 216
    tool_blocks = [b for b in used.content if b.type == "tool_use"]
    assert [b.name for b in tool_blocks] == ["get_weather", "get_time"]
    assert tool_blocks[0].input == {"location": "San Francisco, CA", "unit": "celsius"}


def test_replay_anthropic_non_stream_and_drop(srv: FakeLLM) -> None:
    (rec,) = load_cassette("anthropic/test_sync_messages_version_latest.yaml")
    stream = load_cassette("anthropic/test_anthropic_message_streaming_legacy.yaml")
    dropped = replay(stream[0])
    dropped.drop_after = 3
    srv.script(replay(rec), dropped)
    with anthropic_client(srv) as client:
        m = client.messages.create(**ANT_KW)
        with pytest.raises(httpx2.RemoteProtocolError), client.messages.stream(**ANT_KW) as s:
            s.get_final_message()
    assert m.content[0].text == "Four plus five equals nine."
    assert m.usage.input_tokens == 19 and m.usage.output_tokens == 9
