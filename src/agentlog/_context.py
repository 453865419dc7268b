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
from typing import Any

import wrapt


class IterationState:
    """An open iteration. ``id`` is internal and unique in the run; ``number`` is shown."""

    __slots__ = ("auto", "failed", "id", "number", "run_token")

    def __init__(self, id: int, number: int, auto: bool, run_token: object) -> None:
        self.id = id
        self.number = number
        self.auto = auto
        self.failed = False
        self.run_token = run_token


class InteractionState:
    """An open interaction: the owner of actions and LLM calls made inside it."""

    __slots__ = ("agent", "failed", "id", "iteration", "output", "output_set", "run_token")

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


def _thread_start(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    scope = current.get()
    if scope is not EMPTY and instance is not None:
        _thread_scopes[instance] = scope
    return wrapped(*args, **kwargs)


def _thread_bootstrap_inner(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    scope = _thread_scopes.pop(instance, None) if instance is not None else None
    if scope is None:
        return wrapped(*args, **kwargs)
    # A new thread starts with an empty context, so setting our variable here is
    # invisible to everything but us.
    current.set(scope)
    return wrapped(*args, **kwargs)


def _executor_submit(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    scope = current.get()
    if scope is EMPTY or not args:
        return wrapped(*args, **kwargs)
    fn, *rest = args
    return wrapped(functools.partial(_run_in_scope, scope, fn), *rest, **kwargs)


_installed: list[tuple[Any, str]] = []


def _wrap(owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
    if isinstance(owner.__dict__.get(name), wrapt.FunctionWrapper):
        return
    wrapt.wrap_function_wrapper(owner, name, wrapper)
    _installed.append((owner, name))


def _patch_executor(module: Any) -> None:
    _wrap(module.ThreadPoolExecutor, "submit", _executor_submit)


def install() -> None:
    """Carry the scope into threads. Idempotent."""
    _wrap(threading.Thread, "start", _thread_start)
    # ``_bootstrap_inner`` runs first in the new thread for every Thread subclass,
    # whatever ``run`` it overrides (CPython 3.8 to 3.14).
    if hasattr(threading.Thread, "_bootstrap_inner"):
        _wrap(threading.Thread, "_bootstrap_inner", _thread_bootstrap_inner)
    wrapt.register_post_import_hook(_patch_executor, "concurrent.futures.thread")


def uninstall() -> None:
    """Undo ``install``: originals come back."""
    while _installed:
        owner, name = _installed.pop()
        attr = owner.__dict__.get(name)
        if isinstance(attr, wrapt.FunctionWrapper):
            setattr(owner, name, attr.__wrapped__)
