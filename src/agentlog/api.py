"""The three seed styles and the Pythonic forms: all faces of one recorder.

Every function here does its bookkeeping inside a guard and runs user code outside
it. The only exception raised on purpose is ``UsageError``, for calls made in an
order that cannot mean anything (ending what was never started).
"""

from __future__ import annotations

import functools
import os
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from . import _recorder, _settings
from ._context import EMPTY, InteractionState, IterationState, Scope, current
from ._guard import Guard
from ._recorder import Recorder
from ._redact import scrub

if TYPE_CHECKING:
    import inspect

F = TypeVar("F", bound=Callable[..., Any])

RECORDER = Recorder(_settings.read())
"""The process's one recorder; settings are read once, here."""

_G_INTERACTION = Guard("api.interaction")
_G_ITERATION = Guard("api.iteration")
_G_ACTION = Guard("api.action")
_G_RESOURCE = Guard("api.resource")
_G_ERROR = Guard("api.error")
_G_RUN = Guard("api.run")


class UsageError(Exception):
    """A manual logging call made out of order; the message says what to call first."""


# -- shared bookkeeping ---------------------------------------------------------------
def _status_of(exc: BaseException | None) -> str:
    if exc is None:
        return "completed"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    asyncio = sys.modules.get("asyncio")  # not imported by us: it costs import time
    if asyncio is not None and isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, GeneratorExit):
        return "cancelled"  # a generator closed early: its consumer stopped, nothing failed
    if isinstance(exc, SystemExit):
        return "exited"
    return "failed"


# One failure passing through several scopes (and then an excepthook) is logged once.
# Inside scopes, the open scopes remember it themselves (``absorbed``): exact, and the
# reference goes when they close. An id alone cannot do this: the next exception of a
# retry loop reuses the address of the last, dead one at once and would be skipped.
# Once an exception has left every scope only the excepthooks can still see it; for
# them it is remembered by id, type and raise site, holding no reference (no frames).
_escaped: OrderedDict[tuple[int, type, object], None] = OrderedDict()
_HOOK_SOURCES = ("uncaught", "thread")


def _escape_key(exc: BaseException) -> tuple[int, type, object]:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    site = None if tb is None else (id(tb.tb_frame.f_code), tb.tb_lineno)
    return (id(exc), type(exc), site)


def _already_logged(error: BaseException, scope: Scope, source: str, outer: Scope) -> bool:
    """Say whether ``error`` is in error_log already; note it where it can still go
    (``outer``: at a scope's exit, the scope it returns to)."""
    seen = any(s is not None and s.absorbed is error for s in (scope.interaction, scope.iteration))
    top = scope.interaction is None and scope.iteration is None
    if not seen and top and source in _HOOK_SOURCES:
        seen = _escape_key(error) in _escaped
    for state in (scope.interaction, scope.iteration, outer.interaction, outer.iteration):
        if state is not None:
            state.absorbed = error
    if outer.interaction is None and outer.iteration is None:
        _escaped[_escape_key(error)] = None
        if len(_escaped) > 256:
            _escaped.popitem(last=False)
    return seen


def _error_body(exc: BaseException) -> dict[str, Any]:
    notes: list[str] = []
    return {
        "type": _recorder.type_name(exc),
        "error": _text(_exc_message(exc), notes, "$.error"),
    }


def _text(value: str, notes: list[str], path: str, keep_end: bool = False) -> str:
    """A capped field that the schema says is a string: the cut is marked in the text
    rather than by the cap's object. A traceback keeps its end, where the error is named."""
    cap = RECORDER.limits.max_str
    n = len(value)
    if n > cap:
        value = scrub(value)  # whole, so that the cut cannot leave half a secret behind
        keep = max(cap - 64, 0)
        mark = f"<{len(value) - keep} of {len(value)} chars cut>"
        value = f"{mark}\n{value[-keep:]}" if keep_end else f"{value[:keep]}{mark}"
        notes.append(f"{path}: string of {n} chars truncated to {keep}")
    out = RECORDER.convert(value, notes, path)
    return out if isinstance(out, str) else "<unrepresentable text>"


def _exc_message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as inner:  # noqa: BLE001 - a hostile __str__ must not escape
        return f"<str() failed: {type(inner).__name__}>"


