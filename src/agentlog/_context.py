"""Where we are in the workflow: one ContextVar holding an immutable scope.

asyncio tasks copy it, so concurrent tasks never mix. Threads do not, so the work a
caller hands to ``threading.Thread`` or ``ThreadPoolExecutor`` gets the caller's
scope set explicitly - only our variable, never the caller's whole context, so the
host's own ContextVars behave in threads exactly as they would without us.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from ._imports import forget, when_imported
from ._patching import Patches


class IterationState:
    """An open iteration. ``id`` is internal and unique in the run; ``number`` is shown."""

    __slots__ = ("absorbed", "auto", "failed", "id", "number", "run_token")

    def __init__(self, id: int, number: int, auto: bool, run_token: object) -> None:
        self.id = id
        self.number = number
        self.auto = auto
        self.failed = False
        self.run_token = run_token
        self.absorbed: BaseException | None = None
        """The last exception logged inside this scope (see ``api.record_error``)."""


class InteractionState:
    """An open interaction: the owner of actions and LLM calls made inside it."""

    __slots__ = (
        "absorbed", "agent", "failed", "id", "iteration", "output", "output_set", "run_token"
    )

    def __init__(
        self, id: int, iteration: IterationState, agent: str, run_token: object
    ) -> None:
        self.id = id
        self.iteration = iteration
        self.agent = agent
        self.failed = False
        self.output: Any = None
        self.output_set = False
        self.run_token = run_token
        self.absorbed: BaseException | None = None
        """The last exception logged inside this scope (see ``api.record_error``)."""


class Scope:
    """Immutable: every change makes a new one, so a reset restores the old exactly."""

    __slots__ = ("agent", "interaction", "iteration")

    def __init__(
        self,
        iteration: IterationState | None,
        interaction: InteractionState | None,
        agent: str | None,
    ) -> None:
        self.iteration = iteration
        self.interaction = interaction
        self.agent = agent


EMPTY = Scope(None, None, None)
current: ContextVar[Scope] = ContextVar("agentlog_scope", default=EMPTY)


def _run_in_scope(scope: Scope, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    # Set and reset in the same thread and context, around the user's own call.
    token = current.set(scope)
    try:
        return fn(*args, **kwargs)
    finally:
        current.reset(token)


# Thread -> scope of the code that started it. Weak, so finished threads leave nothing.
_thread_scopes: weakref.WeakKeyDictionary[threading.Thread, Scope] = weakref.WeakKeyDictionary()


def _patched_start(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def start(self: threading.Thread, *args: Any, **kwargs: Any) -> Any:
        scope = current.get()
        if scope is not EMPTY:
            _thread_scopes[self] = scope
        return original(self, *args, **kwargs)

    return start


def _patched_bootstrap_inner(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _bootstrap_inner(self: threading.Thread, *args: Any, **kwargs: Any) -> Any:
        scope = _thread_scopes.pop(self, None)
        if scope is not None:
            # A new thread starts with an empty context, so setting our variable
            # here is invisible to everything but us.
            current.set(scope)
        return original(self, *args, **kwargs)

    return _bootstrap_inner


def _patched_submit(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        scope = current.get()
        if scope is EMPTY:
            return original(self, fn, *args, **kwargs)
        # The pool may start a worker thread in here; it must not keep our scope (the
        # start patch would hand it over) and lend it to later work from elsewhere.
        token = current.set(EMPTY)
        try:
            return original(self, functools.partial(_run_in_scope, scope, fn), *args, **kwargs)
        finally:
            current.reset(token)

    return submit


PATCHES = Patches()


def install() -> None:
    """Carry the scope into threads. Idempotent.

    Plain function swaps rather than wrapt: this runs at ``import agentlog``, and
    importing wrapt costs more than the whole import budget on a slow machine.
    """
    PATCHES.apply(threading.Thread, "start", _patched_start)
    # ``_bootstrap_inner`` runs first in the new thread for every Thread subclass,
    # whatever ``run`` it overrides (CPython 3.8 to 3.14).
    PATCHES.apply(threading.Thread, "_bootstrap_inner", _patched_bootstrap_inner)
    when_imported("concurrent.futures.thread", _patch_executor)


def _patch_executor(module: ModuleType) -> None:
    if PATCHES.applied:  # still installed when the module finally got imported
        PATCHES.apply(module.ThreadPoolExecutor, "submit", _patched_submit)


def uninstall() -> None:
    """Undo ``install``: originals come back."""
    forget("concurrent.futures.thread")
    PATCHES.remove()
