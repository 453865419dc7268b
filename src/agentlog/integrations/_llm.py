"""The generic LLM-call lifecycle: one record per request, closed exactly once.

Adapters translate a provider's request, response, stream chunks and exceptions into
plain data (a ``Request``, an outcome dict, an ``Accumulator``); everything about when a
record opens and closes lives here. A record closes on whichever comes first: the
response, the stream's end, ``close()``, an exception, garbage collection, or the end
of the run.

Streams stay the SDK's own objects: only their ``_iterator`` is replaced by an observer
that hands every item on unchanged (a plain generator is handed back wrapped in one; a
stream that is its own iterator has its class's ``__next__`` patched once).

The caller's thread only notes that a call ended. Turning it into a record (reading the
response, converting and capping content, journaling) happens in batches: on the journal's
flusher thread, and whenever the run is read (a document, ``capture()``, an iteration's
end). Run right after the SDK's own work, that code would meet cold CPU caches on every
call and cost several times more. A failed call is recorded at once, so that its error is
in error_log before the exception reaches the caller.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import Any, Protocol
from urllib.parse import urlsplit

from .. import _guard, _recorder, _redact, api
from .._context import Scope, current
from ._resources import QUIET

G_BEGIN = _guard.Guard("llm.begin")
G_CHUNK = _guard.Guard("llm.chunk")
G_FINISH = _guard.Guard("llm.finish")

_SCALARS = (str, int, float, bool, type(None))

Outcome = dict[str, Any]
"""What a response said: response_model, output, finish_reasons, tool_calls, usage..."""


class Request:
    """What is known when a call starts. ``data`` is the SDK's own request body (built
    fresh for each call, so the caller's later changes do not reach it); ``content`` is
    the part that is the input, converted only when the record is written."""

    __slots__ = ("content", "data", "model", "operation", "provider", "server", "skip",
                 "streamed")

    def __init__(
        self, provider: str, operation: str, model: str | None, content: object,
        data: dict[str, Any], skip: frozenset[str], streamed: bool, server: str | None,
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.model = model
        self.content = content
        self.data = data
        self.skip = skip
        self.streamed = streamed
        self.server = server


class Accumulator(Protocol):
    """Folds stream items into an outcome. ``add`` runs once per chunk: keep it cheap."""

    def add(self, item: Any) -> None: ...

    def outcome(self) -> Outcome: ...


IN_CALL: ContextVar[bool] = ContextVar("agentlog_in_llm_call", default=False)
"""Set while a recorded LLM call runs. A call made beneath it (litellm's own call into the
openai SDK) is the same logical call, already being recorded: it passes through."""

_open: dict[int, Call] = {}
"""Calls not yet closed, so that the end of the run can close them."""

_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Say once per process, in error_log, that one hook could not observe something."""
    if key in _warned:
        return
    _warned.add(key)
    api.record_error(f"agentlog: {message}", source=f"agentlog:{key}")