def record_error(
    error: BaseException | str,
    *,
    source: str = "user",
    scope: Scope | None = None,
    outer: Scope | None = None,
    with_traceback: bool = True,
) -> None:
    """Append one entry to error_log (once per exception object). ``scope`` is where it
    happened, ``outer`` where control returns; both default to the current scope."""
    rec = RECORDER
    if rec.verbosity == 0:
        return
    scope = scope or current.get()
    notes: list[str] = []
    if isinstance(error, BaseException):
        if _already_logged(error, scope, source, outer or current.get()):
            return
        tb: str | None = None
        if with_traceback and error.__traceback__ is not None:
            import traceback  # not at import: it costs import time

            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        body: dict[str, Any] = {
            "ev": "error",
            "t": _recorder.now_ns(),
            **_error_body(error),
            "traceback": _text(tb, notes, "$.traceback", keep_end=True) if tb else None,
        }
    else:
        body = {
            "ev": "error",
            "t": _recorder.now_ns(),
            "type": "Error",
            "error": _text(str(error), notes, "$.error"),
            "traceback": None,
        }
    body["source"] = source
    body["where"] = {
        "iteration_number": scope.iteration.number if scope.iteration else None,
        "agent_name": scope.interaction.agent if scope.interaction else scope.agent,
        "interaction_id": scope.interaction.id if scope.interaction else None,
    }
    if notes:
        body["lossy"] = notes
    rec.emit(body)


def _open_iteration(number: int | None, auto: bool) -> IterationState:
    rec = RECORDER
    run = rec.current()
    state = IterationState(run.new_id(), run.new_number(number), auto, run)
    rec.emit(
        {"ev": "iteration_start", "t": _recorder.now_ns(), "it": state.id, "number": state.number,
         "auto": auto}
    )
    return state


def _close_iteration(state: IterationState, status: str) -> None:
    rec = RECORDER
    rec.settle()  # its calls' records too, before it is made durable
    rec.emit({"ev": "iteration_end", "t": _recorder.now_ns(), "it": state.id, "status": status})
    state.absorbed = None
    writer = rec.current().writer
    if writer is not None:
        writer.flush(timeout=0.5)  # the journal is durable at iteration boundaries


def _open_interaction(
    agent: str, input_data: Any, scope: Scope | None = None,
) -> tuple[InteractionState, Scope]:
    """Open an interaction in ``scope`` (the current one unless a framework says where);
    an automatic iteration if none."""
    rec = RECORDER
    scope = scope or current.get()
    iteration = scope.iteration
    if iteration is None:
        iteration = _open_iteration(None, auto=True)
    run = rec.current()
    state = InteractionState(run.new_id(), iteration, agent, run)
    notes: list[str] = []
    body: dict[str, Any] = {
        "ev": "interaction_start",
        "t": _recorder.now_ns(),
        "it": iteration.id,
        "ix": state.id,
        "parent": scope.interaction.id if scope.interaction else None,
        "agent": rec.convert(agent, notes, "$.agent_name"),
        "input": rec.content(input_data, notes, "$.input_data"),
    }
    if notes:
        body["lossy"] = notes
    rec.emit(body)
    return state, Scope(iteration, state, agent)


def _close_interaction(
    state: InteractionState, outer: Scope, exc: BaseException | None
) -> None:
    rec = RECORDER
    notes: list[str] = []
    status = "failed" if state.failed and exc is None else _status_of(exc)
    body: dict[str, Any] = {"ev": "interaction_end", "t": _recorder.now_ns(), "ix": state.id,
                            "status": status}
    if state.output_set:
        body["output"] = rec.content(state.output, notes, "$.output_data")
    if exc is not None:
        body["error"] = _error_body(exc)
        record_error(exc, source="interaction", scope=Scope(state.iteration, state, state.agent),
                     outer=outer)
    if notes:
        body["lossy"] = notes
    rec.emit(body)
    state.absorbed = None
    if outer.iteration is None:  # we opened an automatic iteration for it: close it
        _close_iteration(state.iteration, status)
    elif exc is not None:
        state.iteration.failed = True


