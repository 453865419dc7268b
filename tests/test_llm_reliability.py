"""agentlog never changes or breaks an OpenAI or Anthropic call (TESTPLAN A1-A6, A12, A13).

Both SDKs run for real against ``fake_llm.FakeLLM`` on loopback (or an in-process
``httpx2.MockTransport`` where the request must not be sent). The oracle is differential:
every scenario runs once with agentlog installed and once after ``agentlog.set_logging
(False)`` put the SDKs' original methods back, each time against a fresh server (so the
ids the fake hands out match), and what the user can observe must be equal. Records are
counted from ``agentlog.testing.capture()`` and every capture is folded into a document
that is validated against the schema.

Process-level cases (asyncio loops ending, signals, "only one warning per run") run in
subprocesses from ``llm_reliability_scripts/``.

Covers A1: RuntimeError/KeyError/MemoryError/RecursionError at each LLM hook point: same
    result, each failure in error_log, then the breaker makes the hook a passthrough.
Covers A2: KeyboardInterrupt in the loop body, CancelledError, and a real SIGINT inside the
    SDK's read propagate unchanged; the record says interrupted/cancelled.
Covers A3: sync/async streams, ``.stream()`` managers, raw and streaming responses, pickle /
    copy / deepcopy behave as unwrapped, keep their types, and make exactly one record.
Covers A4: break, cancel, ``aclose()`` from another task, drop + ``gc.collect()`` (cut within
    1 s), loop closed while suspended, under ``-W error``: quiet, next call unparented.
Covers A5: the caller gets the very object the SDK made (response, custom stream class, None,
    str, raw JSON, model, raw response).
Covers A6: server drift (null choices/delta/output/usage, unknown fields and events) changes
    nothing for the user; a stream without ``_iterator`` is warned about once per run.
Covers A12: hostile objects in SDK arguments (raising/slow repr, str, getattr, model_dump,
    100 MB text): the SDK's own result, a marker in the record, callables run at most once.
Covers A13: uninstall restores the originals; old clients, half-read streams and unparsed raw
    responses keep working; nothing is recorded until install again.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import inspect
import json
import pickle
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import anthropic
import httpx2
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionChunk

import agentlog
from agentlog import _guard, api
from agentlog.integrations import _llm
from agentlog.integrations import anthropic as anthropic_adapter
from agentlog.integrations import openai as openai_adapter
from agentlog.testing import Captured, capture
from fake_llm import FakeLLM, Reply, anthropic_client, openai_client
from helpers import Result, script_env, validate_document

SDKS = ["openai", "anthropic"]
GPT = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-6"
MSGS = [{"role": "user", "content": "count one two three four"}]
SCRIPTS = Path(__file__).resolve().parent / "llm_reliability_scripts"
ECHO = "echo: count one two three four"  # what the fake answers to MSGS


# -- helpers ----------------------------------------------------------------------------
RESPONSES: list[httpx2.Response] = []
"""Every HTTP response the clients below received, as httpx2 made it (for ``is`` checks)."""


async def _seen_async(response: httpx2.Response) -> None:
    RESPONSES.append(response)


def make_client(srv: FakeLLM, sdk: str, async_: bool = False) -> Any:
    """A real client of the fake; its own HTTP client skips loading CA certificates (slow)."""
    if async_:
        http: Any = httpx2.AsyncClient(verify=False, event_hooks={"response": [_seen_async]})
    else:
        http = httpx2.Client(verify=False, event_hooks={"response": [RESPONSES.append]})
    make = openai_client if sdk == "openai" else anthropic_client
    return make(srv, async_=async_, http_client=http)


@pytest.fixture(scope="module", autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    RESPONSES.clear()
    gc.unfreeze()


@pytest.fixture(autouse=True)
def _cheap_gc() -> None:
    """Tests here call ``gc.collect()`` often; with the SDKs loaded one costs ~100 ms. What
    exists before each test is set aside (given back when the module ends)."""
    RESPONSES.clear()
    gc.collect()
    gc.freeze()


def kwargs(sdk: str, **extra: Any) -> dict[str, Any]:
    """The arguments of one small chat call."""
    if sdk == "openai":
        return {"model": GPT, "messages": MSGS, **extra}
    return {"model": CLAUDE, "max_tokens": 64, "messages": MSGS, **extra}


def resource(client: Any, sdk: str) -> Any:
    return client.chat.completions if sdk == "openai" else client.messages


def stream_types(sdk: str) -> tuple[type, type]:
    if sdk == "openai":
        return openai.Stream, openai.AsyncStream
    return anthropic.Stream, anthropic.AsyncStream


def dump(x: Any) -> Any:
    """What the user can see of one SDK object, as plain data."""
    return x.model_dump(warnings=False) if isinstance(x, pydantic.BaseModel) else x


def llm_events(cap: Captured) -> list[dict[str, Any]]:
    return [e for e in cap if "llm" in e]


def checked(cap: Captured) -> list[dict[str, Any]]:
    """The LLM records of a capture, once the document they fold into is valid."""
    validate_document(cap.document())
    return llm_events(cap)


def llm_errors(cap: Captured) -> list[dict[str, Any]]:
    return [e for e in cap.errors if e.get("source") == "llm"]


@contextlib.contextmanager
def uninstalled() -> Iterator[None]:
    """agentlog off: ``set_logging(False)`` puts the SDKs' own methods back."""
    saved = api.RECORDER.verbosity
    agentlog.set_logging(False)
    try:
        yield
    finally:
        agentlog.set_logging(True, verbosity=saved)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", value) or ("raised", type, message): comparable across runs."""
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - the exception is the observation
        return ("raised", type(exc), str(exc))


class Diff:
    """One scenario run with agentlog and without it."""

    def __init__(self, on: tuple[str, Any], off: tuple[str, Any], cap: Captured,
                 off_cap: Captured) -> None:
        self.on = on
        self.off = off
        self.cap = cap
        self.records = checked(cap)
        assert llm_events(off_cap) == [], "a call made while uninstalled was recorded"

    def same(self, raised: bool = False) -> Any:
        """What both runs gave (equal); ``raised``: the SDK itself is expected to raise."""
        assert self.on == self.off
        assert self.on[0] == ("raised" if raised else "ok"), self.on
        return self.on[1]


def differential(sdk: str, scenario: Callable[..., Any], *replies: Reply,
                 async_: bool = False) -> Diff:
    """Run ``scenario(client)`` with agentlog and without, each on a fresh server."""
    runs = []
    for on in (True, False):
        with contextlib.ExitStack() as stack:
            if not on:
                stack.enter_context(uninstalled())
            srv = stack.enter_context(FakeLLM())
            srv.script(*replies)
            cap = stack.enter_context(capture())
            if async_:
                async def main(srv: FakeLLM = srv) -> Any:
                    async with make_client(srv, sdk, async_=True) as client:
                        return await scenario(client)

                got = outcome(lambda: asyncio.run(main()))
            else:
                with make_client(srv, sdk) as client:
                    got = outcome(lambda client=client: scenario(client))
            gc.collect()  # streams and raw responses the scenario dropped
            runs.append((got, cap))
    return Diff(runs[0][0], runs[1][0], runs[0][1], runs[1][1])


