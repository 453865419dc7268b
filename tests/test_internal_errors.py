"""agentlog's own bugs never reach the host (TESTPLAN A1, for the core's hook points).

Each test injects a fault into one internal function inside a child process run with
``AGENTLOG_STRICT=0`` (what users get), then compares the child with the same script run
with ``AGENTLOG=0``: stdout, stderr (less agentlog's exit line) and the exit code must be
identical. The error must reach error_log whenever a document can still be written, and
a hook point that keeps failing must switch itself off.

Covers A1: RuntimeError/KeyError/MemoryError/RecursionError in the serializer, emit, journal
    and exit paths: the differential oracle is identical, error_log has it, the breaker trips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentlog import _guard
from helpers import Result, documents, run_script, script_env

ERRORS = ["RuntimeError", "KeyError", "MemoryError", "RecursionError"]

# Where the fault goes. Names bound at import (``from ._serialize import to_jsonable``)
# are patched where they are looked up.
INJECTIONS = {
    "serializer": "agentlog._recorder.to_jsonable = boom",
    "emit": "agentlog.api.RECORDER.emit = boom",
    "journal": "agentlog._journal.JournalWriter.append = boom",
    "fold": "agentlog._document.build = boom",
    "exit-finalize": "agentlog.api.RECORDER.finalize = boom",
    "exit-summary": "agentlog._lifecycle._say_summary = boom",
}

HOST = """\
import atexit, json, sys, time

# Registered before agentlog's own handler, so it runs after it: a slow exit gives the
# flusher every chance to write anything agentlog left behind.
atexit.register(time.sleep, {exit_delay})

import agentlog
import agentlog._document
import agentlog._journal
import agentlog._lifecycle
import agentlog._recorder
import agentlog.api

calls = [0]


def boom(*args, **kwargs):
    calls[0] += 1
    raise {error}("injected fault")


{injection}

print("start")
for i in range(25):
    agentlog.log_interaction("worker", {{"i": i}}, f"out {{i}}")
before = calls[0]
agentlog.log_interaction("worker", "after", "the breaker")
passthrough_calls = calls[0] - before
with agentlog.iteration():
    with agentlog.interaction("planner", "plan this") as ix:
        ix.output = "planned"
agentlog.add_resource("data.csv")
agentlog.log_error("a user error")


@agentlog.tool
def double(x):
    return x * 2


value = double(21)
print("double:", value, type(value).__name__)
sys.stderr.write("host's own stderr line\\n")
guard = agentlog.api._G_INTERACTION
with open("probe.json", "w") as f:
    json.dump({{"broken": guard.broken, "failures": guard.failures,
               "passthrough_calls": passthrough_calls, "calls": calls[0]}}, f)