def _emit_action(
    name: str, input_data: Any, output_data: Any, *, error: BaseException | None = None,
    start_ns: int | None = None, scope: Scope | None = None,
) -> None:
    """One action in ``scope``'s interaction (the current one unless a framework says
    where), or a one-shot interaction around it."""
    rec = RECORDER
    scope = scope or current.get()
    notes: list[str] = []
    t = _recorder.now_ns()
    body: dict[str, Any] = {
        "ev": "action",
        "t": start_ns if start_ns is not None else t,
        "name": rec.convert(name, notes, "$.action_name"),
        "input": rec.content(input_data, notes, "$.input_data"),
        "output": rec.content(output_data, notes, "$.output_data"),
    }
    if start_ns is not None:
        body["t_end"] = t
    if error is not None:
        body["error"] = _error_body(error)
    if notes:
        body["lossy"] = notes
    if scope.interaction is not None:
        body["ix"] = scope.interaction.id
        rec.emit(body)
    else:
        state, _ = _open_interaction(scope.agent or name, input_data, scope)
        body["ix"] = state.id
        rec.emit(body)
        state.output, state.output_set = output_data, True
        _close_interaction(state, scope, error)
        return
    if error is not None:
        record_error(error, source="action", scope=scope, outer=scope)


def call_ids(scope: Scope) -> tuple[int | None, int | None, int | None]:
    """(interaction id, iteration id, iteration number) a call made in ``scope`` will
    need for ``record_call``: taken when the call ends, so numbers follow call order."""
    if scope.interaction is not None:
        return (None, None, None)
    run = RECORDER.current()
    if scope.iteration is not None:
        return (run.new_id(), None, None)
    return (run.new_id(), run.new_id(), run.new_number())


def record_call(
    scope: Scope,
    start_ns: int,
    end_ns: int,
    ids: tuple[int | None, int | None, int | None],
    name: str,
    agent_name: str,
    body: dict[str, Any],
    error: BaseException | None,
) -> None:
    """Journal one finished call made by an integration (an LLM request).

    Inside an interaction it is an action of it; otherwise it is an interaction of its
    own (``agent_name``), in an automatic iteration when none is open. ``body`` holds
    JSON-safe ``input``, ``output``, ``llm`` and ``lossy``. ``scope`` is the one open
    when the call started (a stream may end anywhere, long after); ``ids`` come from
    ``call_ids``.
    """
    rec = RECORDER
    ev: dict[str, Any] = {"t": start_ns, "t_end": end_ns, **body}
    if error is not None:
        ev["error"] = _error_body(error)
    if scope.interaction is not None:
        ev["ev"] = "action"
        ev["name"] = name
        ev["ix"] = scope.interaction.id
        rec.emit(ev)
        if error is not None:
            record_error(error, source="llm", scope=scope)
        return
    ix, it, it_number = ids
    iteration = scope.iteration
    ev["ev"] = "interaction"
    ev["ix"] = ix
    ev["agent"] = agent_name
    if iteration is None:
        ev["it"] = it
        ev["it_number"] = it_number
    else:
        ev["it"] = iteration.id
    rec.emit(ev)
    if error is not None:
        # ``where`` names the interaction just written; the states exist only for that.
        run = rec.current()
        it_state = iteration or IterationState(ev["it"], it_number or 0, True, run)
        ix_state = InteractionState(ev["ix"], it_state, agent_name, run)
        record_error(error, source="llm", scope=Scope(it_state, ix_state, scope.agent))


# -- design 1: the invisible module functions -------------------------------------------
def set_logging(enabled: bool = True, verbosity: int | None = None) -> None:
    """Turn recording on or off, and set the verbosity (0 off, 1 normal, 2 full, 3 debug).

    ``set_logging(verbosity=2)``, ``set_logging(True, verbosity=2)`` and
    ``set_logging(False)`` all work; a verbosity left out stays as it was.
    """
    from . import _lifecycle

    with _G_RUN:
        rec = RECORDER
        if not rec.settings.enabled:
            return  # AGENTLOG=0 is the operator's kill switch: the code cannot undo it
        if not enabled:
            rec.set_verbosity(0)
            _lifecycle.uninstall_hooks()
            return
        rec.set_verbosity(verbosity if verbosity is not None else max(rec.verbosity, 1))
        _lifecycle.install_hooks()


def start_workflow(workflow_name: str) -> None:
    """Name the current run (it started at ``import agentlog``)."""
    with _G_RUN:
        run = RECORDER.current()
        run.workflow_name = str(workflow_name)
        if run.writer is not None:
            RECORDER.emit(
                {"ev": "meta", "t": _recorder.now_ns(), "workflow_name": run.workflow_name}
            )