def one_record(diff: Diff, incomplete: bool | None = None) -> dict[str, Any]:
    assert len(diff.records) == 1, [r["llm"] for r in diff.records]
    (rec,) = diff.records
    if incomplete is not None:
        assert rec["llm"]["incomplete"] is incomplete, rec["llm"]
    return rec


# -- A3: the stream contract ------------------------------------------------------------
def _for(s: Any) -> Any:
    return [dump(x) for x in s]


def _next(s: Any) -> Any:
    items = []
    while True:
        try:
            items.append(dump(next(s)))
        except StopIteration:
            break
    try:
        next(s)
        items.append("more after the end")
    except StopIteration:
        items.append("StopIteration again")
    return items


def _with(s: Any) -> Any:
    with s as x:
        same = x is s
        items = [dump(i) for i in x]
    return same, items, s.response.is_closed


def _with_break(s: Any) -> Any:
    with s as x:
        first = None
        for item in x:
            first = dump(item)
            break
    return first, s.response.is_closed


def _close_midway(s: Any) -> Any:
    # What iterating after close() yields races with the socket: not compared.
    first = dump(next(s))
    s.close()
    return first, s.response.is_closed


def _close_first(s: Any) -> Any:
    s.close()
    s.close()
    return s.response.is_closed, outcome(lambda: next(s))


def _looks(s: Any) -> Any:
    r = s.response
    seen = (type(s), type(r), r.status_code, r.headers.get("content-type"),
            type(iter(s)).__name__, hasattr(s, "_iterator"))
    s.close()
    return seen


SYNC_WAYS = {
    # way: (consume, record incomplete)
    "for": (_for, False),
    "next": (_next, False),
    "with": (_with, False),
    "with-break": (_with_break, True),
    "close-midway": (_close_midway, True),
    "close-first": (_close_first, True),
    "attributes": (_looks, True),
}


@pytest.mark.parametrize("way", list(SYNC_WAYS))
@pytest.mark.parametrize("sdk", SDKS)
def test_sync_stream_behaves_as_unwrapped(sdk: str, way: str) -> None:
    """A3: each way of consuming a sync stream sees what it sees without agentlog; the
    stream keeps its type; exactly one record, incomplete only when not read to the end."""
    consume, incomplete = SYNC_WAYS[way]
    kinds: list[bool] = []

    def scenario(client: Any) -> Any:
        s = resource(client, sdk).create(**kwargs(sdk), stream=True)
        kinds.append(isinstance(s, stream_types(sdk)[0]))
        return consume(s)

    diff = differential(sdk, scenario)
    diff.same()
    assert kinds == [True, True]
    rec = one_record(diff, incomplete)
    assert rec["llm"]["streamed"] is True
    if not incomplete:
        assert rec["output"]["content"] == ECHO


async def _afor(s: Any) -> Any:
    return [dump(x) async for x in s]


async def _anext(s: Any) -> Any:
    items = []
    while True:
        try:
            items.append(dump(await s.__anext__()))
        except StopAsyncIteration:
            break
    try:
        await s.__anext__()
        items.append("more after the end")
    except StopAsyncIteration:
        items.append("StopAsyncIteration again")
    return items


async def _awith(s: Any) -> Any:
    async with s as x:
        same = x is s
        items = [dump(i) async for i in x]
    return same, items, s.response.is_closed


async def _awith_break(s: Any) -> Any:
    async with s as x:
        first = None
        async for item in x:
            first = dump(item)
            break
    return first, s.response.is_closed


async def _aclose_midway(s: Any) -> Any:
    first = dump(await s.__anext__())
    has_aclose = hasattr(s, "aclose")
    await (s.aclose() if has_aclose else s.close())
    return first, has_aclose, s.response.is_closed


async def _aclose_first(s: Any) -> Any:
    await s.close()
    await s.close()
    return s.response.is_closed


async def _alooks(s: Any) -> Any:
    r = s.response
    seen = (type(s), type(r), r.status_code, r.headers.get("content-type"),
            type(s.__aiter__()).__name__)
    await s.close()
    return seen


ASYNC_WAYS = {
    "async-for": (_afor, False),
    "anext": (_anext, False),
    "async-with": (_awith, False),
    "async-with-break": (_awith_break, True),
    "aclose-midway": (_aclose_midway, True),
    "close-first": (_aclose_first, True),
    "attributes": (_alooks, True),
}


@pytest.mark.parametrize("way", list(ASYNC_WAYS))
@pytest.mark.parametrize("sdk", SDKS)
def test_async_stream_behaves_as_unwrapped(sdk: str, way: str) -> None:
    """A3: the same for async streams (``async for``, ``__anext__``, ``async with``,
    ``aclose``/``close``)."""
    consume, incomplete = ASYNC_WAYS[way]
    kinds: list[bool] = []

    async def scenario(client: Any) -> Any:
        s = await resource(client, sdk).create(**kwargs(sdk), stream=True)
        kinds.append(isinstance(s, stream_types(sdk)[1]))
        return await consume(s)

    diff = differential(sdk, scenario, async_=True)
    diff.same()
    assert kinds == [True, True]
    rec = one_record(diff, incomplete)
    if not incomplete:
        assert rec["output"]["content"] == ECHO


def _manager(client: Any, sdk: str) -> Any:
    if sdk == "openai":
        return client.chat.completions.stream(model=GPT, messages=MSGS)
    return client.messages.stream(**kwargs(sdk))


def _closed(st: Any) -> bool:
    """Whether a helper stream's HTTP response is closed (openai's keeps it on the raw one)."""
    response = getattr(st, "response", None) or st._raw_stream.response
    return bool(response.is_closed)


def _final(st: Any, sdk: str) -> Any:
    return st.get_final_completion() if sdk == "openai" else st.get_final_message()


