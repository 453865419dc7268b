"""LangChain / LangGraph: chains, agents and graph nodes as interactions, tools as actions.

A callback handler joins every callback manager LangChain configures, with no user code:
it is registered with ``register_configure_hook`` through a ContextVar whose *default* is
the handler, so every context and every thread sees it. The handler opens an interaction
for the outermost run (the chain, graph or agent the program invoked), for each LangGraph
node (``langgraph_node`` metadata, ``graph:step:N`` tag) and for a chain run by a tool (a
sub-agent); the agent name is the run's name. Other nested runs (sequences, prompts,
parsers, routing functions) belong to the interaction around them. A tool run is one
``tool:<name>`` action of the interaction it runs in; its errors are the action's error.

LLM calls are not recorded here. The chat model's SDK call underneath is recorded by that
SDK's adapter (openai, anthropic, ...), so one logical call gives one LLM record with its
cost counted once: nothing here records it a second time. A chat model with no SDK adapter
under it is not recorded.

Attribution: SDK adapters take the interaction from ``_context.current``. A callback
cannot set it safely (the async manager runs end callbacks in a task of their own, so a
value set at start would never be undone in the caller's context). It is set where
LangChain and LangGraph start a child run in a fresh ``copy_context()``: their
``_set_config_context``, which always runs inside that copy. A value set there lives
exactly as long as the child run, in sync and async code, threads and graph nodes alike.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextvars import ContextVar
from types import ModuleType
from typing import Any
from uuid import UUID

from .. import _recorder, api
from .._context import InteractionState, Scope, current
from .._guard import Guard
from .._imports import forget, when_imported
from .._patching import Patches

PATCHES = Patches()
G_CALLBACK = Guard("langchain.callback")
G_SCOPE = Guard("langchain.scope")

_TRACERS = "langchain_core.tracers.context"
# Where each library copies the context for a child run (langchain-core 0.2+, langgraph 0.3+).
_CHILD_CONTEXTS = ("langchain_core.runnables.config", "langgraph._internal._runnable")
_MAX_RUNS = 10_000
"""Runs never ended (an abandoned stream) are forgotten past this many open ones."""
_CONTROL_FLOW = frozenset({"GraphBubbleUp", "GraphInterrupt", "ParentCommand", "NodeInterrupt"})
"""LangGraph exceptions that steer the graph (interrupts, ``Command``): not failures."""


class _Run:
    """One open LangChain run: the scope its children see, and what it owns."""

    __slots__ = ("action", "input", "outer", "scope", "start_ns", "state")

    def __init__(self, scope: Scope, state: InteractionState | None = None,
                 outer: Scope | None = None, action: str | None = None, input: Any = None,
                 start_ns: int = 0) -> None:
        self.scope = scope
        self.state = state
        self.outer = outer if outer is not None else scope
        self.action = action
        self.input = input
        self.start_ns = start_ns


class Tracker:
    """The bookkeeping behind the handler, by run id (callbacks may come from any thread:
    each step is one dict operation)."""

    def __init__(self) -> None:
        self.runs: dict[UUID, _Run] = {}

    def _off(self) -> bool:
        return api.RECORDER.verbosity == 0 or G_CALLBACK.broken

    def _add(self, run_id: UUID, run: _Run) -> None:
        runs = self.runs
        if len(runs) >= _MAX_RUNS:
            runs.pop(next(iter(runs)), None)
        runs[run_id] = run

    def _parent(self, parent_run_id: UUID | None) -> _Run | None:
        return self.runs.get(parent_run_id) if parent_run_id is not None else None

    def scope_for(self, parent_run_id: Any) -> Scope | None:
        run = self.runs.get(parent_run_id) if isinstance(parent_run_id, UUID) else None
        return run.scope if run is not None else None

    def chain_start(self, serialized: Any, inputs: Any, run_id: UUID,
                    parent_run_id: UUID | None, tags: list[str] | None,
                    metadata: dict[str, Any] | None, name: str | None) -> None:
        if self._off():
            return
        with G_CALLBACK:
            parent = self._parent(parent_run_id)
            outer = parent.scope if parent is not None else current.get()
            if parent is not None and not (
                parent.action is not None or _is_node(name, tags, metadata)
            ):
                self._add(run_id, _Run(outer))
                return
            agent = name or _serialized_name(serialized) or "chain"
            state, scope = api._open_interaction(agent, inputs, outer)  # inside its parent
            self._add(run_id, _Run(scope, state, outer))

    def chain_end(self, run_id: UUID, outputs: Any, error: BaseException | None) -> None:
        run = self.runs.pop(run_id, None)
        state = run.state if run is not None else None
        if run is None or state is None or G_CALLBACK.broken:
            return
        with G_CALLBACK:
            if error is not None and _is_control_flow(error):
                error = None
            if error is None:
                state.output, state.output_set = outputs, True
            api._close_interaction(state, run.outer, error)

    def tool_start(self, serialized: Any, input_str: str, run_id: UUID,
                   parent_run_id: UUID | None, inputs: Any, name: str | None) -> None:
        if self._off():
            return
        with G_CALLBACK:
            parent = self._parent(parent_run_id)
            scope = parent.scope if parent is not None else current.get()
            tool = name or _serialized_name(serialized) or "tool"
            data = inputs if inputs is not None else input_str
            self._add(run_id, _Run(scope, action=f"tool:{tool}", input=data,
                                   start_ns=_recorder.now_ns()))

    def tool_end(self, run_id: UUID, output: Any, error: BaseException | None) -> None:
        run = self.runs.pop(run_id, None)
        if run is None or run.action is None or G_CALLBACK.broken:
            return
        with G_CALLBACK:
            api._emit_action(run.action, run.input, _tool_output(output), error=error,
                             start_ns=run.start_ns, scope=run.scope)


TRACKER = Tracker()


def _is_node(name: str | None, tags: list[str] | None, metadata: dict[str, Any] | None) -> bool:
    """A LangGraph node run: named as its node, tagged with the graph step that ran it."""
    if name is None or not metadata or metadata.get("langgraph_node") != name:
        return False
    return any(isinstance(t, str) and t.startswith("graph:step:") for t in tags or ())


def _serialized_name(serialized: Any) -> str | None:
    if not isinstance(serialized, dict):
        return None
    name = serialized.get("name")
    if isinstance(name, str):
        return name
    ids = serialized.get("id")
    return ids[-1] if isinstance(ids, list) and ids and isinstance(ids[-1], str) else None


def _is_control_flow(error: BaseException) -> bool:
    return any(cls.__name__ in _CONTROL_FLOW for cls in type(error).__mro__)


def _tool_output(output: Any) -> Any:
    """A ``ToolMessage`` stands for its content; anything else is kept as it is."""
    if hasattr(output, "tool_call_id") and hasattr(output, "content"):
        return output.content
    return output


def _handler_class() -> type:
    """The handler, defined once ``langchain_core.callbacks`` is loaded (not at our import)."""
    from langchain_core.callbacks.base import BaseCallbackHandler

    class AgentlogCallbackHandler(BaseCallbackHandler):
        """Feeds agentlog; LLM, retriever and retry events are skipped at the source (tools
        come under ``ignore_agent``, so that one stays off)."""

        run_inline = True  # the async manager calls it in place, not in an executor
        raise_error = False

        @property
        def ignore_llm(self) -> bool:
            return True

        @property
        def ignore_chat_model(self) -> bool:
            return True

        @property
        def ignore_retriever(self) -> bool:
            return True

        @property
        def ignore_retry(self) -> bool:
            return True

        @property
        def ignore_custom_event(self) -> bool:
            return True

        def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID,
                           parent_run_id: UUID | None = None, tags: list[str] | None = None,
                           metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
            TRACKER.chain_start(serialized, inputs, run_id, parent_run_id, tags, metadata,
                                kwargs.get("name"))

        def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
            TRACKER.chain_end(run_id, outputs, None)

        def on_chain_error(self, error: BaseException, *, run_id: UUID,
                           **kwargs: Any) -> None:
            TRACKER.chain_end(run_id, None, error)

        def on_tool_start(self, serialized: Any, input_str: str, *, run_id: UUID,
                          parent_run_id: UUID | None = None, inputs: Any = None,
                          **kwargs: Any) -> None:
            TRACKER.tool_start(serialized, input_str, run_id, parent_run_id, inputs,
                               kwargs.get("name"))

        def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
            TRACKER.tool_end(run_id, output, None)

        def on_tool_error(self, error: BaseException, *, run_id: UUID,
                          **kwargs: Any) -> None:
            TRACKER.tool_end(run_id, None, error)

        def __repr__(self) -> str:
            return "AgentlogCallbackHandler()"

    return AgentlogCallbackHandler


_handler_var: ContextVar[Any] | None = None
"""Its default is the handler. LangChain has no public way to unregister a hook, so
``uninstall`` takes our entry out of its list."""


def _register(module: ModuleType) -> None:
    """Join every callback manager LangChain configures from now on."""
    global _handler_var
    hooks = module._configure_hooks
    if _handler_var is None:
        # The handler as the *default*, so that every context (threads too) sees it: one
        # shared object is what we mean here.
        handler = _handler_class()()
        _handler_var = ContextVar("agentlog_langchain_handler", default=handler)
    if not any(entry[0] is _handler_var for entry in hooks):
        module.register_configure_hook(_handler_var, True)


def _unregister() -> None:
    module = sys.modules.get(_TRACERS)
    if module is None or _handler_var is None:
        return
    hooks = getattr(module, "_configure_hooks", [])
    hooks[:] = [entry for entry in hooks if entry[0] is not _handler_var]


def _with_child_scope(original: Callable[..., Any]) -> Callable[..., Any]:
    def _set_config_context(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not G_SCOPE.broken:
            with G_SCOPE:
                config = args[0] if args else kwargs.get("config")
                callbacks = config.get("callbacks") if isinstance(config, dict) else None
                scope = TRACKER.scope_for(getattr(callbacks, "parent_run_id", None))
                if scope is not None:
                    # Runs inside the child's fresh copy_context(): nothing to undo.
                    current.set(scope)
        return result

    return _set_config_context


def _patch_child_context(module: ModuleType) -> None:
    PATCHES.apply(module, "_set_config_context", _with_child_scope)


def install(module: ModuleType) -> None:
    """Called once ``langchain_core`` is imported; the rest waits for its own modules."""
    when_imported(_TRACERS, _register)
    for name in _CHILD_CONTEXTS:
        when_imported(name, _patch_child_context)


def uninstall() -> None:
    """Stop joining callback managers and setting scopes; open runs are forgotten."""
    forget(_TRACERS)
    for name in _CHILD_CONTEXTS:
        forget(name)
    _unregister()
    PATCHES.remove()
    TRACKER.runs.clear()