def log_interaction(agent_name: str, input_data: Any, output_data: Any) -> None:
    """Record one complete interaction; outside an iteration it gets its own."""
    rec = RECORDER
    if rec.verbosity == 0 or _G_INTERACTION.broken:
        return
    with _G_INTERACTION:
        scope = current.get()
        run = rec.current()
        notes: list[str] = []
        t = _recorder.now_ns()
        body: dict[str, Any] = {
            "ev": "interaction",
            "t": t,
            "t_end": t,
            "ix": run.new_id(),
            "agent": rec.convert(agent_name, notes, "$.agent_name"),
            "input": rec.content(input_data, notes, "$.input_data"),
            "output": rec.content(output_data, notes, "$.output_data"),
        }
        if scope.iteration is None:
            body["it"] = run.new_id()
            body["it_number"] = run.new_number()
        else:
            body["it"] = scope.iteration.id
        if scope.interaction is not None:
            body["parent"] = scope.interaction.id
        if notes:
            body["lossy"] = notes
        rec.emit(body)


def add_resource(
    resource_name: str | os.PathLike[str],
    kind: str | None = None,
    *,
    loader: str | None = "manual",
    size_bytes: int | None = None,
) -> None:
    """Record that the workflow used a resource (file, url, dataset, model, loader)."""
    rec = RECORDER
    if rec.verbosity == 0 or _G_RESOURCE.broken:
        return
    with _G_RESOURCE:
        name = os.fspath(resource_name) if isinstance(resource_name, os.PathLike) else resource_name
        if kind in (None, "file") and isinstance(name, str) and os.path.isfile(name):
            # Named as the automatic file hook names it, so the two merge into one entry.
            name, kind = os.path.abspath(name), "file"
        notes: list[str] = []
        text = rec.convert(str(name), notes, "$.resource")
        if kind is None:
            kind = "url" if "://" in str(text) else "file" if isinstance(resource_name,
                                                                         os.PathLike) else "other"
        scope = current.get()
        rec.emit(
            {
                "ev": "resource",
                "t": _recorder.now_ns(),
                "resource": text,
                "kind": str(kind),
                "loader": loader,
                "bytes": size_bytes if isinstance(size_bytes, int) else None,
                "where": {
                    "iteration_number": scope.iteration.number if scope.iteration else None,
                    "agent_name": scope.agent,
                },
            }
        )


def log_error(error: BaseException | str) -> None:
    """Record an error: a message, or an exception with its traceback."""
    if _G_ERROR.broken:
        return
    with _G_ERROR:
        record_error(error, source="user")


def finalize_workflow(status: str = "completed") -> None:
    """End the run now with ``status`` and write its document."""
    with _G_RUN:
        RECORDER.finalize(str(status))


def save_log(filename: str | os.PathLike[str] | None = None) -> Path | None:
    """Write the run's document as it stands to ``filename`` (default: its own path)."""
    if not RECORDER.settings.enabled:
        return None  # AGENTLOG=0: no file at all
    with _G_RUN:
        return RECORDER.save(filename)
    return None


# -- the Pythonic forms -------------------------------------------------------------------
class _SyncScope:
    """``async with`` means the same as ``with``: entering a scope never awaits."""

    def __enter__(self: _S) -> _S:
        raise NotImplementedError

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raise NotImplementedError

    async def __aenter__(self: _S) -> _S:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


_S = TypeVar("_S", bound=_SyncScope)


class iteration(_SyncScope):
    """``with agentlog.iteration():`` (or ``async with``): one iteration of the workflow."""

    def __init__(self, number: int | None = None) -> None:
        self.number = number
        self._state: IterationState | None = None
        self._token: Any = None

    def __enter__(self) -> iteration:
        if RECORDER.verbosity == 0 or _G_ITERATION.broken:
            return self
        with _G_ITERATION:
            scope = current.get()
            self._state = _open_iteration(self.number, auto=False)
            self._token = current.set(Scope(self._state, None, scope.agent))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        state = self._state
        if state is None:
            return
        self._state = None
        with _G_ITERATION:
            current.reset(self._token)
            if exc is not None:
                record_error(exc, source="iteration", scope=Scope(state, None, None))
            status = _status_of(exc)
            _close_iteration(state, "failed" if state.failed and exc is None else status)