class Call:
    """One LLM request, from the SDK's ``request`` to its last byte."""

    __slots__ = ("__weakref__", "acc", "end_ns", "finalizer", "first_ns", "ids",
                 "incomplete", "lost", "read", "req", "result", "scope", "start_ns")

    def __init__(self, req: Request, scope: Scope) -> None:
        self.req = req
        self.scope = scope
        self.start_ns = _recorder.now_ns()
        self.first_ns: int | None = None
        self.acc: Accumulator | None = None
        self.read: Callable[[Request, Any], Outcome] | None = None
        self.result: Any = None
        self.finalizer: weakref.finalize[Any, Any] | None = None
        self.end_ns = 0
        self.incomplete: str | None = None
        self.lost: str | None = None
        """Why part of it could not be read (agentlog's own failure), if it could not."""
        self.ids: tuple[int | None, int | None, int | None] = (None, None, None)
        _open[id(self)] = self

    def outcome(self) -> Outcome:
        """What the response or the stream's fold says; {} when there is none or it fails
        (the record is still written: a failing read must not lose the call)."""
        try:
            if self.acc is not None:
                return self.acc.outcome()
            if self.read is not None:
                return self.read(self.req, self.result)
        except Exception as exc:  # reported by the guard just below
            self.acc = self.read = None
            self.lost = "agentlog failed to read the response"
            with G_FINISH:
                raise exc
        return {}

    # Each way of closing funnels into ``_close``; the pop makes it happen once only.
    def done(self, read: Callable[[Request, Any], Outcome] | None = None,
             result: Any = None) -> None:
        """The response arrived (``read(req, result)`` says what it holds), or the stream
        was read to its end."""
        self.read, self.result = read, result
        self._close(None, None)

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, Exception):
            self._close(exc, "error" if self.first_ns is not None else None)
        else:  # KeyboardInterrupt, CancelledError...: not an error of the call
            self._close(None, _interruption(exc))

    def cut(self, reason: str) -> None:
        """Close what has not ended: the caller closed it, dropped it, or the run ended."""
        self._close(None, reason)

    def _close(self, error: BaseException | None, incomplete: str | None) -> None:
        if _open.pop(id(self), None) is None:
            return
        if self.finalizer is not None:
            self.finalizer.detach()
        if api.RECORDER.verbosity == 0:
            return
        self.end_ns = _recorder.now_ns()
        self.incomplete = incomplete
        # Numbered now, so that records written later still number in call order.
        self.ids = api.call_ids(self.scope)
        if error is not None:
            self.write(error)
            return
        _settled.append(self)
        api.RECORDER.holding(len(_settled))

    def write(self, error: BaseException | None = None) -> None:
        """Journal the record."""
        rec = api.RECORDER
        req = self.req
        outcome = self.outcome()
        if error is not None:
            status = getattr(error, "status_code", None)
            if type(status) is not int:  # google-genai's APIError names it ``code``
                status = getattr(error, "code", None)
            if type(status) is int and 100 <= status <= 599:
                outcome["http_status"] = status
        incomplete = self.incomplete or self.lost
        notes: list[str] = []
        llm: dict[str, Any] = {
            "provider": req.provider,
            "operation": req.operation,
            "request_model": req.model,
            "response_model": outcome.get("response_model"),
            "params": params_of(req.data, req.skip, notes),
            "streamed": req.streamed,
            "incomplete": incomplete is not None,
            "duration_ms": round((self.end_ns - self.start_ns) / 1e6, 3),
            "ttft_ms": round((self.first_ns - self.start_ns) / 1e6, 3)
            if self.first_ns is not None else None,
            "finish_reasons": outcome.get("finish_reasons") or [],
        }
        if incomplete is not None:
            llm["incomplete_reason"] = incomplete
        tool_calls = outcome.get("tool_calls")
        if tool_calls:
            llm["tool_calls"] = rec.content(tool_calls, notes, "$.llm.tool_calls")
        usage = outcome.get("usage")
        llm["usage"] = usage
        if usage is None:
            llm["usage_missing_reason"] = outcome.get("usage_missing_reason") or (
                "the call ended before the provider reported usage" if incomplete or error
                else "the provider reported no usage")
        for key in ("response_id", "http_status"):
            value = outcome.get(key)
            if value is not None:
                llm[key] = value
        unpriced = outcome.get("cost_missing_reason")
        if unpriced is not None:  # a local model: no price, whatever its name resembles
            llm["cost_usd"] = None
            llm["cost_missing_reason"] = unpriced
        if req.server is not None:
            llm["server_address"] = req.server
        body: dict[str, Any] = {
            "input": rec.content(req.content, notes, "$.input_data"),
            "output": rec.content(outcome.get("output"), notes, "$.output_data"),
            "llm": llm,
        }
        if notes:
            body["lossy"] = notes
        scope = self.scope
        agent = scope.agent or f"{req.provider}:{req.model or outcome.get('response_model')}"
        api.record_call(scope, self.start_ns, self.end_ns, self.ids,
                        f"llm:{req.provider}.{req.operation}", agent, body, error)


_settled: deque[Call] = deque()
"""Calls that ended and wait to be written (see the module docstring)."""


