"""What agentlog records for ``litellm`` calls, against the real package.

``litellm.completion``/``acompletion`` (plain and streamed) and ``embedding``/``aembedding``
are driven over loopback HTTP to ``tests/fake_llm.py``: through the openai SDK litellm
uses underneath (OpenAI-shaped endpoint) and through litellm's own HTTP client (an
Anthropic-shaped endpoint). Every test counts the requests the server received: one
litellm call is one record, although the openai SDK beneath it is patched too.

litellm fetches its model-cost map from GitHub when imported, unless
``LITELLM_LOCAL_MODEL_COST_MAP`` is set: it is set here before the import (agentlog never
imports litellm itself), and a subprocess test proves that nothing leaves loopback.

Covers A3: a litellm stream stays a ``CustomStreamWrapper``, sync and async, one record each.
Covers A4: a litellm stream closed early (sync ``close``, async ``aclose``) is recorded as
incomplete at once. (A dropped one is referenced by litellm's own logging object, so it
is cut when the run ends, not by ``gc.collect()``.)
Covers A5: the caller gets litellm's own types back (``ModelResponse``, ``CustomStreamWrapper``).
Covers A7: litellm imported before agentlog is still recorded.
Covers A8: litellm over the openai SDK gives exactly one record per request received.
Covers D1: the ``api_key`` passed to litellm never reaches the document.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before litellm is imported: no cost-map download, one logging thread (the suite's thread
# leak check needs litellm's pool to exist before a test starts, and to stay that size).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LOGGING_EXECUTOR_MAX_THREADS", "1")

litellm = pytest.importorskip("litellm")



from agentlog.testing import capture  # noqa: E402
from fake_bedrock import ACCESS_KEY, CLAUDE, SECRET_KEY, FakeBedrock  # noqa: E402
from fake_llm import FakeLLM, Reply  # noqa: E402
from helpers import validate_document  # noqa: E402
from llm_testing import MODES, folded, llm_records, on_and_off, only_record, usage  # noqa: E402

MODEL = "gpt-4o-mini"
MSGS = [{"role": "user", "content": "What is four plus five?"}]
KEY = "sk-litellm-canary-7f3a"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}]
WEATHER = ("get_weather", '{"city": "Paris"}')
# litellm's own code trips pydantic warnings (turned into errors by the suite); not ours.
pytestmark = [pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning"),
              pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")]
CustomStreamWrapper = litellm.litellm_core_utils.streaming_handler.CustomStreamWrapper


@pytest.fixture(scope="module", autouse=True)
def _warm() -> Iterator[None]:
    """Calls before the tests: litellm's long-lived threads (its logging pool, the pool
    that signs async Bedrock requests) start here, not inside a test."""
    with FakeLLM() as srv, capture():
        litellm.completion(model=MODEL, messages=MSGS, api_base=srv.openai_base_url,
                           api_key=KEY)
    _close_litellm_loop()  # before asyncio.run drops it
    with FakeBedrock() as bedrock, capture():
        arun(litellm.acompletion(
            model="bedrock/" + CLAUDE, messages=MSGS, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, aws_region_name="us-east-1",
            aws_bedrock_runtime_endpoint=bedrock.url))
    _close_litellm_loop()
    yield


def _close_litellm_loop() -> None:
    """A sync litellm call leaves an event loop set on the main thread (``get_event_loop``),
    which the next ``asyncio.run`` drops unclosed: close it, or its ResourceWarning fires in
    whatever test the garbage collector happens to run in."""
    local = getattr(asyncio.get_event_loop_policy(), "_local", None)
    loop = getattr(local, "_loop", None)
    if loop is not None and not loop.is_running():
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """litellm keeps a client (and its keep-alive socket) per endpoint; each test has its own
    server, so close them after it, before the suite's fd leak check."""
    yield
    cache = litellm.in_memory_llm_clients_cache
    clients = list(cache.cache_dict.values())
    cache.flush_cache()
    for client in clients:
        close = getattr(client, "close", None)
        if close is None:
            continue
        try:
            result = close()
            if inspect.isawaitable(result):
                asyncio.run(result)
        except Exception:  # noqa: BLE001 - an async client of a loop that has ended
            pass
    _close_litellm_loop()


