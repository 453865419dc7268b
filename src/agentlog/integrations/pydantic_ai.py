"""pydantic-ai: each agent run an interaction named after the agent, each tool an action.

pydantic-ai's own hooks are capabilities (``AbstractCapability``): ``wrap_run`` encloses a
whole run and ``wrap_tool_execute`` one tool call. agentlog's capability joins every agent
built after install, with no user code, through the list of capabilities pydantic-ai
injects into every agent itself (``_AUTO_INJECT_CAPABILITY_TYPES``, pydantic-ai 1.x-2.x).
Agents built before install (``import agentlog`` after they were made) are not joined;
their LLM calls are still recorded.

LLM calls are not recorded here. The model's SDK call underneath (openai, anthropic,
google-genai, ...) is recorded by that SDK's adapter, once, inside the run's interaction,
so nothing is recorded twice.

Attribution: ``wrap_run`` sets ``_context.current`` around ``await handler()`` and resets
it in the same coroutine; pydantic-ai documents ContextVars set there as ambient in the
run's model calls and tool tasks.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from .. import _recorder, api
from .._context import current
from .._guard import Guard

G_RUN = Guard("pydantic_ai.run")
G_TOOL = Guard("pydantic_ai.tool")

_CAPABILITY: type | None = None
_AGENT_MODULE = "pydantic_ai.agent"
_active = False
"""Off after ``uninstall``: agents made before keep the capability, which then does nothing."""


def _off(guard: Guard) -> bool:
    return not _active or api.RECORDER.verbosity == 0 or guard.broken


def _capability_class(base: type) -> type:
    """The capability, subclassing pydantic-ai's ``AbstractCapability`` (known at install)."""

    class AgentlogCapability(base):  # type: ignore[misc]
        """Feeds agentlog: runs as interactions, tools as actions. Changes nothing."""

        @classmethod
        def get_serialization_name(cls) -> str | None:
            return None  # not part of any agent spec

        async def wrap_run(self, ctx: Any, *, handler: Any) -> Any:
            opened = None
            if not _off(G_RUN):
                with G_RUN:
                    outer = current.get()
                    agent = getattr(getattr(ctx, "agent", None), "name", None) or "agent"
                    state, scope = api._open_interaction(str(agent), getattr(ctx, "prompt", None))
                    opened = (state, outer, current.set(scope))
            try:
                result = await handler()
            except BaseException as exc:
                if opened is not None:
                    _close(opened, None, exc)
                raise
            if opened is not None:
                _close(opened, getattr(result, "output", result), None)
            return result

        async def wrap_tool_execute(self, ctx: Any, *, call: Any, tool_def: Any, args: Any,
                                    handler: Any) -> Any:
            start = None if _off(G_TOOL) else _recorder.now_ns()
            try:
                result = await handler(args)
            except BaseException as exc:
                _tool(start, call, args, None, exc)
                raise
            _tool(start, call, args, result, None)
            return result

    return AgentlogCapability


def _close(opened: tuple[Any, Any, Any], output: Any, exc: BaseException | None) -> None:
    state, outer, token = opened
    with G_RUN:
        current.reset(token)  # set in this same coroutine, before its ``await``
        if exc is None:
            state.output, state.output_set = output, True
        api._close_interaction(state, outer, exc)


def _tool(start: int | None, call: Any, args: Any, result: Any,
          exc: BaseException | None) -> None:
    if start is None:
        return
    with G_TOOL:
        name = getattr(call, "tool_name", None) or "tool"
        api._emit_action(f"tool:{name}", args, result, error=exc, start_ns=start)


def install(module: ModuleType) -> None:
    """Called once ``pydantic_ai`` is imported: every agent made from now on is joined."""
    global _CAPABILITY, _active
    agent = sys.modules.get(_AGENT_MODULE)
    base = getattr(sys.modules.get("pydantic_ai.capabilities.abstract"), "AbstractCapability",
                   None)
    types = getattr(agent, "_AUTO_INJECT_CAPABILITY_TYPES", None)
    if agent is None or base is None or not isinstance(types, tuple):
        return  # a pydantic-ai without capabilities (before 1.x): LLM calls only
    if _CAPABILITY is None:
        _CAPABILITY = _capability_class(base)
    _active = True
    if _CAPABILITY not in types:
        agent._AUTO_INJECT_CAPABILITY_TYPES = (*types, _CAPABILITY)  # type: ignore[attr-defined]


def uninstall() -> None:
    """Agents made from now on are not joined; those made already keep an inert one."""
    global _active
    _active = False
    agent = sys.modules.get(_AGENT_MODULE)
    types = getattr(agent, "_AUTO_INJECT_CAPABILITY_TYPES", None)
    if agent is not None and isinstance(types, tuple):
        agent._AUTO_INJECT_CAPABILITY_TYPES = tuple(  # type: ignore[attr-defined]
            t for t in types if t is not _CAPABILITY)