print("end")
sys.exit(3)
"""


def _host(point: str, error: str, exit_delay: float = 0.0) -> str:
    return HOST.format(error=error, injection=INJECTIONS[point], exit_delay=exit_delay)


def _pair(tmp_path: Path, source: str) -> tuple[Result, Result, dict[str, Any]]:
    """The script with agentlog failing inside, and the same script with agentlog off."""
    on_dir, off_dir = tmp_path / "on", tmp_path / "off"
    on_dir.mkdir()
    off_dir.mkdir()
    on = run_script(on_dir, source, AGENTLOG_STRICT="0")
    off = run_script(off_dir, source, AGENTLOG_STRICT="0", AGENTLOG="0")
    probe = json.loads((on_dir / "probe.json").read_text())
    return on, off, probe


def _assert_host_unchanged(on: Result, off: Result) -> None:
    assert off.stdout == "start\ndouble: 42 int\nend\n"
    assert off.returncode == 3
    assert (on.returncode, on.stdout, on.host_stderr()) == (
        off.returncode, off.stdout, off.stderr,
    )
    assert "Traceback" not in on.stderr
    assert "Exception ignored" not in on.stderr
    assert "injected fault" not in on.stderr
    ours = [ln for ln in on.stderr.splitlines() if ln.startswith("agentlog: ")]
    assert len(ours) <= 1 and all(ln.startswith("agentlog: /") for ln in ours), ours


def _internal_errors(doc: dict[str, Any], error: str) -> list[dict[str, Any]]:
    return [
        e for e in doc["error_log"]
        if str(e.get("source", "")).startswith("agentlog:") and e["type"].endswith(error)
    ]


@pytest.mark.parametrize("error", ERRORS)
@pytest.mark.parametrize("point", ["serializer", "emit", "journal"])
def test_hot_path_fault_is_invisible_recorded_and_breaks_the_circuit(
    tmp_path: Path, point: str, error: str
) -> None:
    """Serializer, emit or journal append failing: host unchanged, error logged, hook off."""
    on, off, probe = _pair(tmp_path, _host(point, error))
    _assert_host_unchanged(on, off)

    assert probe["broken"] is True
    assert probe["failures"] >= _guard.BREAKER_THRESHOLD
    assert probe["passthrough_calls"] == 0, "a broken guard must not call into agentlog again"

    doc = on.doc()
    assert doc["final_status"] == "completed"
    assert doc["metadata"]["exit_code"] in (None, 3)
    found = _internal_errors(doc, error)
    assert found, f"no agentlog: entry in error_log: {doc['error_log']!r}"
    assert any(e["source"] == "agentlog:api.interaction" for e in found)
    assert len(doc["error_log"]) <= 200, "error_log must stay bounded under a failing hook"
    assert not list(on.logs.glob("*.jsonl")), "the journal outlived its document"


def test_unjournalable_error_with_hostile_message_still_lands(tmp_path: Path) -> None:
    """Emit failing with a message holding a lone surrogate and a secret: document still valid."""
    canary = "sk-CANARY-" + "7f3a9c" * 6
    source = _host("emit", "RuntimeError").replace(
        'raise RuntimeError("injected fault")',
        f'raise RuntimeError("injected \\ud800 Bearer {canary}")',
    )
    on, off, probe = _pair(tmp_path, source)
    _assert_host_unchanged(on, off)
    assert probe["broken"] is True
    doc = on.doc()
    found = _internal_errors(doc, "RuntimeError")
    assert found and all(e["error"].startswith("injected \ufffd Bearer ") for e in found)
    raw = b"".join(p.read_bytes() for p in on.logs.iterdir())
    assert canary.encode() not in raw and canary[10:26].encode() not in raw


@pytest.mark.parametrize("error", ERRORS)
@pytest.mark.parametrize("point", ["fold", "exit-finalize"])
def test_exit_fault_leaves_a_recoverable_journal(
    tmp_path: Path, point: str, error: str
) -> None:
    """The document cannot be written at exit: host unchanged, the journal recovers fully."""
    on, off, probe = _pair(tmp_path, _host(point, error))
    _assert_host_unchanged(on, off)
    assert probe["broken"] is False and probe["calls"] == 0  # nothing failed before exit

    assert not list(on.logs.glob("*.json")), "no document could be written"
    journals = list(on.logs.glob("*.jsonl"))
    assert len(journals) == 1

    rec = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(on.logs)],
        env=script_env(on.logs, AGENTLOG="0"),
        capture_output=True, text=True, timeout=60,
    )
    assert rec.returncode == 0, rec.stderr
    (doc,) = documents(on.logs)
    assert doc["final_status"] == "crashed"
    assert doc["metadata"]["totals"]["interactions"] == 28
    agents = [ix["agent_name"] for it in doc["iterations"] for ix in it["interactions"]]
    assert agents.count("worker") == 26 and {"planner", "tool:double"} <= set(agents)
    assert any(e["source"] == "user" and e["error"] == "a user error" for e in doc["error_log"])
    found = _internal_errors(doc, error)
    assert [e["source"] for e in found] == ["agentlog:lifecycle.exit"], doc["error_log"]


@pytest.mark.parametrize("error", ["RuntimeError", "MemoryError"])
def test_fault_after_the_document_leaves_no_stray_journal(tmp_path: Path, error: str) -> None:
    """A fault in the exit line, after the document is written: no second run's journal."""
    on, off, _ = _pair(tmp_path, _host("exit-summary", error, exit_delay=0.5))
    _assert_host_unchanged(on, off)
    assert not [ln for ln in on.stderr.splitlines() if ln.startswith("agentlog: ")]
    doc = on.doc()
    assert doc["final_status"] == "completed"
    assert doc["metadata"]["totals"]["interactions"] == 28
    assert [e["error"] for e in doc["error_log"]] == ["a user error"]
    assert sorted(p.name for p in on.logs.iterdir()) == [
        next(on.logs.glob("*.json")).name
    ], "an internal error after the end must not start a run of its own"