@pytest.mark.parametrize("way", ["events", "until-done", "break", "close", "text"])
@pytest.mark.parametrize("sdk", SDKS)
def test_stream_manager_behaves_as_unwrapped(sdk: str, way: str) -> None:
    """A3: the ``.stream()`` helpers: events, final message, text, break, close."""

    def scenario(client: Any) -> Any:
        with _manager(client, sdk) as st:
            seen: list[Any] = [type(st)]
            if way == "events":
                seen.append([ev.type for ev in st])
                seen.append(dump(_final(st, sdk)))
            elif way == "until-done":
                st.until_done()
                seen.append(dump(_final(st, sdk)))
            elif way == "text":
                if sdk == "anthropic":
                    seen.append(list(st.text_stream))
                else:
                    seen.append([ev.delta for ev in st if ev.type == "content.delta"])
                seen.append(dump(_final(st, sdk)))
            elif way == "break":
                for ev in st:
                    seen.append(ev.type)
                    break
            else:
                seen.append(next(iter(st)).type)
                st.close()
                seen.append(_closed(st))
        seen.append(_closed(st))
        return seen

    diff = differential(sdk, scenario)
    diff.same()
    rec = one_record(diff, incomplete=way in ("break", "close"))
    if way not in ("break", "close"):
        assert rec["output"]["content"] == ECHO


@pytest.mark.parametrize("sdk", SDKS)
def test_async_stream_manager_behaves_as_unwrapped(sdk: str) -> None:
    """A3: the async ``.stream()`` helpers under ``async with``."""

    async def scenario(client: Any) -> Any:
        if sdk == "openai":
            manager = client.chat.completions.stream(model=GPT, messages=MSGS)
        else:
            manager = client.messages.stream(**kwargs(sdk))
        async with manager as st:
            events = [ev.type async for ev in st]
            final = await (st.get_final_completion() if sdk == "openai"
                           else st.get_final_message())
        return type(st), events, dump(final), _closed(st)

    diff = differential(sdk, scenario, async_=True)
    diff.same()
    one_record(diff, incomplete=False)


@pytest.mark.parametrize("way", ["create", "stream-manager", "break"])
def test_responses_streams_behave_as_unwrapped(way: str) -> None:
    """A3: the Responses API streamed, raw and through ``responses.stream()``."""

    def scenario(client: Any) -> Any:
        if way == "create":
            s = client.responses.create(model=GPT, input="count to four", stream=True)
            return type(s), [dump(e) for e in s]
        if way == "break":
            with client.responses.create(model=GPT, input="count to four", stream=True) as s:
                for e in s:
                    return type(s), dump(e)
        with client.responses.stream(model=GPT, input="count to four") as st:
            events = [e.type for e in st]
            return type(st), events, dump(st.get_final_response())

    diff = differential("openai", scenario)
    diff.same()
    one_record(diff, incomplete=way == "break")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("sdk", SDKS)
def test_with_raw_response_parse_behaves_as_unwrapped(sdk: str, stream: bool) -> None:
    """A3/A5: ``with_raw_response`` returns the SDK's own response type; ``.parse()`` gives
    the same (cached) object or stream; one record."""

    def scenario(client: Any) -> Any:
        raw = resource(client, sdk).with_raw_response.create(**kwargs(sdk), stream=stream)
        seen: list[Any] = [type(raw), raw.status_code, raw.headers.get("content-type")]
        parsed = raw.parse()
        seen.append(type(parsed))
        if stream:
            seen.append([dump(x) for x in parsed])
        else:
            seen += [dump(parsed), raw.parse() is parsed]
        return seen

    diff = differential(sdk, scenario)
    seen = diff.same()
    assert seen[0].__name__ == ("LegacyAPIResponse" if sdk == "openai" else "APIResponse")
    assert seen[3] is (stream_types(sdk)[0] if stream else seen[3])
    one_record(diff, incomplete=False)


@pytest.mark.parametrize("sdk", SDKS)
def test_raw_response_never_parsed_is_recorded_once(sdk: str) -> None:
    """A3: a raw response the caller never parses is still one record, from its body."""

    def scenario(client: Any) -> Any:
        raw = resource(client, sdk).with_raw_response.create(**kwargs(sdk))
        return type(raw), raw.status_code, json.loads(raw.http_response.content)["model"]

    diff = differential(sdk, scenario)
    diff.same()
    rec = one_record(diff)
    assert rec["output"]["content"], rec  # read from the body the SDK had received


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("sdk", SDKS)
def test_with_streaming_response_behaves_as_unwrapped(sdk: str, stream: bool) -> None:
    """A3: ``with_streaming_response``, plain and streamed."""

    def scenario(client: Any) -> Any:
        create = resource(client, sdk).with_streaming_response.create
        with create(**kwargs(sdk), stream=stream) as raw:
            parsed = raw.parse()
            body = [dump(x) for x in parsed] if stream else dump(parsed)
            return type(raw), type(parsed), body

    diff = differential(sdk, scenario)
    diff.same()
    one_record(diff, incomplete=False)


@pytest.mark.parametrize("sdk", SDKS)
def test_async_with_raw_response_parse_behaves_as_unwrapped(sdk: str) -> None:
    """A3: async ``with_raw_response`` of a stream, parsed then read."""

    async def scenario(client: Any) -> Any:
        raw = await resource(client, sdk).with_raw_response.create(**kwargs(sdk), stream=True)
        s = raw.parse()  # openai's legacy response parses synchronously
        if inspect.isawaitable(s):
            s = await s
        return type(raw), type(s), [dump(x) async for x in s]

    diff = differential(sdk, scenario, async_=True)
    diff.same()
    one_record(diff, incomplete=False)


def _copies(obj: Any) -> Any:
    """What pickle, copy and deepcopy do to ``obj``; unraisable errors they leave too."""
    unraisable: list[type] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(u.exc_type)
    try:
        seen = (
            outcome(lambda: len(pickle.dumps(obj)) > 0),
            outcome(lambda: type(copy.copy(obj))),
            outcome(lambda: type(copy.deepcopy(obj))),
        )
        gc.collect()  # half-built copies of the client die here
    finally:
        sys.unraisablehook = previous
    return seen, sorted(t.__name__ for t in unraisable)


@pytest.mark.parametrize("kind", ["stream", "manager", "raw"])
@pytest.mark.parametrize("sdk", SDKS)
def test_pickle_copy_deepcopy_raise_as_unwrapped(sdk: str, kind: str) -> None:
    """A3: pickle, copy and deepcopy of a live stream, helper stream or raw response do
    (and fail with) exactly what they do without agentlog; the stream still works after."""

    def scenario(client: Any) -> Any:
        if kind == "manager":
            with _manager(client, sdk) as st:
                seen = _copies(st)
                return seen, [ev.type for ev in st]
        if kind == "raw":
            raw = resource(client, sdk).with_raw_response.create(**kwargs(sdk))
            return _copies(raw), dump(raw.parse())
        s = resource(client, sdk).create(**kwargs(sdk), stream=True)
        seen = _copies(s)
        return seen, [dump(x) for x in s]

    diff = differential(sdk, scenario)
    seen = diff.same()
    assert seen[0][0][0][0] == "raised", "pickling a live stream should fail without agentlog too"
    one_record(diff, incomplete=False)


