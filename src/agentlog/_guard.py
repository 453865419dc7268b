"""The ``internal_errors`` guard: agentlog's own bugs never reach the host.

Every block of bookkeeping runs inside a guard. An exception there is swallowed,
counted and reported once; a guard that keeps failing switches itself off (a circuit
breaker), so the next call is a pure passthrough. Under pytest the error is re-raised,
so our own test-suite sees it. Only ``Exception`` is caught: ``KeyboardInterrupt``,
``SystemExit`` and friends always pass through unchanged.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from types import TracebackType

BREAKER_THRESHOLD = 20
"""Failures after which a named guard switches its hook off."""

_lock = threading.Lock()
_reported: set[str] = set()
errors: list[tuple[str, BaseException]] = []
"""Swallowed errors, newest last (bounded); the test fixture reads this."""
_MAX_KEPT = 100

strict: bool | None = None
"""Re-raise instead of swallowing. ``None`` means: decide from the environment."""

on_error: Callable[[str, BaseException], None] | None = None
"""Set by the core to write the error into the run's error_log."""

diagnostics = False
"""Say internal errors on stderr (verbosity 3). Otherwise stderr stays the host's own."""


def _is_strict() -> bool:
    if strict is not None:
        return strict
    forced = os.environ.get("AGENTLOG_STRICT")
    if forced is not None:
        return forced not in ("0", "", "false")
    return "PYTEST_CURRENT_TEST" in os.environ


class Guard:
    """A named, reusable guard: ``with GUARD: ...``.

    One instance per hook point, so that the circuit breaker switches off only the
    hook that keeps failing.
    """

    __slots__ = ("failures", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0

    @property
    def broken(self) -> bool:
        return self.failures >= BREAKER_THRESHOLD

    def __enter__(self) -> Guard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        self.failures += 1
        report(self.name, exc)
        return not _is_strict()


def report(name: str, exc: BaseException) -> None:
    """Note one internal error: into error_log always, on stderr once at verbosity 3."""
    with _lock:
        errors.append((name, exc))
        if len(errors) > _MAX_KEPT:
            del errors[0]
        first = name not in _reported
        _reported.add(name)
    hook = on_error
    if hook is not None:
        try:
            hook(name, exc)
        except Exception:  # noqa: BLE001 - the reporter must not fail the guard
            pass
    if first and diagnostics:
        try:
            import traceback  # only on the rare error path: it costs import time

            line = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            sys.stderr.write(f"agentlog: internal error in {name} (ignored): {line}\n")
        except Exception:  # noqa: BLE001 - stderr may be closed at shutdown
            pass


def internal_errors(name: str) -> Guard:
    """A one-off guard for rare paths (install, exit); hot paths keep a module-level one."""
    return Guard(name)