def test_host_script_is_the_same_without_a_fault(tmp_path: Path) -> None:
    """Control: with no fault the same script records everything and no agentlog: error."""
    source = _host("serializer", "RuntimeError").replace(INJECTIONS["serializer"], "pass")
    on, off, probe = _pair(tmp_path, source)
    _assert_host_unchanged(on, off)
    assert probe == {"broken": False, "failures": 0, "passthrough_calls": 0, "calls": 0}
    doc = on.doc()
    assert doc["metadata"]["totals"]["interactions"] == 28
    assert [e["source"] for e in doc["error_log"]] == ["user"]
    assert len([ln for ln in on.stderr.splitlines() if ln.startswith("agentlog: ")]) == 1


# -- the guard itself, in this process ----------------------------------------------------
@pytest.mark.allows_internal_errors
def test_guard_reraises_under_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no explicit setting, a guard re-raises while pytest runs, so tests see bugs."""
    monkeypatch.setattr(_guard, "strict", None)
    monkeypatch.delenv("AGENTLOG_STRICT", raising=False)
    monkeypatch.setattr(_guard, "on_error", None)
    assert "PYTEST_CURRENT_TEST" in os.environ
    guard = _guard.Guard("test.reraise")
    with pytest.raises(KeyError, match="bug"), guard:
        raise KeyError("bug")
    assert guard.failures == 1


@pytest.mark.allows_internal_errors
def test_guard_swallows_counts_and_breaks_when_not_strict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not strict: every failure is swallowed and counted; at the threshold the guard is broken."""
    assert _guard.strict is False  # set by the conftest fixture for this marker
    seen: list[tuple[str, BaseException]] = []
    monkeypatch.setattr(_guard, "on_error", lambda name, exc: seen.append((name, exc)))
    guard = _guard.Guard("test.swallow")
    kinds = [RuntimeError, KeyError, MemoryError, RecursionError]
    reached = 0
    for i in range(_guard.BREAKER_THRESHOLD + 5):
        with guard:
            reached += 1
            raise kinds[i % 4](f"failure {i}")
    assert reached == _guard.BREAKER_THRESHOLD + 5
    assert guard.failures == _guard.BREAKER_THRESHOLD + 5
    assert guard.broken
    assert [type(e) for _, e in seen[:4]] == kinds
    assert {name for name, _ in seen} == {"test.swallow"}
    assert any(name == "test.swallow" for name, _ in _guard.errors)


@pytest.mark.allows_internal_errors
def test_guard_never_swallows_base_exceptions() -> None:
    """KeyboardInterrupt and SystemExit pass through a guard unchanged and are not counted."""
    guard = _guard.Guard("test.base")
    for exc in (KeyboardInterrupt(), SystemExit(4), GeneratorExit()):
        with pytest.raises(type(exc)) as info, guard:
            raise exc
        assert info.value is exc
    assert guard.failures == 0


@pytest.mark.allows_internal_errors
def test_failing_reporter_does_not_fail_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """If writing the error to error_log fails too, the guard still swallows the first error."""

    def broken_reporter(name: str, exc: BaseException) -> None:
        raise RuntimeError("reporter broken")

    monkeypatch.setattr(_guard, "on_error", broken_reporter)
    guard = _guard.Guard("test.reporter")
    with guard:
        raise ValueError("first")
    assert guard.failures == 1
