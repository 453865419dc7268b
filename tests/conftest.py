"""Suite-wide conventions (TESTPLAN "Conventions for every test").

- Internal errors: agentlog's guard re-raises during tests; a test that injects a
  fault on purpose is marked ``allows_internal_errors`` and then every swallowed
  error is allowed.
- Leak checks: no scope and no LLM record left open (after a ``gc.collect()``, which cuts
  dropped streams), threads and file descriptors back to baseline.
- Documents: every document a test writes is validated with ``validate_document``.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

# Before agentlog is imported anywhere: this process's own run writes here.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="agentlog-session-"))
os.environ["AGENTLOG_DIR"] = str(_SESSION_DIR)
os.environ.setdefault("AGENTLOG_FLUSH_INTERVAL", "0.05")
# litellm downloads a price map at import unless told not to; the tests stay on loopback.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest  # noqa: E402

import agentlog  # noqa: E402
from agentlog import _context, _guard  # noqa: E402

pytest_plugins = ["helpers", "llm_testing"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Long modes for release checks; CI runs the short defaults."""
    parser.addoption(
        "--trials",
        type=int,
        default=None,
        help="SIGKILL trials in tests/test_sigkill.py (default 50; release checks: 500)",
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """End this process's own run quietly and leave no folder behind."""
    agentlog.finalize_workflow()
    agentlog.set_logging(False)
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def _threads() -> set[int]:
    return {t.ident or 0 for t in threading.enumerate() if t.name != "agentlog-flusher"}


def _fds() -> set[str]:
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        # Our own run's journal is long-lived by design; anything else must not leak.
        if target.endswith(".jsonl") and target.startswith(str(_SESSION_DIR)):
            continue
        found.add(f"{name}->{target}")
    return found


def _open_llm_calls() -> set[int]:
    """LLM records opened and not yet closed (only once the LLM core is imported)."""
    llm = sys.modules.get("agentlog.integrations._llm")
    return set(getattr(llm, "_open", ())) if llm is not None else set()


@pytest.fixture(autouse=True)
def _agentlog_conventions(request: pytest.FixtureRequest) -> Iterator[None]:
    allows = request.node.get_closest_marker("allows_internal_errors") is not None
    # By identity, not by length: ``_guard.errors`` keeps only the newest 100, so once
    # it is full its length no longer grows when an error is added.
    before_errors = list(_guard.errors)
    before_threads = _threads()
    before_fds = _fds()
    before_calls = _open_llm_calls()
    _guard.strict = not allows
    try:
        yield
    finally:
        _guard.strict = None
    new_errors = [e for e in _guard.errors if not any(e is b for b in before_errors)]
    if new_errors and not allows:
        pytest.fail(f"agentlog swallowed internal errors: {new_errors!r}")
    assert _context.current.get() is _context.EMPTY, "a scope was left open"
    # A stream dropped unclosed is cut when it is collected: give the collector a chance.
    left_open = _open_llm_calls() - before_calls
    if left_open:
        gc.collect()
        deadline = time.monotonic() + 1
        while (left_open := _open_llm_calls() - before_calls) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not left_open, f"{len(left_open)} LLM record(s) left open"
    deadline = time.monotonic() + 5
    while _threads() - before_threads and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (_threads() - before_threads), "threads leaked"
    leaked = _fds() - before_fds
    deadline = time.monotonic() + 2
    while leaked and time.monotonic() < deadline:
        time.sleep(0.02)
        leaked = _fds() - before_fds
    assert not leaked, f"file descriptors leaked: {leaked}"


_ = agentlog