# -- A4: early termination (in-process; loops ending are in the subprocess tests) ---------
@pytest.mark.parametrize("inside", [False, True], ids=["bare", "in-interaction"])
@pytest.mark.parametrize("how", ["break", "next"])
@pytest.mark.parametrize("sdk", SDKS)
def test_dropped_stream_is_cut_within_a_second_of_gc(sdk: str, how: str, inside: bool) -> None:
    """Dropped after one chunk: incomplete once collected; the next call stands alone."""
    with FakeLLM() as srv, make_client(srv, sdk) as client, capture() as cap:
        scope = agentlog.interaction("planner", "plan") if inside else contextlib.nullcontext()
        with scope:
            s = resource(client, sdk).create(**kwargs(sdk), stream=True)
            if how == "break":
                for _ in s:
                    break
            else:
                next(s)
        del s
        start = time.monotonic()
        gc.collect()
        while not llm_events(cap) and time.monotonic() - start < 1.0:
            time.sleep(0.01)
        assert len(llm_events(cap)) == 1, "not finalised within 1 s of gc.collect()"
        later = resource(client, sdk).create(**kwargs(sdk))
    cut, after = checked(cap)
    assert cut["llm"]["incomplete"] is True
    assert "garbage-collected" in cut["llm"]["incomplete_reason"]
    assert (cut["ev"] == "action") is inside
    # The later call is an interaction of its own, in an iteration of its own.
    assert after["ev"] == "interaction" and after["llm"]["incomplete"] is False
    assert after["agent"] != "planner" and after.get("parent") is None
    assert after["ix"] != cut["ix"] and after["it"] != cut.get("it")
    assert after["output"]["content"] == dump(later)["choices"][0]["message"]["content"] \
        if sdk == "openai" else after["output"]["content"] == later.content[0].text


@pytest.mark.parametrize("sdk", SDKS)
def test_stream_left_open_is_cut_once_when_the_run_ends(sdk: str) -> None:
    """Never closed nor collected: the run's end closes it, once; closing it later adds none."""
    with FakeLLM() as srv, make_client(srv, sdk) as client, capture() as cap:
        s = resource(client, sdk).create(**kwargs(sdk), stream=True)
        first = next(s)
        _llm.close_open_calls()  # what the run's end does before its document
        rest = list(s)
        s.close()
        del s
        gc.collect()
    (rec,) = checked(cap)
    assert rec["llm"]["incomplete"] is True
    assert rec["llm"]["incomplete_reason"] == "still open when the run ended"
    assert first is not None and len(rest) > 2  # the user's stream went on regardless


# -- A2: BaseExceptions pass through unchanged ------------------------------------------
@pytest.mark.parametrize("form", ["with", "finally"])
@pytest.mark.parametrize("sdk", SDKS)
def test_keyboard_interrupt_in_loop_body_propagates(sdk: str, form: str) -> None:
    """A2: Ctrl-C raised by the caller's own loop body reaches it unchanged (same object);
    the stream, closed by ``with``/``finally`` meanwhile, is recorded as interrupted."""
    raised = KeyboardInterrupt()
    caught: BaseException | None = None
    with FakeLLM() as srv, make_client(srv, sdk) as client, capture() as cap:
        s = resource(client, sdk).create(**kwargs(sdk), stream=True)
        try:
            if form == "with":
                with s:
                    for _ in s:
                        raise raised
            else:
                try:
                    for _ in s:
                        raise raised
                finally:
                    s.close()
        except KeyboardInterrupt as exc:
            caught = exc
    assert caught is raised and caught.__context__ is None
    (rec,) = checked(cap)
    assert rec["llm"]["incomplete"] is True
    assert rec["llm"]["incomplete_reason"] == "interrupted"
    assert "error" not in rec and llm_errors(cap) == []


@pytest.mark.parametrize("where", ["in-body", "awaiting-sdk"])
@pytest.mark.parametrize("sdk", SDKS)
def test_cancelled_error_propagates(sdk: str, where: str) -> None:
    """Cancelled while the loop body awaits, or while the SDK awaits the next chunk."""

    async def main(srv: FakeLLM) -> tuple[BaseException, bool]:
        async with make_client(srv, sdk, async_=True) as client:
            s = await resource(client, sdk).create(**kwargs(sdk), stream=True)
            got = asyncio.Event()

            async def consume() -> None:
                async with s:
                    async for _ in s:
                        got.set()
                        if where == "in-body":
                            await asyncio.sleep(30)

            task = asyncio.create_task(consume())
            await got.wait()
            await asyncio.sleep(0.05)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError as exc:
                return exc, task.cancelled()
            raise AssertionError("the task was not cancelled")

    with FakeLLM() as srv, capture() as cap:
        # Slow chunks: the cancellation lands while the SDK waits for the second one.
        srv.script(Reply(chunk_delay_s=0.5 if where == "awaiting-sdk" else 0.0))
        exc, cancelled = asyncio.run(main(srv))
    assert type(exc) is asyncio.CancelledError and cancelled
    (rec,) = checked(cap)
    assert rec["llm"]["incomplete"] is True
    assert rec["llm"]["incomplete_reason"] == "cancelled"
    assert "error" not in rec and llm_errors(cap) == []


# -- A5: the very objects the SDK made ----------------------------------------------------
class OpenAIKept(openai.Stream[ChatCompletionChunk]):
    """A stream class that remembers each instance the SDK builds."""

    made: ClassVar[list[Any]] = []

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.made.append(self)


class AnthropicKept(anthropic.Stream[anthropic.types.RawMessageStreamEvent]):
    made: ClassVar[list[Any]] = []

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.made.append(self)


def _post(client: Any, sdk: str, cast_to: Any, **kw: Any) -> Any:
    """The SDK's generic ``post``: what every resource method calls."""
    path = "/chat/completions" if sdk == "openai" else "/v1/messages"
    body = kwargs(sdk, stream=kw.get("stream", False))
    return client.post(path, body=body, cast_to=cast_to, **kw)


