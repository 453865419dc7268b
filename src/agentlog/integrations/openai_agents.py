"""OpenAI Agents SDK (``openai-agents``): its traces as iterations, interactions, actions.

A tracing processor joins the SDK's trace provider when the SDK creates it (or at once,
if it exists already): creating the provider early would build the SDK's exporter and
its HTTP client at ``import agents``. The processor maps:

- a trace (one ``Runner.run``, or a ``with trace(...)`` around several) onto an
  iteration, unless one is open already;
- an agent span onto an interaction named after the agent (a handoff ends one agent's
  span and starts the next one's);
- a function span onto a ``tool:<name>`` action, a handoff span onto a
  ``handoff:<to agent>`` action and a guardrail span onto a ``guardrail:<name>`` action,
  in the interaction of the agent they belong to.

LLM calls are not recorded here. The Runner's model calls go through the openai SDK,
whose adapter records each HTTP request once, inside the agent's interaction; the
generation and response spans only describe those same calls, so they are skipped, and
no call is ever recorded twice.

Attribution: the SDK starts and ends an agent span in the same context (it resets its
own ContextVar token there), so the processor sets ``_context.current`` at span start
and puts the previous scope back at span end; the tasks the Runner starts for model
calls and tools inherit it.

The processor adds nothing to what the SDK sends: its own exporter still exports only
when the program gave it an API key. With ``OPENAI_AGENTS_DISABLE_TRACING=1`` or
``RunConfig(tracing_disabled=True)`` no spans exist, and only the LLM calls are recorded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .. import _recorder, api
from .._context import InteractionState, IterationState, Scope, current
from .._guard import Guard
from .._patching import Patches

PATCHES = Patches()
G_TRACE = Guard("openai_agents.trace")
_MAX_OPEN = 10_000
"""Spans never ended (a cancelled run) are forgotten past this many open ones."""


class ToolError(Exception):
    """A tool failure the SDK handled itself (it told the model): the span keeps only text."""


class _Open:
    """An open trace or span: the scope its children see, and what it owns."""

    __slots__ = ("action", "failed", "iteration", "outer", "prev", "scope", "start_ns", "state")

    def __init__(self, scope: Scope, outer: Scope, prev: Scope | None = None) -> None:
        self.scope = scope
        self.outer = outer
        self.prev = prev  # what ``current`` held before we set ``scope``
        self.state: InteractionState | None = None
        self.iteration: IterationState | None = None
        self.action: str | None = None
        self.start_ns = 0
        self.failed = False


class Tracker:
    """Trace and span bookkeeping by id; every step is one dict operation per id."""

    def __init__(self) -> None:
        self.open: dict[str, _Open] = {}
        self.active = True

    def _off(self) -> bool:
        return not self.active or api.RECORDER.verbosity == 0 or G_TRACE.broken

    def _add(self, key: str, item: _Open) -> None:
        if len(self.open) >= _MAX_OPEN:
            self.open.pop(next(iter(self.open)), None)
        self.open[key] = item

    def trace_start(self, trace: Any) -> None:
        if self._off():
            return
        with G_TRACE:
            outer = current.get()
            item = _Open(outer, outer, outer)
            if outer.iteration is None:
                item.iteration = api._open_iteration(None, auto=True)
                item.scope = Scope(item.iteration, None, outer.agent)
                current.set(item.scope)
            self._add(_key(trace, "trace_id"), item)

    def trace_end(self, trace: Any) -> None:
        item = self.open.pop(_key(trace, "trace_id"), None)
        if item is None or item.iteration is None or G_TRACE.broken:
            return
        with G_TRACE:
            _restore(item)
            api._close_iteration(item.iteration, "failed" if item.failed else "completed")

    def span_start(self, span: Any) -> None:
        if self._off():
            return
        with G_TRACE:
            data = span.span_data
            kind = getattr(data, "type", None)
            parent = self.open.get(_key(span, "parent_id")) or self.open.get(
                _key(span, "trace_id"))
            scope = parent.scope if parent is not None else current.get()
            item = _Open(scope, scope)
            if kind == "agent":
                item.prev = current.get()
                # The interaction opens inside its parent span's scope.
                item.state, item.scope = api._open_interaction(str(data.name), None, scope)
                current.set(item.scope)
            elif kind in ("function", "handoff", "guardrail"):
                item.start_ns = _recorder.now_ns()
                item.action = kind
            self._add(_key(span, "span_id"), item)

    def span_end(self, span: Any) -> None:
        item = self.open.pop(_key(span, "span_id"), None)
        if item is None or G_TRACE.broken:
            return
        with G_TRACE:
            error = span.error
            if item.state is not None:
                _restore(item)
                if error:
                    item.state.failed = True
                    self._fail(span)
                api._close_interaction(item.state, item.outer, None)
            elif item.action is not None:
                name, data_in, data_out = _action(item.action, span.span_data)
                api._emit_action(name, data_in, data_out, error=_tool_error(error),
                                 start_ns=item.start_ns, scope=item.scope)

    def _fail(self, span: Any) -> None:
        trace = self.open.get(_key(span, "trace_id"))
        if trace is not None:
            trace.failed = True


TRACKER = Tracker()


def _key(obj: Any, attr: str) -> str:
    value = getattr(obj, attr, None)
    return value if isinstance(value, str) else ""


def _restore(item: _Open) -> None:
    """Put back the scope we replaced, unless someone else has set another since."""
    if item.prev is not None and current.get() is item.scope:
        current.set(item.prev)


def _json_or_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _action(kind: str, data: Any) -> tuple[str, Any, Any]:
    """Name, input and output of the action a span stands for."""
    if kind == "function":
        return (f"tool:{data.name}", _json_or_text(data.input), _json_or_text(data.output))
    if kind == "handoff":
        return (f"handoff:{data.to_agent}",
                {"from_agent": data.from_agent, "to_agent": data.to_agent}, None)
    return (f"guardrail:{data.name}", None, {"triggered": data.triggered})


def _tool_error(error: Any) -> ToolError | None:
    if not error:
        return None
    message = error.get("message") if isinstance(error, dict) else str(error)
    detail = (error.get("data") or {}).get("error") if isinstance(error, dict) else None
    return ToolError(f"{message}: {detail}" if detail else str(message))


def _processor_class(base: type) -> type:
    """The processor, subclassing the SDK's ``TracingProcessor`` (known only at install)."""

    class AgentlogTracingProcessor(base):  # type: ignore[misc]
        """Feeds agentlog; exports nothing anywhere."""

        def on_trace_start(self, trace: Any) -> None:
            TRACKER.trace_start(trace)

        def on_trace_end(self, trace: Any) -> None:
            TRACKER.trace_end(trace)

        def on_span_start(self, span: Any) -> None:
            TRACKER.span_start(span)

        def on_span_end(self, span: Any) -> None:
            TRACKER.span_end(span)

        def shutdown(self, timeout: float | None = None) -> None:
            """Nothing to flush: agentlog's own journal is flushed by agentlog."""

        def force_flush(self) -> None:
            """Nothing to flush."""

    return AgentlogTracingProcessor