_writing = threading.RLock()
"""Held while calls are written: a reader (a document, ``capture()``, an iteration's end)
that settles must wait for a call the flusher has taken but not yet journaled, or it
would read the run without it. Reentrant: writing a call may end an iteration."""


def write_settled() -> None:
    """Write every ended call; any thread, any time (each is taken exactly once)."""
    with _writing:
        while _settled:
            call = _settled.popleft()
            with G_FINISH:
                call.write()


def _forget_in_child() -> None:
    # The parent's calls are the parent's to record, not this process's; a lock a
    # parent's thread held at the fork would never be released here.
    global _writing
    _writing = threading.RLock()
    _open.clear()
    _settled.clear()


def _interruption(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, GeneratorExit):
        return "closed"
    return "cancelled"


# -- translation helpers, for the adapters ---------------------------------------------
def get(obj: Any, name: str) -> Any:
    """``obj.name`` for SDK objects, ``obj[name]`` for the same data as parsed JSON."""
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def count(value: Any) -> int | None:
    """A token count as reported, or None: a missing or oddly typed field is no count."""
    return value if type(value) is int else None


def usage(input_tokens: int | None, output_tokens: int | None, cache_read: int | None = None,
          cache_write: int | None = None, reasoning: int | None = None) -> dict[str, Any]:
    """The record's usage, whatever the provider called its counts."""
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read, "cache_write_input_tokens": cache_write,
            "reasoning_output_tokens": reasoning}


def function_call(tc: Any) -> dict[str, Any]:
    """An OpenAI-shaped tool call (``{"id", "function": {"name", "arguments"}}``)."""
    fn = get(tc, "function")
    return {"id": get(tc, "id"), "name": get(fn, "name"), "arguments": get(fn, "arguments")}


def json_text(value: Any) -> Any:
    """Tool-call arguments as the JSON text most providers send (some send an object)."""
    return value if isinstance(value, str) or value is None else json.dumps(value)


def embeddings_output(items: Any, key: str | None = None) -> dict[str, Any]:
    """Counts, not vectors: how many, and the first one's length (its ``key`` field when
    the items are objects holding a vector)."""
    first = items[0] if items else None
    if key is not None:
        first = get(first, key)
    return {"embeddings": len(items),
            "dimensions": len(first) if isinstance(first, list) else None}


def messages_output(messages: list[Any]) -> Outcome:
    """One message is the output, several (one per choice) a list, none None; the tool
    calls of all of them are the call's."""
    out: Outcome = {"output": messages[0] if len(messages) == 1 else messages or None}
    calls = [c for m in messages if isinstance(m, dict) for c in m.get("tool_calls") or ()]
    if calls:
        out["tool_calls"] = calls
    return out


_addresses: dict[str, tuple[str, str]] = {}


def address(url: str) -> tuple[str, str]:
    """(host, ``host:port`` or host) of a base URL; cached, since it is asked per call."""
    found = _addresses.get(url)
    if found is None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        found = (host, f"{host}:{parts.port}" if parts.port else host)
        if len(_addresses) > 64:
            _addresses.clear()
        _addresses[url] = found
    return found


def tool_names(tools: Any) -> list[Any]:
    """Tool names only: definitions can be long, the names say what was offered."""
    names = []
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict):
            fn = tool.get("function")
            name = fn.get("name") if isinstance(fn, dict) else tool.get("name")
            names.append(name if name is not None else tool.get("type"))
    return names


_SENTINELS = frozenset({"NotGiven", "Omit"})


def given(value: Any) -> bool:
    """False for the SDKs' "argument not given" sentinels, which they drop before sending."""
    return type(value).__name__ not in _SENTINELS


def params_of(data: dict[str, Any], skip: frozenset[str], notes: list[str]) -> object:
    """Request parameters: all of them at verbosity 2, the short ones below."""
    rec = api.RECORDER
    if rec.verbosity >= 2:
        return rec.convert({k: v for k, v in data.items() if k not in skip and given(v)},
                           notes, "$.params")
    params: dict[str, Any] = {}
    for key, value in data.items():
        if key in skip or not given(value):
            continue
        if isinstance(value, _SCALARS):
            params[key] = value
        elif key == "tools":
            params[key] = tool_names(value)
        elif key in ("response_format", "text", "tool_choice", "thinking", "reasoning"):
            params[key] = value.get("type", "…") if isinstance(value, dict) else value
        elif key == "stream_options":
            params[key] = value
    return rec.convert(params, notes, "$.params")


