"""LlamaIndex (``llama-index-core``): agents, workflows and engines as interactions, tools
as actions, through its instrumentation dispatcher.

A span handler joins the root dispatcher, with no user code. A span opens an interaction
when it is the entry point of an agent, workflow, query or chat engine (``Workflow.run``,
``query``, ``chat`` and their async and streaming forms), named after the agent
(``AgentWorkflow.root_agent``, an agent's ``name``) or else the class. A tool span
(``BaseTool.call``/``acall``) is one ``tool:<name>`` action. Every other span (LLM calls,
retrievers, parsers, workflow steps) belongs to the interaction around it.

LLM calls are not recorded here: the LLM class's SDK call underneath (openai, anthropic,
...) is recorded by that SDK's adapter, once, so nothing is recorded twice. An LLM with
no SDK adapter under it is not recorded.

Attribution: the dispatcher enters and exits a span in the same frame or coroutine, so
the handler sets ``_context.current`` to the span's interaction at enter and puts the
previous scope back at exit. Not for a span whose method hands back a future
(``Workflow.run``: it exits in a done callback, in another context, so a value set there
would stay behind in the caller's): its steps, spans of their own in the workflow's
tasks, set the scope instead.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

from .. import _recorder, api
from .._context import InteractionState, Scope, current
from .._guard import Guard

G_SPAN = Guard("llama_index.span")
_MAX_OPEN = 10_000
"""Spans never ended (a dropped generator) are forgotten past this many open ones."""

_ENTRY_METHODS = frozenset({"run", "query", "aquery", "chat", "achat", "stream_chat",
                            "astream_chat", "stream_query", "astream_query"})
_ENTRY_BASES = frozenset({"Workflow", "BaseQueryEngine", "BaseChatEngine", "BaseAgent",
                          "BaseAgentRunner", "BaseWorkflowAgent"})
_TOOL_METHODS = frozenset({"call", "acall", "__call__"})
_FUTURE_SPANS = frozenset({"Workflow.run"})
"""Methods that return a future: their span exits in a done callback, elsewhere."""


class _Span:
    __slots__ = ("action", "input", "outer", "prev", "scope", "start_ns", "state")

    def __init__(self, scope: Scope, outer: Scope) -> None:
        self.scope = scope
        self.outer = outer
        self.prev: Scope | None = None  # what ``current`` held before we set ``scope``
        self.state: InteractionState | None = None
        self.action: str | None = None
        self.input: Any = None
        self.start_ns = 0


def _bases(instance: Any) -> set[str]:
    return {cls.__name__ for cls in type(instance).__mro__}


def _agent_name(instance: Any) -> str:
    for attr in ("root_agent", "name"):
        value = getattr(instance, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(instance).__name__


_PLUMBING = frozenset({"self", "ctx", "stepwise", "checkpoint_callback"})


def _arguments(bound_args: Any) -> Any:
    """A call's arguments by name, without ``self``, workflow plumbing or ``None``s."""
    args = dict(getattr(bound_args, "arguments", {}) or {})
    extra = args.pop("kwargs", None)
    if isinstance(extra, dict):
        args.update(extra)
    args = {k: v for k, v in args.items() if k not in _PLUMBING and v is not None}
    if len(args) == 1:
        return next(iter(args.values()))
    return args


def _tool_output(result: Any) -> Any:
    """A ``ToolOutput`` stands for its raw output."""
    if hasattr(result, "raw_output") and hasattr(result, "tool_name"):
        return result.raw_output
    return result


def _entry_output(result: Any) -> Any:
    """An engine ``Response`` or an agent's output stands for its text."""
    response = getattr(result, "response", None)
    if isinstance(response, str):
        return response
    content = getattr(getattr(result, "response", None), "content", None)
    return content if isinstance(content, str) else result