PROCESSOR: Any = None
"""One per process: the SDK can add a processor but not remove one, so ``uninstall``
turns it off and a later ``install`` turns the same one back on."""
_joined = False


def _join(provider: Any) -> None:
    global _joined
    provider.register_processor(PROCESSOR)
    _joined = True


def _joining(original: Callable[..., Any]) -> Callable[..., Any]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not _joined:  # the one provider the SDK makes for itself
            with G_TRACE:
                _join(self)

    return __init__


def install(module: ModuleType) -> None:
    """Called once ``agents`` is imported: join its trace provider, now or when made."""
    global PROCESSOR
    tracing = sys.modules.get("agents.tracing")
    setup = sys.modules.get("agents.tracing.setup")
    provider = sys.modules.get("agents.tracing.provider")
    if tracing is None or setup is None or provider is None:
        return  # another package named ``agents``
    TRACKER.active = True
    if PROCESSOR is None:
        PROCESSOR = _processor_class(tracing.TracingProcessor)()
    if _joined:
        return
    if setup.GLOBAL_TRACE_PROVIDER is not None:
        _join(setup.GLOBAL_TRACE_PROVIDER)
    else:
        PATCHES.apply(provider.DefaultTraceProvider, "__init__", _joining)


def uninstall() -> None:
    """Stop recording; the processor stays registered (the SDK cannot remove it), inert."""
    TRACKER.active = False
    PATCHES.remove()
    TRACKER.open.clear()