def arun(work: Any) -> Any:
    """``asyncio.run(work)``, closing litellm's async clients before that loop ends."""

    async def main() -> Any:
        try:
            return await work
        finally:
            await litellm.close_litellm_async_clients()

    return asyncio.run(main())


def call(srv: FakeLLM, async_: bool, fn: str = "completion", **kw: Any) -> Any:
    """``litellm.<fn>`` (or its ``a`` twin) against the fake's OpenAI-shaped endpoint."""
    kw = {"model": MODEL, "api_base": srv.openai_base_url, "api_key": KEY, **kw}
    if fn == "completion":
        kw.setdefault("messages", MSGS)
    if async_:
        return arun(getattr(litellm, "a" + fn)(**kw))
    return getattr(litellm, fn)(**kw)


def stream(srv: FakeLLM, async_: bool, **kw: Any) -> tuple[Any, list[Any]]:
    """A streamed completion, read to its end in the same event loop that opened it."""
    kw = {"model": MODEL, "messages": MSGS, "api_base": srv.openai_base_url, "api_key": KEY,
          "stream": True, **kw}
    if not async_:
        s = litellm.completion(**kw)
        return s, list(s)

    async def main() -> tuple[Any, list[Any]]:
        s = await litellm.acompletion(**kw)
        return s, [chunk async for chunk in s]

    return arun(main())  # type: ignore[no-any-return]


def usage_of(u: Any) -> dict[str, Any]:
    details = u.prompt_tokens_details
    return usage(u.prompt_tokens, u.completion_tokens, details.cached_tokens,
                 getattr(details, "cache_write_tokens", None),
                 u.completion_tokens_details.reasoning_tokens)


# --------------------------------------------------------------------------- openai path


@MODES
def test_completion(srv: FakeLLM, async_: bool) -> None:
    """One record for a litellm call over the openai SDK: the provider litellm resolved,
    usage, cost, the caller's params; the ModelResponse is litellm's own."""
    with capture() as cap:
        r = call(srv, async_, temperature=0.2, max_tokens=20)
    assert type(r) is litellm.ModelResponse
    record = only_record(cap, srv, "/chat/completions")
    llm = record["llm"]
    assert record["agent_name"] == "openai:gpt-4o-mini"
    assert (llm["provider"], llm["operation"]) == ("openai", "chat")
    assert (llm["request_model"], llm["response_model"]) == (MODEL, r.model)
    assert llm["params"] == {"temperature": 0.2, "max_tokens": 20}
    assert llm["usage"] == usage_of(r.usage) and llm["usage"]["input_tokens"] == 5
    assert llm["cost_usd"] > 0 and llm["pricing_source"].startswith("genai-prices")
    assert llm["finish_reasons"] == ["stop"] and llm["response_id"] == r.id
    assert llm["server_address"] == srv.url.removeprefix("http://")
    assert record["input_data"] == MSGS
    assert record["output_data"] == {"role": "assistant", "content": r.choices[0].message.content}


@MODES
@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "usage"])
def test_stream(srv: FakeLLM, async_: bool, include_usage: bool) -> None:
    """A stream stays a CustomStreamWrapper and gives one record, closed at its end, with
    ttft; usage only as the provider reported it (not litellm's own estimate)."""
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    with capture() as cap:
        s, chunks = stream(srv, async_, **extra)
    assert type(s) is CustomStreamWrapper
    record = only_record(cap, srv, "/chat/completions")
    llm = record["llm"]
    assert llm["streamed"] is True and llm["incomplete"] is False
    assert llm["ttft_ms"] is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert record["output_data"] == {"role": "assistant", "content": text}
    assert text == "echo: What is four plus five?"
    assert llm["finish_reasons"] == ["stop"]
    if include_usage:
        assert llm["usage"]["input_tokens"] == 5 and llm["usage"]["output_tokens"] == 6
        assert llm["cost_usd"] > 0
    else:
        assert llm["usage"] is None and "estimate" in llm["usage_missing_reason"]