class interaction(_SyncScope):
    """``with agentlog.interaction("planner", input) as ix:``; set ``ix.output``."""

    def __init__(self, agent_name: str, input_data: Any = None) -> None:
        self.agent_name = agent_name
        self.input_data = input_data
        self._state: InteractionState | None = None
        self._outer: Scope = EMPTY
        self._token: Any = None
        self._output: Any = None

    @property
    def output(self) -> Any:
        return self._output

    @output.setter
    def output(self, value: Any) -> None:
        self._output = value
        if self._state is not None:
            self._state.output, self._state.output_set = value, True

    def set_output(self, value: Any) -> None:
        self.output = value

    def __enter__(self) -> interaction:
        if RECORDER.verbosity == 0 or _G_INTERACTION.broken:
            return self
        with _G_INTERACTION:
            self._outer = current.get()
            data = self.input_data
            if isinstance(data, _LazyInput):
                data = data.resolve()
            self._state, scope = _open_interaction(self.agent_name, data)
            self._token = current.set(scope)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        state = self._state
        if state is None:
            return
        self._state = None
        with _G_INTERACTION:
            current.reset(self._token)
            _close_interaction(state, self._outer, exc)


def _call_input(
    sig: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A function call's arguments by name, without ``self``/``cls``."""
    if sig is None:
        return {"args": list(args), "kwargs": kwargs}
    try:
        bound = sig.bind_partial(*args, **kwargs)
    except TypeError:
        return {"args": list(args), "kwargs": kwargs}
    data = dict(bound.arguments)
    data.pop("self", None)
    data.pop("cls", None)
    if len(data) == 1:
        return next(iter(data.values()))
    return data


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    import inspect  # here, not at import: it costs import time

    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _is_async(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


def agent(name: str) -> Callable[[F], F]:
    """``@agentlog.agent("planner")``: each call is an interaction of that agent.

    LLM calls and tools inside are attributed to it. Works on sync and async functions.
    """

    def decorate(fn: F) -> F:
        sig = _signature(fn)

        if _is_async(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with interaction(name, _LazyInput(sig, args, kwargs)) as ix:
                    result = await fn(*args, **kwargs)
                    ix.output = result
                return result

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with interaction(name, _LazyInput(sig, args, kwargs)) as ix:
                result = fn(*args, **kwargs)
                ix.output = result
            return result

        return cast(F, wrapper)

    return decorate


class _LazyInput:
    """Arguments bound only when recorded, so verbosity 0 pays nothing for them."""

    __slots__ = ("args", "kwargs", "sig")

    def __init__(self, sig: inspect.Signature | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.sig, self.args, self.kwargs = sig, args, kwargs

    def resolve(self) -> Any:
        return _call_input(self.sig, self.args, self.kwargs)


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(name: str | None = None, /) -> Callable[[F], F]: ...
def tool(arg: Any = None, /) -> Any:
    """``@agentlog.tool`` or ``@agentlog.tool("search")``: each call is a ``tool:`` action."""
    if callable(arg):
        return _tool(arg, getattr(arg, "__name__", "tool"))
    return lambda fn: _tool(fn, arg or getattr(fn, "__name__", "tool"))


def _tool(fn: F, name: str) -> F:
    sig = _signature(fn)
    action_name = f"tool:{name}"

    def done(start: int | None, args: Any, kwargs: Any, result: Any,
             exc: BaseException | None) -> None:
        if start is None:
            return
        with _G_ACTION:
            _emit_action(action_name, _call_input(sig, args, kwargs), result, error=exc,
                         start_ns=start)

    def begin() -> int | None:
        return None if RECORDER.verbosity == 0 or _G_ACTION.broken else _recorder.now_ns()

    if _is_async(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            start = begin()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                done(start, args, kwargs, None, exc)
                raise
            done(start, args, kwargs, result, None)
            return result

        return cast(F, async_wrapper)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = begin()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            done(start, args, kwargs, None, exc)
            raise
        done(start, args, kwargs, result, None)
        return result

    return cast(F, wrapper)


# -- design 2: automatic iterations -------------------------------------------------------
def _adopt(workflow_name: str, logs_dir: str | os.PathLike[str] | None) -> None:
    run = RECORDER.current()
    start_workflow(workflow_name)
    if logs_dir is not None:
        run.doc_dir = Path(logs_dir).expanduser()
        if run.writer is not None:
            RECORDER.emit({"ev": "meta", "t": _recorder.now_ns(), "doc_dir": str(run.doc_dir)})


class AutoIterationLogger:
    """Each ``log_agent_run`` is an iteration of its own; the run ends at exit."""

    def __init__(self, workflow_name: str, logs_dir: str | os.PathLike[str] | None = None) -> None:
        self.workflow_name = workflow_name
        self.logs_dir = logs_dir
        with _G_RUN:
            _adopt(workflow_name, logs_dir)

    def log_agent_run(self, agent_name: str, input_data: Any, output_data: Any) -> None:
        log_interaction(agent_name, input_data, output_data)

    def add_resource(self, resource: str | os.PathLike[str]) -> None:
        add_resource(resource)

    def log_error(self, msg: BaseException | str) -> None:
        log_error(msg)

    def finalize(self, status: str = "completed") -> None:
        finalize_workflow(status)


# -- design 3: full manual control ---------------------------------------------------------
class AdvancedWorkflowLogger:
    """Explicit iterations, interactions and actions, checked for order."""

    def __init__(self, workflow_name: str, logs_dir: str | os.PathLike[str] | None = None) -> None:
        self.workflow_name = workflow_name
        self.logs_dir = logs_dir
        self._iteration: IterationState | None = None
        self._interaction: InteractionState | None = None
        self._outer: Scope = EMPTY
        with _G_RUN:
            _adopt(workflow_name, logs_dir)

    def start_iteration(self, iteration_number: int | None = None) -> None:
        if self._iteration is not None:
            raise UsageError(
                f"iteration {self._iteration.number} is still in progress: "
                "call end_iteration() before start_iteration()"
            )
        if RECORDER.verbosity == 0:
            return
        with _G_ITERATION:
            self._outer = current.get()
            self._iteration = _open_iteration(iteration_number, auto=False)
            # Set, not reset later: end_iteration may run in another context.
            current.set(Scope(self._iteration, None, self._outer.agent))

    def end_iteration(self, status: str = "completed") -> None:
        if self._interaction is not None:
            raise UsageError(
                "an interaction is still in progress: call end_interaction() before end_iteration()"
            )
        if self._iteration is None:
            if RECORDER.verbosity == 0:
                return
            raise UsageError("no iteration in progress: call start_iteration() first")
        state, self._iteration = self._iteration, None
        with _G_ITERATION:
            current.set(self._outer)
            _close_iteration(state, str(status))

    def start_interaction(self, agent_name: str, input_data: Any = None) -> None:
        if self._interaction is not None:
            raise UsageError(
                f"interaction of {self._interaction.agent!r} is still in progress: "
                "call end_interaction() before start_interaction()"
            )
        if self._iteration is None:
            if RECORDER.verbosity == 0:
                return
            raise UsageError("no iteration in progress: call start_iteration() first")
        with _G_INTERACTION:
            self._interaction, scope = _open_interaction(agent_name, input_data)
            current.set(scope)

    def end_interaction(self, output_data: Any = None) -> None:
        if self._interaction is None:
            if RECORDER.verbosity == 0:
                return
            raise UsageError("no interaction in progress: call start_interaction() first")
        state, self._interaction = self._interaction, None
        with _G_INTERACTION:
            state.output, state.output_set = output_data, True
            current.set(Scope(state.iteration, None, self._outer.agent))
            # The outer scope has our iteration, so the iteration stays open.
            _close_interaction(state, Scope(state.iteration, None, None), None)

    def log_action(self, action_name: str, input_obj: Any = None, output_obj: Any = None) -> None:
        if self._interaction is None:
            if RECORDER.verbosity == 0:
                return
            raise UsageError("no interaction in progress: call start_interaction() first")
        if _G_ACTION.broken:
            return
        with _G_ACTION:
            token = current.set(Scope(self._interaction.iteration, self._interaction,
                                      self._interaction.agent))
            try:
                _emit_action(action_name, input_obj, output_obj)
            finally:
                current.reset(token)

    def add_resource(self, resource_name: str | os.PathLike[str]) -> None:
        add_resource(resource_name)

    def log_error(self, error_message: BaseException | str) -> None:
        log_error(error_message)

    def finalize(self, status: str = "completed") -> None:
        finalize_workflow(status)

    def save(self) -> Path | None:
        return save_log(None)