@pytest.mark.parametrize("sdk", SDKS)
def test_returned_objects_are_the_ones_the_sdk_made(sdk: str) -> None:
    """A5: whatever the SDK is asked to return (the httpx2 response, a custom stream class,
    None, str, raw JSON, a model, a raw response), the caller gets that very object."""
    kept = OpenAIKept if sdk == "openai" else AnthropicKept
    model = openai.types.chat.ChatCompletion if sdk == "openai" else anthropic.types.Message

    def scenario(client: Any) -> Any:
        kept.made.clear()
        seen: list[Any] = []
        r = _post(client, sdk, httpx2.Response)
        seen += [type(r), r is RESPONSES[-1]]
        s = _post(client, sdk, model, stream=True, stream_cls=kept)
        seen += [type(s), s is kept.made[-1], s.response is RESPONSES[-1], [dump(x) for x in s]]
        seen.append(_post(client, sdk, type(None)))
        text = _post(client, sdk, str)
        seen += [type(text), json.loads(text)["model"]]
        data = _post(client, sdk, object)
        seen += [type(data), data.get("id")]
        parsed = resource(client, sdk).create(**kwargs(sdk))
        seen += [type(parsed), dump(parsed)]
        raw = resource(client, sdk).with_raw_response.create(**kwargs(sdk))
        seen += [type(raw), raw.http_response is RESPONSES[-1]]
        return seen

    diff = differential(sdk, scenario)
    seen = diff.same()
    assert seen[0] is httpx2.Response and seen[1] is True
    assert seen[2] is kept and seen[3] is True and seen[4] is True
    assert seen[6] is None and seen[7] is str and seen[9] is dict
    assert seen[-1] is True
    assert len(diff.records) == 7  # one per request, whatever the SDK was asked to return
    assert all(r["llm"]["incomplete"] is False for r in diff.records)


@pytest.mark.parametrize("sdk", SDKS)
def test_foreign_pydantic_cast_fails_as_unwrapped(sdk: str) -> None:
    """The SDK refuses a plain pydantic model as ``cast_to``: the same error, one record."""

    class Mine(pydantic.BaseModel):
        id: str

    diff = differential(sdk, lambda client: _post(client, sdk, Mine))
    diff.same(raised=True)
    rec = one_record(diff)
    assert rec["error"]["type"] == "TypeError"


# -- A6: the SDK or the server has drifted ------------------------------------------------
def _sse(*events: dict[str, Any], done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def _typed_sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        b"event: " + str(e["type"]).encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n"
        for e in events
    )


HEAD = {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": GPT}
DRIFT = {
    "chat-choices-null": (
        "chat", {"id": "c-1", "object": "chat.completion", "created": 1, "model": GPT,
                 "choices": None, "brand_new_field": {"x": [1, 2]}}),
    "chat-message-null-no-usage": (
        "chat", {"id": "c-1", "object": "chat.completion", "created": 1, "model": GPT,
                 "choices": [{"index": 0, "message": None, "finish_reason": "stop",
                              "brand_new": 1}]}),
    "chat-stream-nulls": ("chat-stream", _sse(
        {**HEAD, "choices": None},
        {**HEAD, "choices": [{"index": 0, "delta": None, "finish_reason": None}]},
        {**HEAD, "choices": [{"index": 0, "delta": {"content": "hi", "brand_new": 2},
                              "finish_reason": "stop"}], "brand_new": [1]},
        {**HEAD, "choices": [], "usage": None},
    )),
    "chat-stream-no-id-no-model": ("chat-stream", _sse(
        {"object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
        {"choices": [{"delta": {"content": " there"}}]},
    )),
    "responses-output-null": (
        "responses", {"id": "resp_1", "object": "response", "created_at": 1, "model": GPT,
                      "status": "completed", "output": None, "brand_new": True}),
    "responses-stream-output-null": ("responses-stream", _typed_sse(
        {"type": "response.brand_new_event", "sequence_number": 0, "payload": {"x": 1}},
        {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "m",
         "output_index": 0, "content_index": 0, "delta": "hi", "logprobs": []},
        {"type": "response.completed", "sequence_number": 2, "response": {
            "id": "resp_1", "object": "response", "created_at": 1, "model": GPT,
            "status": "completed", "output": None, "usage": None}},
    )),
    "embeddings-data-null": (
        "embeddings", {"object": "list", "data": None, "model": "text-embedding-3-small"}),
    "anthropic-content-null": (
        "messages", {"id": "msg_1", "type": "message", "role": "assistant", "model": CLAUDE,
                     "content": None, "stop_reason": None, "brand_new": {"a": 1}}),
    "anthropic-stream-unknown-events": ("messages-stream", _typed_sse(
        {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": CLAUDE,
            "content": [], "stop_reason": None, "usage": None}},
        {"type": "brand_new_event", "payload": {"x": 1}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "hologram", "shape": "cube"}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "hologram_delta", "voxels": 3}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": None},
        {"type": "message_stop", "brand_new": 1},
    )),
}


DRIFT_TEXT = {"chat-stream-nulls": "hi", "chat-stream-no-id-no-model": "hi there",
              "anthropic-stream-unknown-events": "hi", "responses-stream-output-null": None}


def _drift_call(client: Any, kind: str) -> Any:
    if kind == "chat":
        return dump(client.chat.completions.create(model=GPT, messages=MSGS))
    if kind == "chat-stream":
        return [dump(x) for x in client.chat.completions.create(
            model=GPT, messages=MSGS, stream=True)]
    if kind == "responses":
        return dump(client.responses.create(model=GPT, input="hi"))
    if kind == "responses-stream":
        return [dump(x) for x in client.responses.create(model=GPT, input="hi", stream=True)]
    if kind == "embeddings":
        return dump(client.embeddings.create(model="text-embedding-3-small", input="hi"))
    if kind == "messages":
        return dump(client.messages.create(**kwargs("anthropic")))
    return [dump(x) for x in client.messages.create(**kwargs("anthropic"), stream=True)]


@pytest.mark.parametrize("case", list(DRIFT))
def test_server_drift_changes_nothing_for_the_user(case: str) -> None:
    """A6: nulls where objects were, missing usage/ids/indexes, unknown fields and event
    types: the caller gets what it gets without agentlog, and the call is still recorded."""
    kind, body = DRIFT[case]
    sdk = "anthropic" if kind.startswith("messages") else "openai"
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    diff = differential(sdk, lambda client: _drift_call(client, kind), Reply(raw=raw))
    raised = case == "embeddings-data-null"  # the SDK's own ValueError, with or without us
    diff.same(raised=raised)
    rec = one_record(diff, incomplete=False)
    assert ("error" in rec) is raised
    assert rec["llm"]["streamed"] is kind.endswith("stream")
    if case in DRIFT_TEXT:
        assert rec["output"]["content"] == DRIFT_TEXT[case]