@MODES
def test_tool_call(srv: FakeLLM, async_: bool) -> None:
    """Tool calls, plain and streamed, in the record's normalised form."""
    srv.script(Reply(tool_calls=[WEATHER]), Reply(tool_calls=[WEATHER]))
    with capture() as cap:
        r = call(srv, async_, tools=TOOLS)
        stream(srv, async_, tools=TOOLS)
    _, records = folded(cap, 2)
    assert srv.count() == 2
    want = [{"id": "call_0", "name": "get_weather", "arguments": WEATHER[1]}]
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"
    for record in records:
        assert record["llm"]["tool_calls"] == want
        assert record["llm"]["finish_reasons"] == ["tool_calls"]
        assert record["llm"]["params"] == {"tools": ["get_weather"]}


@MODES
def test_stream_closed_early(srv: FakeLLM, async_: bool) -> None:
    """A stream closed after one chunk is one incomplete record, at once."""

    async def main() -> None:
        s = await litellm.acompletion(model=MODEL, messages=MSGS, api_base=srv.openai_base_url,
                                      api_key=KEY, stream=True)
        await s.__anext__()
        await s.aclose()

    with capture() as cap:
        if async_:
            arun(main())
        else:
            s = litellm.completion(model=MODEL, messages=MSGS, api_base=srv.openai_base_url,
                                   api_key=KEY, stream=True)
            next(s)
            s.close()
    (record,) = llm_records(validate_document(cap.document()))
    assert srv.count() == 1
    assert record["llm"]["incomplete"] is True and record["llm"]["ttft_ms"] is not None
    assert record["llm"]["incomplete_reason"] == "closed before its end"


@MODES
def test_embedding(srv: FakeLLM, async_: bool) -> None:
    with capture() as cap:
        r = call(srv, async_, "embedding", model="text-embedding-3-small", input=["a b", "c"])
    record = only_record(cap, srv, "/embeddings")
    llm = record["llm"]
    assert (llm["provider"], llm["operation"]) == ("openai", "embeddings")
    assert llm["usage"]["input_tokens"] == r.usage.prompt_tokens == 3
    assert record["input_data"] == ["a b", "c"]
    assert record["output_data"] == {"embeddings": 2, "dimensions": 8}


@MODES
def test_http_error(srv: FakeLLM, async_: bool) -> None:
    """litellm's exception reaches the caller; the record holds the status and the error."""
    srv.script(Reply(status=401))
    with capture() as cap, pytest.raises(litellm.AuthenticationError) as info:
        call(srv, async_)
    doc, (record,) = folded(cap, 1)
    assert srv.count() == 1
    assert record["llm"]["http_status"] == 401 and record["llm"]["provider"] == "openai"
    assert record["error"]["type"].endswith("AuthenticationError")
    assert doc["error_log"][0]["error"] == str(info.value)


def test_verbosity_0_records_nothing(srv: FakeLLM, verbosity: Any) -> None:
    verbosity(0)
    with capture() as cap:
        call(srv, False)
        stream(srv, False)
    assert srv.count() == 2
    assert validate_document(cap.document())["iterations"] == []


def test_no_key_nor_http_resource(srv: FakeLLM) -> None:
    """The api_key never reaches the document; litellm's own HTTP requests are not resources."""
    import httpx  # the http adapter is installed: litellm's traffic must stay quiet

    _ = httpx
    with capture() as cap:
        call(srv, False)
        stream(srv, False)
        litellm.completion(model="anthropic/claude-sonnet-4-6", messages=MSGS,
                           api_base=srv.url, api_key=KEY)
    doc = validate_document(cap.document())
    assert doc["resources_used"] == []
    assert KEY not in json.dumps(doc)
    assert len(folded(cap, 3)[1]) == srv.count() == 3