class Tracker:
    """Span bookkeeping by span id; every step is one dict operation per id."""

    def __init__(self) -> None:
        self.open: dict[str, _Span] = {}
        self.active = True

    def _off(self) -> bool:
        return not self.active or api.RECORDER.verbosity == 0 or G_SPAN.broken

    def enter(self, id_: str, bound_args: Any, instance: Any, parent_id: str | None) -> None:
        if self._off():
            return
        with G_SPAN:
            parent = self.open.get(parent_id) if parent_id else None
            scope = parent.scope if parent is not None else current.get()
            span = _Span(scope, scope)
            method = id_.rsplit("-", 5)[0]
            name = method.rpartition(".")[2]
            bases = _bases(instance) if instance is not None else set()
            if name in _ENTRY_METHODS and bases & _ENTRY_BASES:
                span.state, span.scope = api._open_interaction(  # inside its parent
                    _agent_name(instance), _arguments(bound_args), scope)
            elif name in _TOOL_METHODS and "BaseTool" in bases:
                tool = getattr(getattr(instance, "metadata", None), "name", None) or "tool"
                span.action, span.input = f"tool:{tool}", _arguments(bound_args)
                span.start_ns = _recorder.now_ns()
            if len(self.open) >= _MAX_OPEN:
                self.open.pop(next(iter(self.open)), None)
            self.open[id_] = span
            if method not in _FUTURE_SPANS and current.get() is not span.scope:
                span.prev = current.get()
                current.set(span.scope)

    def exit(self, id_: str, result: Any, error: BaseException | None) -> None:
        span = self.open.pop(id_, None)
        if span is None or G_SPAN.broken:
            return
        with G_SPAN:
            if span.prev is not None and current.get() is span.scope:
                current.set(span.prev)
            if error is not None and type(error).__name__ in ("WorkflowDone",
                                                              "WorkflowCancelledByUser"):
                error = None  # how a workflow ends: not a failure
            if span.state is not None:
                if error is None:
                    span.state.output, span.state.output_set = _entry_output(result), True
                api._close_interaction(span.state, span.outer, error)
            elif span.action is not None:
                api._emit_action(span.action, span.input, _tool_output(result),
                                 error=error, start_ns=span.start_ns, scope=span.scope)


TRACKER = Tracker()
HANDLER: Any = None


def _handler_class(base: type) -> type:
    """The span handler, subclassing LlamaIndex's ``BaseSpanHandler`` (known at install).

    It returns no span object, so the base class keeps no list of spans."""

    class AgentlogSpanHandler(base):  # type: ignore[misc]
        @classmethod
        def class_name(cls) -> str:
            return "AgentlogSpanHandler"

        def new_span(self, id_: str, bound_args: Any, instance: Any = None,
                     parent_span_id: str | None = None, tags: Any = None,
                     **kwargs: Any) -> None:
            TRACKER.enter(id_, bound_args, instance, parent_span_id)

        def prepare_to_exit_span(self, id_: str, bound_args: Any, instance: Any = None,
                                 result: Any = None, **kwargs: Any) -> None:
            TRACKER.exit(id_, result, None)

        def prepare_to_drop_span(self, id_: str, bound_args: Any, instance: Any = None,
                                 err: BaseException | None = None, **kwargs: Any) -> None:
            TRACKER.exit(id_, None, err)

    return AgentlogSpanHandler


def _root() -> Any:
    instrumentation = sys.modules.get("llama_index.core.instrumentation")
    get = getattr(instrumentation, "get_dispatcher", None)
    return get() if get is not None else None


def install(module: ModuleType) -> None:
    """Called once ``llama_index.core`` is imported: join its root dispatcher."""
    global HANDLER
    root = _root()
    try:  # imported by the package itself before 0.12.43, only on demand after
        spans = importlib.import_module("llama_index.core.instrumentation.span_handlers")
    except ImportError:
        spans = None
    base = getattr(spans, "BaseSpanHandler", None)
    if root is None or base is None:
        return  # a llama-index-core without the dispatcher (before 0.10.20)
    if HANDLER is None:
        HANDLER = _handler_class(base)()
    TRACKER.active = True
    if not any(h is HANDLER for h in root.span_handlers):
        root.add_span_handler(HANDLER)


def uninstall() -> None:
    """Leave the dispatcher; spans still open are forgotten."""
    TRACKER.active = False
    root = _root()
    if root is not None and HANDLER is not None:
        root.span_handlers[:] = [h for h in root.span_handlers if h is not HANDLER]
    TRACKER.open.clear()