# -- subprocesses: loops that end, signals, once-per-run warnings ---------------------------
def run_pair(tmp_path: Path, script: str, *args: str) -> tuple[Result, Result]:
    """``script`` with agentlog and without it, side by side, under ``python -W error``."""
    procs = {}
    for on in (True, False):
        logs = tmp_path / ("with" if on else "without")
        env = script_env(logs, WITH_AGENTLOG="1" if on else "0")
        procs[on] = (logs, subprocess.Popen(
            [sys.executable, "-W", "error", str(SCRIPTS / script), *args], env=env,
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = {}
    for on, (logs, proc) in procs.items():
        out, err = proc.communicate(timeout=60)
        results[on] = Result(proc.returncode, out, err, logs)
    assert not any(results[False].logs.glob("*")), "agentlog ran in the run without it"
    return results[True], results[False]


_ASYNCGEN_NOISE = re.compile(
    r"^an error occurred during closing of asynchronous generator .*\n"
    r"(?:(?:asyncgen: .*|Traceback .*|  .*|During handling .*|GeneratorExit|"
    r"RuntimeError: aclose\(\): asynchronous generator is already running|)\n)*",
    re.MULTILINE,
)


def without_asyncgen_noise(stderr: str) -> str:
    """stderr less asyncio's reports of httpx's own generators closed at loop shutdown.

    When a loop ends under a suspended stream, asyncio closes the HTTP stack's nested async
    generators concurrently; whether one is "already running" depends on the order of a
    WeakSet, i.e. on memory layout: the same script without agentlog shows the report or
    not, depending only on what else was allocated. Everything else must match exactly.
    """
    return _ASYNCGEN_NOISE.sub("", stderr)


def host_frames(stderr: str) -> list[str]:
    """A traceback without agentlog's own frames (its stream observer is on the stack)."""
    lines = stderr.splitlines()
    kept: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith('  File "'):
            skipping = f"{Path(agentlog.__file__).parent}" in line
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            kept.append(line)
    return kept


def records_by_prompt(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(provider, first prompt) -> the interaction that holds that LLM record."""
    found = {}
    for it in doc["iterations"]:
        for ix in it["interactions"]:
            assert ix["actions"] == []
            key = (ix["llm"]["provider"], ix["input_data"][-1]["content"])
            assert key not in found, f"two records for {key}"
            found[key] = {**ix, "iteration_number": it["iteration_number"],
                          "siblings": len(it["interactions"])}
    return found


ASYNC_REASONS = {
    "cancel-mid-stream": "cancelled",
    "aclose-other-task": "closed before its end",
    "break-then-drop": "the stream was garbage-collected before its end",
    "drop-without-close": "the stream was garbage-collected before its end",
    "complete-after": None,
    "loop-ends-under-task": "cancelled",
    "loop-ends-stream-kept": "still open when the run ended",
}


def test_async_streams_cut_every_way_make_no_noise(tmp_path: Path) -> None:
    """A4/A2 under asyncio and ``-W error``: same output as without agentlog, no warnings,
    one incomplete record per cut stream, and the next call stands alone."""
    on, off = run_pair(tmp_path, "async_termination.py", *SDKS)
    assert on.returncode == off.returncode == 0, on.stderr
    assert on.stdout == off.stdout
    assert without_asyncgen_noise(on.host_stderr()) == without_asyncgen_noise(off.host_stderr())
    for noise in ("agentlog", "Task was destroyed", "never awaited", "ResourceWarning",
                  "Exception ignored"):
        assert noise not in on.host_stderr(), on.stderr
    doc = on.doc()
    assert doc["error_log"] == [] and doc["final_status"] == "completed"
    found = records_by_prompt(doc)
    assert len(found) == len(SDKS) * len(ASYNC_REASONS)
    for sdk in SDKS:
        for tag, reason in ASYNC_REASONS.items():
            llm = found[(sdk, tag)]["llm"]
            assert llm["streamed"] is True
            assert llm["incomplete"] is (reason is not None), (sdk, tag, llm)
            assert llm.get("incomplete_reason") == reason, (sdk, tag, llm)
        after = found[(sdk, "complete-after")]
        assert after["siblings"] == 1 and after["parent_interaction_id"] is None
        assert after["output_data"]["content"] == "echo: complete-after"


def test_ctrl_c_while_the_sdk_waits_propagates(tmp_path: Path) -> None:
    """A2: a real SIGINT lands in the SDK's read: caught (openai), then uncaught (anthropic)."""
    on, off = run_pair(tmp_path, "sigint.py", *SDKS)
    assert on.returncode == off.returncode != 0
    assert on.stdout == off.stdout == (
        "openai first chunk\nopenai caught KeyboardInterrupt ()\nanthropic first chunk\n")
    assert host_frames(on.host_stderr()) == host_frames(off.host_stderr())
    assert on.host_stderr().rstrip().endswith("\nKeyboardInterrupt")
    doc = on.doc()
    assert doc["final_status"] == "interrupted"
    assert [e["source"] for e in doc["error_log"]] == ["uncaught"]
    for sdk in SDKS:
        ix = records_by_prompt(doc)[(sdk, f"sigint-{sdk}")]
        assert ix["llm"]["incomplete"] is True
        assert ix["llm"]["incomplete_reason"] == "interrupted"
        assert "error" not in ix


def test_stream_without_iterator_is_warned_once_per_run(tmp_path: Path) -> None:
    """A6: a stream class with no ``_iterator``: the calls work and are recorded (incomplete),
    and error_log says so once per SDK for the whole run, not once per call."""
    on, off = run_pair(tmp_path, "no_iterator.py")
    assert on.returncode == off.returncode == 0, on.stderr
    assert on.stdout == off.stdout and "requests: 6" in on.stdout
    assert on.host_stderr() == off.host_stderr() == ""
    doc = on.doc()
    assert sorted(e["source"] for e in doc["error_log"]) == [
        "agentlog:anthropic.stream", "agentlog:openai.stream"]
    assert all("cannot observe" in e["error"] for e in doc["error_log"])
    found = records_by_prompt(doc)
    assert len(found) == 6
    for ix in found.values():
        assert ix["llm"]["streamed"] is True and ix["llm"]["incomplete"] is True
        assert "could not observe" in ix["llm"]["incomplete_reason"]


# -- an in-process transport: the same canned answer every time ------------------------------
CANNED_JSON = {
    "openai": {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": GPT,
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "one two"}}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}},
    "anthropic": {"id": "msg_1", "type": "message", "role": "assistant", "model": CLAUDE,
                  "content": [{"type": "text", "text": "one two"}], "stop_reason": "end_turn",
                  "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 2}},
}
CANNED_SSE = {
    "openai": _sse(
        {**HEAD, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "one"},
                              "finish_reason": None}]},
        {**HEAD, "choices": [{"index": 0, "delta": {"content": " two"},
                              "finish_reason": "stop"}]},
    ),
    "anthropic": _typed_sse(
        {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": CLAUDE,
            "content": [], "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "one"}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": " two"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
         "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    ),
}


def mock_client(sdk: str) -> Any:
    """A real client on ``httpx2.MockTransport``: nothing is sent, the answer never varies."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        if b'"stream":true' in request.content:
            return httpx2.Response(200, content=CANNED_SSE[sdk],
                                   headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, json=CANNED_JSON[sdk])

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    if sdk == "openai":
        return openai.OpenAI(api_key="sk-test-mock-0000", base_url="http://llm.test/v1",
                             http_client=http, max_retries=0)
    return anthropic.Anthropic(api_key="sk-ant-test-mock-0000", base_url="http://llm.test",
                               http_client=http, max_retries=0)


def call_once(client: Any, sdk: str, stream: bool, **extra: Any) -> Any:
    result = resource(client, sdk).create(**kwargs(sdk, **extra), stream=stream)
    return [dump(x) for x in result] if stream else dump(result)


# -- A1: agentlog's own bugs at the LLM hook points --------------------------------------------
A1_HOOKS = {
    # hook: (the guard that counts its failures, the error injected, streamed call)
    "translator.request": (_llm.G_BEGIN, RuntimeError, False),
    "translator.response": (_llm.G_FINISH, KeyError, False),
    "accumulator.add": (_llm.G_CHUNK, MemoryError, True),
    "accumulator.outcome": (_llm.G_FINISH, RecursionError, True),
    "Call._close": (_llm.G_FINISH, RuntimeError, False),
}


def _break_hook(monkeypatch: pytest.MonkeyPatch, sdk: str, hook: str, boom: Any) -> None:
    adapter: Any = openai_adapter if sdk == "openai" else anthropic_adapter
    fold = adapter._ChoicesStream if sdk == "openai" else adapter._MessageStream
    owner, name = {
        "translator.request": (adapter.TRANSLATOR, "request"),
        "translator.response": (adapter.TRANSLATOR, "response"),
        "accumulator.add": (fold, "add"),
        "accumulator.outcome": (fold, "outcome"),
        "Call._close": (_llm.Call, "_close"),
    }[hook]
    monkeypatch.setattr(owner, name, boom)


@pytest.mark.allows_internal_errors
@pytest.mark.parametrize("hook", list(A1_HOOKS))
@pytest.mark.parametrize("sdk", SDKS)
def test_failing_hook_is_swallowed_then_switched_off(
    sdk: str, hook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A1: a hook point that raises never changes the caller's result; each failure is in
    error_log; after BREAKER_THRESHOLD failures the hook is a pure passthrough; no call is
    left open by a failure (except when closing itself is what fails)."""
    guard, error, stream = A1_HOOKS[hook]
    with uninstalled(), mock_client(sdk) as client:
        expected = call_once(client, sdk, stream)
    fired: list[int] = []

    def boom(*args: Any, **kwargs: Any) -> Any:
        fired.append(1)
        raise error("injected by the test")

    monkeypatch.setattr(_guard, "strict", False)  # what users get: swallow, count, report
    open_before = set(_llm._open)
    _break_hook(monkeypatch, sdk, hook, boom)
    try:
        with mock_client(sdk) as client, capture() as cap:
            for _ in range(_guard.BREAKER_THRESHOLD):
                assert call_once(client, sdk, stream) == expected
                # Responses are read when records are written, in batches: write now.
                api.RECORDER.settle()
            assert guard.broken and fired
            seen = (len(fired), len(cap))
            # Switched off: the next call is a pure passthrough, agentlog does nothing.
            assert call_once(client, sdk, stream) == expected
            assert (len(fired), len(cap)) == seen
            gc.collect()
    finally:
        monkeypatch.undo()
        for g in (_llm.G_BEGIN, _llm.G_CHUNK, _llm.G_FINISH):
            g.failures = 0
        left_open = set(_llm._open) - open_before
        for key in left_open:
            _llm._open.pop(key)  # only where the injected fault kept a call from closing
    reported = [e for e in cap.errors if e["source"] == f"agentlog:{guard.name}"]
    assert len(reported) == _guard.BREAKER_THRESHOLD
    assert {e["type"] for e in reported} == {error.__name__}
    assert len(cap.errors) == len(reported)
    records = checked(cap)
    assert len(records) <= _guard.BREAKER_THRESHOLD
    if hook == "Call._close":
        assert records == []
    else:
        assert not left_open, "a call stayed open after agentlog failed on it"
    if hook == "translator.request":
        assert records == []
    elif hook != "Call._close":
        assert len(records) == _guard.BREAKER_THRESHOLD  # still one record per call
    if hook == "translator.response":
        assert {r["llm"].get("incomplete_reason") for r in records} == {
            "agentlog failed to read the response"}


# -- A12: hostile objects in what the caller passes -------------------------------------------
CALLS: Counter[str] = Counter()


class Hostile:
    """Every way of looking at it raises; each look is counted (under ``COUNTED`` + the look)."""

    COUNTED = ""

    def __repr__(self) -> str:
        CALLS[f"{self.COUNTED}repr"] += 1
        raise RuntimeError("hostile repr")

    def __str__(self) -> str:
        CALLS[f"{self.COUNTED}str"] += 1
        raise RuntimeError("hostile str")

    def __getattr__(self, name: str) -> Any:
        CALLS[f"{self.COUNTED}getattr"] += 1
        raise RuntimeError(f"hostile getattr {name}")

    def model_dump(self, *args: Any, **kwargs: Any) -> Any:
        CALLS[f"{self.COUNTED}model_dump"] += 1
        raise RuntimeError("hostile model_dump")

    @property
    def side_effect(self) -> str:
        CALLS[f"{self.COUNTED}property"] += 1
        return "changed something"


class Slow:
    """A repr that takes a second."""

    def __repr__(self) -> str:
        CALLS["slow repr"] += 1
        time.sleep(1.0)
        return "slow"

    __str__ = __repr__


class HostileText(Hostile, str):
    """Text the SDK sends as is (json encodes str subclasses natively); hostile otherwise."""

    COUNTED = "text "


class Counted(pydantic.BaseModel):
    """A pydantic model as a message: the SDK dumps it; count how often anyone does."""

    role: str
    content: str

    def model_dump(self, *args: Any, **kwargs: Any) -> Any:
        CALLS["pydantic model_dump"] += 1
        return super().model_dump(*args, **kwargs)


BIG = 100 * 1024 * 1024
HOSTILE = {
    # case: (messages, extra kwargs of the call, verbosity)
    "hostile-content": (lambda: [{"role": "user", "content": Hostile()}], {}, 1),
    "hostile-text": (lambda: [{"role": "user", "content": HostileText("hi there")}], {}, 1),
    "hostile-metadata-v2": (lambda: MSGS, {"metadata": {"k": HostileText("v")}}, 2),
    "slow-reprs": (lambda: [{"role": "user", "content": [Slow() for _ in range(4)]}], {}, 1),
    "pydantic-message": (lambda: [Counted(role="user", content="hi")], {}, 1),
    "100MB-text": (lambda: [{"role": "user", "content": "x" * BIG}], {}, 1),
}


def _hostile_call(sdk: str, case: str) -> tuple[tuple[str, Any], Counter[str], float]:
    make, extra, _ = HOSTILE[case]
    messages = make()
    if sdk == "anthropic" and "metadata" in extra:
        extra = {"metadata": {"user_id": HostileText("v")}}
    CALLS.clear()
    start = time.monotonic()
    with mock_client(sdk) as client:
        args = {**kwargs(sdk, **extra), "messages": messages}
        got = outcome(lambda: resource(client, sdk).create(**args).id)
    took = time.monotonic() - start
    return got, Counter(CALLS), took


@pytest.mark.parametrize("case", list(HOSTILE))
@pytest.mark.parametrize("sdk", SDKS)
def test_hostile_objects_never_break_the_call(sdk: str, case: str) -> None:
    """A12: objects whose repr/str/getattr/model_dump raise or sleep, a property with side
    effects, a pydantic message, 100 MB of text: the SDK's own result or error, a marker in
    the record, each user callable run at most once more than without agentlog, in time."""
    verbosity = HOSTILE[case][2]
    with uninstalled():
        expected, bare_calls, bare_took = _hostile_call(sdk, case)
    saved = api.RECORDER.verbosity
    agentlog.set_logging(True, verbosity=verbosity)
    try:
        with capture() as cap:
            got, calls, took = _hostile_call(sdk, case)
    finally:
        agentlog.set_logging(True, verbosity=saved)
    assert got == expected  # the SDK's own result or its own error, never one of ours
    for name in calls | bare_calls:
        assert calls[name] - bare_calls[name] <= 1, (name, calls, bare_calls)
    assert took - bare_took < 5.0, "the record took far longer than the serializer's budget"
    (rec,) = checked(cap)
    text = json.dumps(rec)
    if case == "hostile-content":  # a placeholder, not the object's (failing) text
        assert rec["input"][0]["content"].startswith("<unserializable Hostile: RuntimeError")
    if case == "hostile-text":  # the text itself, read without the subclass's methods
        assert rec["input"][0]["content"] == "hi there"
    if case == "hostile-metadata-v2":
        assert list(rec["llm"]["params"]["metadata"].values()) == ["v"]
    if case == "slow-reprs":
        assert calls["slow repr"] <= 1 and "time budget" in text
    if case == "100MB-text":
        assert '"_agentlog": "truncated"' in text and str(BIG) in text
        assert len(text) < 1_000_000


# -- A13: uninstall with clients and streams alive ---------------------------------------------
def _patched_methods() -> dict[tuple[type, str], Any]:
    """Each SDK method agentlog has patched so far -> the original it wraps."""
    import anthropic._base_client
    import openai._base_client

    owners: list[tuple[type, str]] = [
        (openai._base_client.SyncAPIClient, "request"),
        (openai._base_client.AsyncAPIClient, "request"),
        (anthropic._base_client.SyncAPIClient, "request"),
        (anthropic._base_client.AsyncAPIClient, "request"),
        (openai.Stream, "close"),
        (anthropic.Stream, "close"),
        (openai._legacy_response.LegacyAPIResponse, "_parse"),
    ]
    found = {}
    for owner, name in owners:
        method = owner.__dict__[name]
        assert getattr(method, "__agentlog_patched__", False), (owner, name)
        found[(owner, name)] = method.__wrapped__
    return found


def test_uninstall_restores_originals_and_old_objects_keep_working() -> None:
    """A13: after ``uninstall()`` the SDKs' methods are the originals again, old clients,
    half-read streams and unparsed raw responses keep working, nothing is recorded; and
    ``set_logging(True)`` patches and records again."""
    saved = api.RECORDER.verbosity
    with FakeLLM() as srv, make_client(srv, "openai") as oa, make_client(srv, "anthropic") as an:
        with capture() as before:
            s_oa = resource(oa, "openai").create(**kwargs("openai"), stream=True)
            s_an = resource(an, "anthropic").create(**kwargs("anthropic"), stream=True)
            head = [next(s_oa), next(s_oa), next(s_an), next(s_an)]
            raw = oa.chat.completions.with_raw_response.create(**kwargs("openai"))
            assert raw.parse().choices[0].message.content
            raw_later = oa.chat.completions.with_raw_response.create(**kwargs("openai"))
            originals = _patched_methods()
        assert len(checked(before)) == 1  # the parsed raw response; the rest is under way
        try:
            with capture() as after:
                agentlog.uninstall()
                for (owner, name), original in originals.items():
                    assert owner.__dict__[name] is original, (owner, name)
                # Old clients, half-read streams and an unparsed raw response still work.
                tail_oa = "".join(c.choices[0].delta.content or "" for c in s_oa)
                tail_an = "".join(getattr(e.delta, "text", "") for e in s_an
                                  if e.type == "content_block_delta")
                parsed = raw_later.parse()
                again = resource(oa, "openai").create(**kwargs("openai"))
                streamed = list(resource(an, "anthropic").create(**kwargs("anthropic"),
                                                                 stream=True))
                del s_oa, s_an, raw_later
                gc.collect()
            assert llm_events(after) == [] and list(after) == []
        finally:
            agentlog.set_logging(True, verbosity=saved)
        assert all(getattr(owner.__dict__[name], "__agentlog_patched__", False)
                   for owner, name in originals if name == "request")
        with capture() as back:
            resource(oa, "openai").create(**kwargs("openai"))
            resource(an, "anthropic").create(**kwargs("anthropic"))
    assert head[1].choices[0].delta.content == "echo:"
    assert tail_oa == " count one two three four" and tail_an == "echo: count one two three four"
    assert parsed.choices[0].message.content == again.choices[0].message.content
    assert len(streamed) > 3 and srv.count() == 4 + 2 + 2
    assert [r["llm"]["provider"] for r in checked(back)] == ["openai", "anthropic"]


def test_uninstall_inside_a_running_loop() -> None:
    """Async: a half-read stream outlives the uninstall; reinstalling records again."""
    saved = api.RECORDER.verbosity

    async def main(srv: FakeLLM) -> tuple[str, int, int]:
        async with make_client(srv, "openai", async_=True) as client:
            s = await client.chat.completions.create(**kwargs("openai"), stream=True)
            await s.__anext__()
            with capture() as off:
                agentlog.uninstall()
                try:
                    rest = "".join([c.choices[0].delta.content or "" async for c in s])
                    await client.chat.completions.create(**kwargs("openai"))
                finally:
                    agentlog.set_logging(True, verbosity=saved)
            with capture() as on:
                await client.chat.completions.create(**kwargs("openai"))
            return rest, len(list(off)), len(checked(on))

    with FakeLLM() as srv:
        rest, off_events, on_records = asyncio.run(main(srv))
    assert rest == "echo: count one two three four"
    assert off_events == 0 and on_records == 1