def install() -> None:
    """Have ended calls written by the flusher and before anything reads the run."""
    if write_settled not in api.RECORDER.settlers:
        api.RECORDER.add_settler(write_settled)
        os.register_at_fork(after_in_child=_forget_in_child)


def broken() -> bool:
    """A hook point kept failing and switched itself off: calls now pass straight through."""
    return G_BEGIN.broken or G_FINISH.broken or G_CHUNK.broken


def begin(req: Request) -> Call:
    return Call(req, current.get())


def close_open_calls() -> None:
    """The run is ending: whatever is still streaming is cut where it stands."""
    for call in list(_open.values()):
        with G_FINISH:
            call.cut("still open when the run ended")
    write_settled()


# -- streams --------------------------------------------------------------------------
_streams: weakref.WeakKeyDictionary[Any, Call] = weakref.WeakKeyDictionary()
"""SDK stream object -> its open call, for the ``close`` hooks."""


def observe_stream(stream: Any, call: Call, acc: Accumulator, is_async: bool,
                   attr: str = "_iterator") -> bool:
    """Put an observer in place of ``stream._iterator`` (or the attribute where the SDK
    keeps its items: mistralai's ``generator``); False if the SDK has none."""
    inner = getattr(stream, attr, None)
    if inner is None:
        return False
    call.acc = acc
    setattr(stream, attr, (_AsyncObserver if is_async else _SyncObserver)(inner, call))
    _streams[stream] = call
    cut_when_collected(stream, call)
    return True


def observe_in_place(patches: Any, stream: Any, call: Call, acc: Accumulator, sdk: str,
                     attr: str = "_iterator") -> None:
    """``observe_stream``, with the stream class's ``close`` hooked (``with`` calls it),
    or the call cut, with a warning, when the stream has no ``attr`` to observe."""
    cls = type(stream)
    if observe_stream(stream, call, acc, hasattr(cls, "__anext__"), attr):
        hook_close(patches, cls)
    else:
        cannot_observe(call, sdk, cls)


def cannot_observe(call: Call, sdk: str, cls: type) -> None:
    """A stream of a shape this SDK version does not have: said once, the call cut."""
    warn_once(f"{sdk}.stream", f"cannot observe {cls.__qualname__} streams")
    call.cut("agentlog could not observe this stream")


def cut_when_collected(stream: Any, call: Call) -> None:
    """Cut the call if the stream is dropped before its end."""
    # Must not reference the stream, or the stream could never be collected.
    call.finalizer = fin = weakref.finalize(stream, _collected, call)
    fin.atexit = False  # at exit the run closes open calls itself, before its document


def _collected(call: Call) -> None:
    with G_FINISH:
        call.cut("the stream was garbage-collected before its end")


def stream_closed(stream: Any) -> None:
    """A ``close()`` hook: the caller closed the stream (or a helper wrapping it)."""
    with G_FINISH:
        call = _streams.get(getattr(stream, "_raw_stream", stream))
        if call is not None:
            # Closed by ``with``/``finally`` while a Ctrl-C or a cancellation passes through
            # the caller's loop: say that, not just that it was closed.
            passing = sys.exc_info()[1]
            call.cut("closed before its end" if passing is None or isinstance(passing, Exception)
                     else _interruption(passing))


