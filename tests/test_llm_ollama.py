"""What agentlog records for the ``ollama`` SDK: chat, generate and embed, streamed or not,
sync and async, against ``tests/fake_ollama.py`` over loopback HTTP.

Covers A3: an Ollama stream (the SDK's generator) passes each part on; exactly one record.
Covers A4: an Ollama stream closed early, dropped, or cut by the server is recorded incomplete.
Covers A5: a non-streamed Ollama result is the SDK's own object; a stream stays a generator.
Covers A7: ollama imported before agentlog, module-level functions bound at import: recorded.
Covers A8: one record per request the Ollama server received.
Covers D1: a key in an Ollama client's Authorization header never reaches the document.
"""

from __future__ import annotations

import gc
import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest

from agentlog.testing import capture
from fake_llm import load_cassette, replay
from fake_ollama import FakeOllama, Reply, ollama_client
from helpers import Result, validate_document
from llm_testing import (
    MODES,
    STREAMED,
    aw,
    closed_port,
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

MODEL = "llama3.2"
MSGS = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is four plus five?"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
WEATHER = ("get_weather", '{"city": "Paris"}')
LOCAL = "a local model (ollama): no price per token"

drive = driver(ollama_client)


@pytest.fixture
def srv() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server
    assert not server.errors


def address(srv: FakeOllama) -> str:
    return srv.url.removeprefix("http://")


def counts(final: Any) -> dict[str, Any]:
    """What the record should say for the SDK's last (or only) response."""
    return usage(final.prompt_eval_count, final.eval_count)


# --------------------------------------------------------------------------- chat


@MODES
def test_chat_plain(srv: FakeOllama, async_: bool) -> None:
    """A plain chat: the SDK's own ChatResponse back, and a record of what it said."""

    async def body(client: Any) -> Any:
        return await aw(client.chat(model=MODEL, messages=MSGS,
                                    options={"temperature": 0.3, "num_ctx": 2048}))

    with capture() as cap:
        r = drive(srv, async_, body)
    assert type(r) is ollama.ChatResponse
    record = only_record(cap, srv, "/api/chat")
    assert record["agent_name"] == f"ollama:{MODEL}"
    assert record["input_data"] == MSGS
    assert record["output_data"] == {"role": "assistant", "content": r.message.content}
    llm = record["llm"]
    assert (llm["provider"], llm["operation"]) == ("ollama", "chat")
    assert (llm["request_model"], llm["response_model"]) == (MODEL, r.model)
    # Sampling options are the call's parameters; the empty tools list the SDK sends is not.
    assert llm["params"] == {"temperature": 0.3, "num_ctx": 2048}
    assert llm["streamed"] is False and llm["incomplete"] is False
    assert llm["finish_reasons"] == ["stop"]
    assert llm["usage"] == counts(r) and r.prompt_eval_count > 0
    assert llm["server_address"] == address(srv)
    assert llm["cost_usd"] is None and llm["cost_missing_reason"] == LOCAL


@MODES
def test_chat_stream(srv: FakeOllama, async_: bool) -> None:
    """A stream stays a generator, each part passed on; the record closes at its end with
    the counts of the last (done) part, and a time to first token."""

    async def body(client: Any) -> list[Any]:
        stream = await aw(client.chat(model=MODEL, messages=MSGS, stream=True))
        assert (inspect.isasyncgen if async_ else inspect.isgenerator)(stream)
        return await drain(stream)

    with capture() as cap:
        parts = drive(srv, async_, body)
    assert len(parts) > 2 and all(type(p) is ollama.ChatResponse for p in parts)
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    record = only_record(cap, srv, "/api/chat")
    # The request the generator makes on its first part is the LLM call's, not a fetch.
    assert validate_document(cap.document())["resources_used"] == []
    text = "".join(p.message.content for p in parts)
    assert record["output_data"] == {"role": "assistant", "content": text}
    llm = record["llm"]
    assert llm["streamed"] is True and llm["incomplete"] is False
    assert llm["ttft_ms"] is not None
    assert llm["finish_reasons"] == ["stop"]
    assert llm["usage"] == counts(parts[-1])
    assert llm["cost_usd"] is None and llm["cost_missing_reason"] == LOCAL


@MODES
@STREAMED
def test_generate(srv: FakeOllama, async_: bool, stream: bool) -> None:
    async def body(client: Any) -> Any:
        result = await aw(client.generate(model=MODEL, prompt="Say nine.", system="Be brief.",
                                          stream=stream))
        return await drain(result) if stream else result

    with capture() as cap:
        result = drive(srv, async_, body)
    record = only_record(cap, srv, "/api/generate")
    llm = record["llm"]
    assert llm["operation"] == "text_completion" and llm["streamed"] is stream
    assert record["input_data"] == {"system": "Be brief.", "prompt": "Say nine."}
    if stream:
        assert record["output_data"] == "".join(p.response for p in result) == "echo: Say nine."
        final = result[-1]
    else:
        assert type(result) is ollama.GenerateResponse
        assert record["output_data"] == result.response
        final = result
    assert llm["usage"] == counts(final) and llm["finish_reasons"] == ["stop"]


@MODES
@STREAMED
def test_tool_calls(srv: FakeOllama, async_: bool, stream: bool) -> None:
    """Ollama sends tool calls whole, arguments as an object and without ids."""
    srv.script(Reply(tool_calls=[WEATHER]))

    async def body(client: Any) -> Any:
        result = await aw(client.chat(model=MODEL, messages=MSGS, tools=TOOLS, stream=stream))
        return await drain(result) if stream else result

    with capture() as cap:
        result = drive(srv, async_, body)
    record = only_record(cap, srv)
    sdk = [c for p in (result if stream else [result]) for c in p.message.tool_calls or ()]
    assert [(c.function.name, c.function.arguments) for c in sdk] == [("get_weather",
                                                                        {"city": "Paris"})]
    expected = [{"id": None, "name": "get_weather", "arguments": '{"city": "Paris"}'}]
    llm = record["llm"]
    assert llm["tool_calls"] == expected
    assert record["output_data"] == {"role": "assistant", "content": None,
                                     "tool_calls": expected}
    assert llm["params"] == {"tools": ["get_weather"]}


@MODES
def test_embed_records_counts_not_vectors(srv: FakeOllama, async_: bool) -> None:
    async def body(client: Any) -> Any:
        new = await aw(client.embed(model="all-minilm", input=["one two", "three"]))
        old = await aw(client.embeddings(model="all-minilm", prompt="four"))
        return new, old

    with capture() as cap:
        new, old = drive(srv, async_, body)
    assert type(new) is ollama.EmbedResponse and type(old) is ollama.EmbeddingsResponse
    assert srv.count() == 2
    _, (embed, legacy) = folded(cap, 2)
    assert embed["input_data"] == ["one two", "three"]
    assert embed["output_data"] == {"embeddings": 2, "dimensions": len(new.embeddings[0])}
    assert embed["llm"]["operation"] == "embeddings"
    assert embed["llm"]["usage"]["input_tokens"] == new.prompt_eval_count == 3
    assert legacy["input_data"] == "four"
    assert legacy["output_data"] == {"embeddings": 1, "dimensions": len(old.embedding)}
    assert legacy["llm"]["usage"] is None  # the legacy endpoint counts nothing


def test_other_endpoints_are_not_llm_calls(srv: FakeOllama) -> None:
    """``list``/``show``... go through the same ``_request``: no record for them."""
    srv.script(Reply(status=404), Reply(status=404))
    with capture() as cap, ollama_client(srv) as client:
        for call in (client.list, lambda: client.show("x")):
            with pytest.raises(ollama.ResponseError):
                call()
    assert srv.count() == 2
    doc, _ = folded(cap, 0)
    assert doc["error_log"] == []


# --------------------------------------------------------------------------- errors


@MODES
@STREAMED
def test_http_error_reaches_the_caller_and_is_recorded(
    srv: FakeOllama, async_: bool, stream: bool
) -> None:
    """A stream raises on its first part (the request is made then): recorded the same."""
    srv.script(Reply(status=404, error={"error": f"model '{MODEL}' not found"}))
    caught: list[BaseException] = []

    async def body(client: Any) -> None:
        try:
            result = await aw(client.chat(model=MODEL, messages=MSGS, stream=stream))
            if stream:
                await drain(result)
        except ollama.ResponseError as exc:
            caught.append(exc)
            raise

    with capture() as cap, pytest.raises(ollama.ResponseError) as info:
        drive(srv, async_, body)
    assert caught[0] is info.value and info.value.status_code == 404
    assert srv.count() == 1
    doc, (record,) = folded(cap, 1)
    assert record["error"]["type"] == "ollama._types.ResponseError"
    assert record["error"]["error"] == str(info.value)
    assert record["llm"]["http_status"] == 404 and record["llm"]["streamed"] is stream
    assert record["llm"]["usage"] is None and record["llm"]["usage_missing_reason"]
    (entry,) = doc["error_log"]
    assert entry["source"] == "llm" and entry["type"] == "ollama._types.ResponseError"


@MODES
def test_connection_error_is_recorded(srv: FakeOllama, async_: bool) -> None:
    async def body(client: Any) -> Any:
        return await aw(client.chat(model=MODEL, messages=MSGS))

    host = f"http://127.0.0.1:{closed_port()}"
    with capture() as cap, pytest.raises(ConnectionError):
        drive(srv, async_, body, host=host)
    _, (record,) = folded(cap, 1)
    assert record["error"]["type"] == "ConnectionError"
    assert record["llm"]["server_address"] == host.removeprefix("http://")


# --------------------------------------------------------------------------- early ends


@MODES
def test_stream_closed_early_is_incomplete(srv: FakeOllama, async_: bool) -> None:
    async def body(client: Any) -> Any:
        return await first_then_close(await aw(client.chat(model=MODEL, messages=MSGS,
                                                           stream=True)))

    with capture() as cap:
        first = drive(srv, async_, body)
    assert srv.count() == 1
    _, record = cut_short(cap)
    llm = record["llm"]
    assert llm["incomplete_reason"] == "closed before its end" and llm["ttft_ms"] is not None
    assert record["output_data"] == {"role": "assistant", "content": first.message.content}
    assert llm["usage"] is None and "done" in llm["usage_missing_reason"]
    assert "error" not in record


def test_stream_dropped_without_close_is_incomplete(srv: FakeOllama) -> None:
    with capture() as cap, ollama_client(srv) as client:
        stream = client.generate(model=MODEL, prompt="Say nine.", stream=True)
        next(stream)
        del stream
        gc.collect()
    _, record = cut_short(cap)
    assert "error" not in record


@MODES
def test_stream_cut_by_the_server_is_an_error(srv: FakeOllama, async_: bool) -> None:
    srv.script(Reply(drop_after=2))

    async def body(client: Any) -> list[Any]:
        return await drain(await aw(client.chat(model=MODEL, messages=MSGS, stream=True)))

    with capture() as cap, pytest.raises(Exception) as info:
        drive(srv, async_, body)
    _, record = cut_by_server(cap, info.value)
    assert record["output_data"]["content"]  # the two parts that did arrive


# --------------------------------------------------------------------------- the rest


def test_module_level_functions_are_recorded(srv: FakeOllama) -> None:
    """``ollama.chat`` is the default client's method, bound at import; ``Client.chat``
    itself is not patched, yet the call is recorded once."""
    assert ollama.chat.__func__ is ollama.Client.chat  # type: ignore[attr-defined]
    default = ollama._client  # type: ignore[attr-defined]  # the default Client
    saved, here = default._client, ollama_client(srv)
    default._client = here._client  # its HTTP client, pointed at the fake
    try:
        with capture() as cap:
            r = ollama.chat(model=MODEL, messages=MSGS)
            parts = list(ollama.generate(model=MODEL, prompt="Say nine.", stream=True))
    finally:
        default._client = saved
        here.close()
    assert srv.count() == 2
    _, (chat, generate) = folded(cap, 2)
    assert chat["output_data"]["content"] == r.message.content
    assert generate["output_data"] == "".join(p.response for p in parts)


@MODES
def test_verbosity_0_records_nothing(
    srv: FakeOllama, async_: bool, verbosity: Callable[[int], None]
) -> None:
    verbosity(0)

    async def body(client: Any) -> Any:
        plain = await aw(client.chat(model=MODEL, messages=MSGS))
        parts = await drain(await aw(client.chat(model=MODEL, messages=MSGS, stream=True)))
        return plain, parts

    with capture() as cap:
        plain, parts = drive(srv, async_, body)
    assert plain.message.content == "".join(p.message.content for p in parts)
    assert srv.count() == 2 and list(cap) == []


def test_a_local_model_is_never_priced(srv: FakeOllama) -> None:
    """Even a model whose name a price list knows (DeepSeek's API prices "deepseek-r1")."""
    with capture() as cap, ollama_client(srv) as client:
        client.chat(model="deepseek-r1:7b", messages=MSGS)
    doc, (record,) = folded(cap, 1)
    assert record["llm"]["usage"]["input_tokens"] > 0
    assert record["llm"]["cost_usd"] is None
    assert record["llm"]["cost_missing_reason"] == LOCAL
    assert not doc["metadata"]["totals"].get("cost_usd")


def test_no_key_in_the_document(srv: FakeOllama) -> None:
    """An ollama.com key (a Bearer header) echoed back by the server is redacted."""
    key = "ollama-canary-7f3a9c"
    with capture() as cap, ollama_client(srv, headers={"Authorization": f"Bearer {key}"}) as c:
        c.chat(model=MODEL, messages=[{"role": "user", "content": f"my key is {key}"}])
    assert srv.requests[0].headers["authorization"] == f"Bearer {key}"
    doc, (record,) = folded(cap, 1)
    text = json.dumps(doc)
    assert key not in text
    assert "my key is" in record["output_data"]["content"]


# --------------------------------------------------------------------------- recorded traffic


@pytest.mark.parametrize(("path", "call"), [
    ("ollama/test_ollama_chat_legacy.yaml", "chat"),
    ("ollama/test_ollama_streaming_chat_legacy.yaml", "chat"),
    ("ollama/test_ollama_generation_legacy.yaml", "generate"),
    ("ollama/test_ollama_streaming_generation_legacy.yaml", "generate"),
])
def test_replay(srv: FakeOllama, path: str, call: str) -> None:
    """Real Ollama responses (JSON and NDJSON) through the same path."""
    (rec,) = load_cassette(path)
    sent = rec["request"]["body"]
    stream = bool(sent["stream"])
    lines = [json.loads(x) for x in rec["response"]["body"].splitlines() if x.strip()]
    srv.script(replay(rec))
    with capture() as cap, ollama_client(srv) as client:
        if call == "chat":
            result = client.chat(model=sent["model"], messages=sent["messages"], stream=stream)
        else:
            result = client.generate(model=sent["model"], prompt=sent["prompt"], stream=stream)
        if stream:
            list(result)
    record = only_record(cap, srv)
    final = lines[-1]
    key = "message" if call == "chat" else "response"
    text = "".join(x["message"]["content"] if key == "message" else x["response"] for x in lines)
    out = record["output_data"]
    assert (out["content"] if key == "message" else out) == text
    assert record["llm"]["usage"]["input_tokens"] == final["prompt_eval_count"]
    assert record["llm"]["usage"]["output_tokens"] == final["eval_count"]
    assert record["llm"]["finish_reasons"] == [final["done_reason"]]


def test_replay_tool_calls_history(srv: FakeOllama) -> None:
    """A recorded request whose history holds a tool call (arguments as an object)."""
    (rec,) = load_cassette("ollama/test_ollama_chat_tool_calls_legacy.yaml")
    sent = rec["request"]["body"]
    srv.script(replay(rec))
    with capture() as cap, ollama_client(srv) as client:
        client.chat(model=sent["model"], messages=sent["messages"])
    record = only_record(cap, srv)
    assert record["input_data"][0]["tool_calls"][0]["function"]["arguments"] == {
        "location": "San Francisco"}
    assert record["llm"]["usage"]["output_tokens"] == 113


# --------------------------------------------------------------------------- processes

SDK_FIRST = """\
import os, sys
sys.path.insert(0, {tests!r})
from fake_ollama import FakeOllama
srv = FakeOllama().start()
os.environ["OLLAMA_HOST"] = srv.url
import ollama  # its default client reads OLLAMA_HOST now; agentlog comes later
chat = ollama.chat
import agentlog
try:
    chat(model="llama3.2", messages=[{{"role": "user", "content": "hi"}}])
    list(ollama.Client().generate(model="llama3.2", prompt="hi", stream=True))
    print("RESULT", srv.count(), "agentlog.integrations.ollama" in sys.modules)
finally:
    srv.stop()
"""


@pytest.mark.parametrize("disabled", [False, True], ids=["enabled", "disabled"])
def test_sdk_imported_first_and_disable(run: Callable[..., Result], disabled: bool) -> None:
    """Import order does not matter; ``AGENTLOG_DISABLE=ollama`` turns the adapter off."""
    tests = str(Path(__file__).resolve().parent)
    env = {"AGENTLOG_DISABLE": "ollama"} if disabled else {}
    line, records = host_run(run, SDK_FIRST.format(tests=tests), **env)
    assert line == f"RESULT 2 {not disabled}"
    assert len(records) == (0 if disabled else 2)
    if not disabled:
        assert [r["llm"]["streamed"] for r in records] == [False, True]