# --------------------------------------------------------------------------- anthropic path


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_anthropic_endpoint(srv: FakeLLM, streamed: bool) -> None:
    """litellm's own HTTP client to an Anthropic-shaped endpoint: provider ``anthropic``,
    the model without litellm's routing prefix, usage with cache fields, and a cost."""
    with capture() as cap:
        r = litellm.completion(model="anthropic/claude-sonnet-4-6", messages=MSGS,
                               api_base=srv.url, api_key=KEY, stream=streamed)
        if streamed:
            assert type(r) is CustomStreamWrapper
            list(r)
    record = only_record(cap, srv, "/messages")
    llm = record["llm"]
    assert (llm["provider"], llm["request_model"]) == ("anthropic", "claude-sonnet-4-6")
    assert llm["usage"] == {"input_tokens": 5, "output_tokens": 6, "cache_read_input_tokens": 0,
                            "cache_write_input_tokens": 0, "reasoning_output_tokens": 0}
    assert llm["cost_usd"] > 0
    assert record["output_data"]["content"] == "echo: What is four plus five?"


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_bedrock_endpoint(async_: bool, streamed: bool) -> None:
    """litellm's own Bedrock client (SigV4 over httpx, not boto3) to the fake Bedrock
    server: provider ``aws-bedrock``, priced; a stream's usage comes from Bedrock's
    metadata event, which litellm keeps but never hands out as a chunk."""
    kw = {"model": "bedrock/" + CLAUDE, "messages": MSGS, "aws_access_key_id": ACCESS_KEY,
          "aws_secret_access_key": SECRET_KEY, "aws_region_name": "us-east-1",
          "stream": streamed}

    async def main() -> None:
        r = await litellm.acompletion(**kw)
        if streamed:
            [chunk async for chunk in r]

    with FakeBedrock() as srv, capture() as cap:
        kw["aws_bedrock_runtime_endpoint"] = srv.url
        if async_:
            arun(main())
        else:
            r = litellm.completion(**kw)
            if streamed:
                list(r)
    assert srv.count() == srv.count("ConverseStream" if streamed else "Converse") == 1
    doc, (record,) = folded(cap, 1)
    llm = record["llm"]
    assert (llm["provider"], llm["request_model"]) == ("aws-bedrock", CLAUDE)
    assert llm["usage"]["input_tokens"] == 5 and llm["usage"]["output_tokens"] == 6
    assert llm["cost_usd"] > 0 and llm["streamed"] is streamed
    assert llm["server_address"] == srv.url.removeprefix("http://")
    assert SECRET_KEY not in json.dumps(doc)


# --------------------------------------------------------------------------- process level

def test_litellm_first_no_network_and_disable(tmp_path: Path) -> None:
    """litellm imported before agentlog is recorded; nothing leaves loopback at import or
    call time (with LITELLM_LOCAL_MODEL_COST_MAP); AGENTLOG_DISABLE=litellm,openai records
    nothing and leaves litellm unpatched. (Both hosts run at once: a litellm import and
    interpreter exit take seconds each.)"""
    tests = os.path.dirname(__file__)
    source = f"""
sys.path.insert(0, {tests!r})
import litellm
import agentlog
from fake_llm import FakeLLM
with FakeLLM() as srv:
    kw = dict(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}],
              api_base=srv.openai_base_url, api_key="sk-x")
    litellm.completion(**kw)
    list(litellm.completion(stream=True, **kw))
    print("requests", srv.count())
print("patched", getattr(litellm.completion, "__agentlog_patched__", False))
print("outside", outside)
"""
    on, _ = on_and_off(tmp_path, source, "litellm,openai", 240,
                       LITELLM_LOCAL_MODEL_COST_MAP="True")
    assert {r["llm"]["provider"] for r in llm_records(on)} == {"openai"}