def closed_by(closed: Callable[[Any], None]) -> Callable[[Any], Any]:
    """``make`` for a ``close``/``aclose`` patch that tells ``closed`` once it has run."""

    def make(original: Any) -> Any:
        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def aclose(self: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return await original(self, *args, **kwargs)
                finally:
                    closed(self)

            return aclose

        @functools.wraps(original)
        def close(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return original(self, *args, **kwargs)
            finally:
                closed(self)

        return close

    return make


def hook_close(patches: Any, cls: type) -> None:
    """Have ``close`` on a stream class (where its MRO defines it) cut an open call."""
    owner = next((k for k in cls.__mro__ if "close" in k.__dict__), None)
    if owner is not None and owner is not object:
        patches.apply(owner, "close", closed_by(stream_closed))


def _chunk(call: Call, item: Any) -> None:
    if call.first_ns is None:
        call.first_ns = _recorder.now_ns()
    acc = call.acc
    if acc is None:
        return
    try:
        acc.add(item)
    except Exception as exc:  # stop observing; the user still gets the item
        call.acc = None
        call.lost = "agentlog failed to read the stream"
        with G_CHUNK:
            raise exc


class _SyncObserver:
    """Stands in for a sync stream's ``_iterator``: every item passes through as is."""

    __slots__ = ("call", "inner")

    def __init__(self, inner: Any, call: Call) -> None:
        self.inner = inner
        self.call = call

    def __iter__(self) -> _SyncObserver:
        return self

    def __next__(self) -> Any:
        try:
            item = self.inner.__next__()
        except StopIteration:
            with G_FINISH:
                self.call.done()
            raise
        except BaseException as exc:
            with G_FINISH:
                self.call.failed(exc)
            raise
        _chunk(self.call, item)
        return item

    def close(self) -> None:  # generator protocol, in case the SDK closes its iterator
        close: Callable[[], None] | None = getattr(self.inner, "close", None)
        if close is not None:
            close()


class _AsyncObserver:
    """Stands in for an async stream's ``_iterator``: every item passes through as is."""

    __slots__ = ("call", "inner")

    def __init__(self, inner: Any, call: Call) -> None:
        self.inner = inner
        self.call = call

    def __aiter__(self) -> _AsyncObserver:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self.inner.__anext__()
        except StopAsyncIteration:
            with G_FINISH:
                self.call.done()
            raise
        except BaseException as exc:
            with G_FINISH:
                self.call.failed(exc)
            raise
        _chunk(self.call, item)
        return item

    async def aclose(self) -> None:
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()


# -- keys ------------------------------------------------------------------------------
_seen_keys: set[str] = set()


def note_keys(*keys: object) -> None:
    """A client's keys are secret values: they must never appear in anything we write."""
    new = False
    for key in keys:
        if type(key) is str and key and key not in _seen_keys:
            _seen_keys.add(key)
            _redact.add_secret_values([key])
            new = True
    if new:
        _redact.refresh_env()  # keys loaded into the environment (dotenv) since import


# -- the wrapper around one SDK function -------------------------------------------------
class Hooks(Protocol):
    """How one patched function's calls map onto the lifecycle; all of it runs guarded."""

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        """The call about to be made, or None when it is not an LLM call."""

    def returned(self, call: Call, args: tuple[Any, ...], result: Any) -> Any:
        """Close or observe the call; return what the caller gets (``result`` itself, or
        a generator passing a plain generator's items on)."""

    def raised(self, call: Call, args: tuple[Any, ...], exc: BaseException) -> None: ...


def _opened(hooks: Hooks, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    if api.RECORDER.verbosity == 0 or IN_CALL.get() or broken():
        return None
    with G_BEGIN:
        return hooks.begin(args, kwargs)
    return None


def _returned(hooks: Hooks, call: Call, args: tuple[Any, ...], result: Any) -> Any:
    with G_FINISH:
        try:
            return hooks.returned(call, args, result)
        except Exception:
            call.cut("agentlog failed to read the response")  # never left open, nor lost
            raise
    return result


def _raised(hooks: Hooks, call: Call, args: tuple[Any, ...], exc: BaseException) -> None:
    with G_FINISH:
        hooks.raised(call, args, exc)


def sync_wrapper(hooks: Hooks) -> Callable[[Any], Any]:
    """``make`` for ``Patches.apply``: record each call of a sync function. The SDK's own
    work runs outside our guard, with ``IN_CALL`` and resources' ``QUIET`` set."""

    def make(original: Any) -> Any:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = _opened(hooks, args, kwargs)
            if call is None:
                return original(*args, **kwargs)
            inside, quiet = IN_CALL.set(True), QUIET.set(True)
            try:
                result = original(*args, **kwargs)
            except BaseException as exc:
                _raised(hooks, call, args, exc)
                raise
            finally:
                QUIET.reset(quiet)
                IN_CALL.reset(inside)
            return _returned(hooks, call, args, result)

        return wrapper

    return make


def async_wrapper(hooks: Hooks) -> Callable[[Any], Any]:
    """``sync_wrapper`` for coroutine functions (the flags are set and reset in one frame)."""

    def make(original: Any) -> Any:
        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = _opened(hooks, args, kwargs)
            if call is None:
                return await original(*args, **kwargs)
            inside, quiet = IN_CALL.set(True), QUIET.set(True)
            try:
                result = await original(*args, **kwargs)
            except BaseException as exc:
                _raised(hooks, call, args, exc)
                raise
            finally:
                QUIET.reset(quiet)
                IN_CALL.reset(inside)
            return _returned(hooks, call, args, result)

        return wrapper

    return make


def wrapper_for(original: Any, hooks: Hooks) -> Callable[[Any], Any]:
    return (async_wrapper if inspect.iscoroutinefunction(original) else sync_wrapper)(hooks)


class Translator(Protocol):
    """What a function-level adapter provides (google-genai, mistral, ollama...)."""

    name: str

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request | None:
        """The call about to be made (``args[0]`` is the bound instance), or None."""

    def response(self, req: Request, obj: Any) -> Outcome:
        """What a whole response says."""

    def accumulator(self, req: Request) -> Accumulator:
        """A fresh fold for one stream's items."""


class FunctionHooks:
    """The usual mapping: a returned value is the response, or the stream when the
    request asked for one; an exception is the call's error."""

    __slots__ = ("tr",)

    def __init__(self, tr: Translator) -> None:
        self.tr = tr

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        req = self.tr.request(args, kwargs)
        return None if req is None else begin(req)

    def returned(self, call: Call, args: tuple[Any, ...], result: Any) -> Any:
        if call.req.streamed:
            return observe(result, call, self.tr.accumulator(call.req), self.tr.name)
        call.done(self.tr.response, result)
        return result

    def raised(self, call: Call, args: tuple[Any, ...], exc: BaseException) -> None:
        call.failed(exc)


def patch(patches: Any, owner: Any, name: str, tr: Translator) -> None:
    """Record every call of ``owner.name`` (sync or async) through ``tr``."""
    original = owner.__dict__.get(name)
    if original is not None:
        patches.apply(owner, name, wrapper_for(original, FunctionHooks(tr)))


# -- streams that are plain iterators --------------------------------------------------
def observe(result: Any, call: Call, acc: Accumulator, sdk: str) -> Any:
    """The stream to hand back, observed: the SDK's own object when it keeps its items in
    ``_iterator``; for a plain iterator (a generator), a generator passing each item on."""
    cls = type(result)
    if observe_stream(result, call, acc, hasattr(cls, "__anext__")):
        return result
    if hasattr(cls, "__anext__"):
        call.acc = acc
        wrapped: Any = _observed_async(result, call)
    elif hasattr(cls, "__next__"):
        call.acc = acc
        wrapped = _observed_sync(result, call)
    else:
        cannot_observe(call, sdk, cls)
        return result
    cut_when_collected(wrapped, call)
    return wrapped


# A plain generator does the SDK's work (its HTTP request, on the first item) as it is
# iterated, so the flags ``wrapper`` sets around the call are set around each step too.
def _observed_sync(inner: Iterator[Any], call: Call) -> Iterator[Any]:
    observer = _SyncObserver(inner, call)
    try:
        while True:
            inside, quiet = IN_CALL.set(True), QUIET.set(True)
            try:
                item = observer.__next__()
            except StopIteration:
                return
            finally:
                QUIET.reset(quiet)
                IN_CALL.reset(inside)
            yield item
    except GeneratorExit:  # closed, or dropped, before its end
        with G_FINISH:
            call.cut("closed before its end")
        observer.close()
        raise


async def _observed_async(inner: AsyncIterator[Any], call: Call) -> AsyncIterator[Any]:
    observer = _AsyncObserver(inner, call)
    try:
        while True:
            inside, quiet = IN_CALL.set(True), QUIET.set(True)
            try:
                item = await observer.__anext__()
            except StopAsyncIteration:
                return
            finally:
                QUIET.reset(quiet)
                IN_CALL.reset(inside)
            yield item
    except GeneratorExit:
        with G_FINISH:
            call.cut("closed before its end")
        await observer.aclose()
        raise


# -- streams that are their own iterators ----------------------------------------------
# Such a stream (litellm's ``CustomStreamWrapper``) has no ``_iterator`` to stand in for:
# its class's ``__next__``/``__anext__``/``close``/``aclose`` are patched once, and feed
# the call of each stream a recorded call returned.
class _Watch:
    __slots__ = ("busy", "call", "ending")

    def __init__(self, call: Call, ending: Callable[[Any, Call], None] | None) -> None:
        self.call = call
        self.ending = ending
        self.busy = False


_watched: weakref.WeakKeyDictionary[Any, _Watch] = weakref.WeakKeyDictionary()


def watch_iterator(stream: Any, call: Call, acc: Accumulator,
                   ending: Callable[[Any, Call], None] | None = None) -> None:
    """Observe ``stream`` (its class hooked by ``hook_iterator_class``); ``ending(stream,
    call)`` runs at its end, before the call closes."""
    call.acc = acc
    _watched[stream] = _Watch(call, ending)
    cut_when_collected(stream, call)


def hook_iterator_class(patches: Any, cls: type) -> None:
    for name, make in (("__next__", _next_hook), ("__anext__", _anext_hook),
                       ("close", closed_by(_iterator_closed)),
                       ("aclose", closed_by(_iterator_closed))):
        patches.apply(cls, name, make)


def _iterator_ended(stream: Any, watch: _Watch, exc: BaseException | None) -> None:
    with G_FINISH:
        _watched.pop(stream, None)
        if exc is None:
            if watch.ending is not None:
                watch.ending(stream, watch.call)
            watch.call.done()
        else:
            watch.call.failed(exc)


# The stream may close itself on its way out of ``__next__`` (litellm does, at the end or
# on an error): ``busy`` tells that close from the caller's, which cuts the record short.
def _next_hook(original: Any) -> Any:
    @functools.wraps(original)
    def __next__(self: Any) -> Any:
        watch = _watched.get(self) if _watched else None
        if watch is None:
            return original(self)
        # The request may be made only now (a lazily opened stream): still this call.
        watch.busy = True
        inside, quiet = IN_CALL.set(True), QUIET.set(True)
        try:
            item = original(self)
        except StopIteration:
            _iterator_ended(self, watch, None)
            raise
        except BaseException as exc:
            _iterator_ended(self, watch, exc)
            raise
        finally:
            QUIET.reset(quiet)
            IN_CALL.reset(inside)
            watch.busy = False
        _chunk(watch.call, item)
        return item

    return __next__


def _anext_hook(original: Any) -> Any:
    @functools.wraps(original)
    async def __anext__(self: Any) -> Any:
        watch = _watched.get(self) if _watched else None
        if watch is None:
            return await original(self)
        watch.busy = True
        inside, quiet = IN_CALL.set(True), QUIET.set(True)
        try:
            item = await original(self)
        except StopAsyncIteration:
            _iterator_ended(self, watch, None)
            raise
        except BaseException as exc:
            _iterator_ended(self, watch, exc)
            raise
        finally:
            QUIET.reset(quiet)
            IN_CALL.reset(inside)
            watch.busy = False
        _chunk(watch.call, item)
        return item

    return __anext__


def _iterator_closed(stream: Any) -> None:
    with G_FINISH:
        watch = _watched.get(stream)
        if watch is not None and not watch.busy:
            _watched.pop(stream, None)
            watch.call.cut("closed before its end")
