"""Durability: a run that dies at any syscall, or abruptly, loses nothing it acknowledged.

Every host runs in its own interpreter; what it left behind is checked on disk, then
recovered with ``python -m agentlog recover`` and checked again. The SIGKILL trials of
B1 and B3 are in ``test_sigkill.py``.

Covers B2: ``os._exit`` at each open/write/fsync/replace/rename/unlink of the run, from
the journal's creation (tmp open, rename) through its appends to the document write
(tmp open, write, fsync, replace, folder fsync) and a second ``save_log`` over an earlier
one: the document is always old or new, never empty or partial; a journal left behind
recovers into a valid ``crashed`` document and no temp file survives recovery.
Covers B6: ``os._exit``, ``os.abort()`` and a ctypes segfault: the journal holds every
acked event, ``agentlog recover`` makes a valid document with ``final_status`` crashed
and sweeps the dead process's temp files (a live process's are kept).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers import load_document, script_env

ACK_MARGIN = 0.3
"""An event acked this long before a death must be in the journal (flush interval + slack)."""


# -- helpers ------------------------------------------------------------------------------
def _write_script(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / f"{name}.py"
    script.write_text(textwrap.dedent(source))
    return script


def _recover(logs: Path, elsewhere: Path) -> subprocess.CompletedProcess[str]:
    """``python -m agentlog recover --dir logs``; its own import looks at another folder."""
    r = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(logs)],
        env=script_env(elsewhere),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r


@dataclass
class Journal:
    """A journal as found on disk: parsed lines and the torn tail, if any."""

    path: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    tail: bytes = b""


def _read_journal(path: Path) -> Journal:
    """Every complete line parses; seqs run 0, 1, 2 ...; only the tail may be torn."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    journal = Journal(path, tail=lines.pop())
    for n, line in enumerate(lines):
        assert line, f"empty line {n} in the journal"
        event = orjson.loads(line)  # a torn line anywhere but the tail fails here
        assert event["seq"] == n, f"line {n} has seq {event['seq']}"
        journal.events.append(event)
    if journal.events:
        assert journal.events[0]["ev"] == "run"
    # A torn tail is the start of the next line.
    start = b'{"seq":%d,' % len(journal.events)
    assert journal.tail[: len(start)] == start[: len(journal.tail)], journal.tail[:80]
    return journal


def _one(paths: list[Path]) -> Path | None:
    assert len(paths) <= 1, paths
    return paths[0] if paths else None


def _only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


def _interaction_inputs(doc: dict[str, Any]) -> list[Any]:
    return [ix["input_data"] for it in doc["iterations"] for ix in it["interactions"]]


def _leftovers(logs: Path, keep: Path) -> list[str]:
    return sorted(p.name for p in logs.iterdir() if p != keep)


# -- B2: a kill at every syscall of the finalisation ------------------------------------
FAULT_PRELUDE = """\
import os, sys, threading

_MAIN = threading.get_ident()
_armed = False
_calls = 0
_kill_at = int(os.environ["KILL_AT"])
_trace = []

def _wrap(name):
    real = getattr(os, name)

    def fake(*args, **kwargs):
        global _calls
        if _armed and threading.get_ident() == _MAIN:
            _calls += 1
            _trace.append(name)
            if _calls == _kill_at:
                os._exit(9)
        return real(*args, **kwargs)

    setattr(os, name, fake)

for _name in ("open", "write", "fsync", "replace", "rename", "unlink"):
    _wrap(_name)

def arm():
    global _armed
    _armed = True

def disarm():
    global _armed
    _armed = False
    sys.stdout.write(" ".join(_trace) + "\\n")
    sys.stdout.flush()
"""

FINALIZE_HOST = FAULT_PRELUDE + """\
import agentlog
agentlog.start_workflow("b2")
for i in range(3):
    agentlog.log_interaction("early", {"i": i}, "out")
# Flush the journal now (a snapshot elsewhere) so the journal's creation is not timed.
agentlog.save_log(os.path.join(os.path.dirname(__file__), "snapshot.json"))
for i in range(3, 5):
    agentlog.log_interaction("late", {"i": i}, "out")  # pending: finalize appends them
arm()
agentlog.finalize_workflow("done")
disarm()
"""


def _run_fault_host(folder: Path, source: str, kill_at: int) -> subprocess.CompletedProcess[str]:
    script = _write_script(folder, "host", source)
    # A long interval: the flusher (not counted) should not take the finaliser's writes.
    env = script_env(folder / "logs", KILL_AT=str(kill_at), AGENTLOG_FLUSH_INTERVAL="0.5")
    return subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
    )


def test_kill_at_every_syscall_of_finalize(tmp_path: Path) -> None:
    """``os._exit`` at each open/write/fsync/replace of finalize: never a partial document."""
    expected = [{"i": i} for i in range(5)]
    trace: list[str] = []
    seen_states: set[str] = set()
    for n in range(1, 100):
        folder = tmp_path / f"kill{n}"
        r = _run_fault_host(folder, FINALIZE_HOST, n)
        logs = folder / "logs"
        if r.returncode == 0:
            trace = r.stdout.split()
            assert n == len(trace) + 1, (n, trace)
            doc = load_document(_only(sorted(logs.glob("*.json"))))
            assert doc["final_status"] == "done"
            assert _interaction_inputs(doc) == expected
            break
        assert r.returncode == 9, (n, r.stderr)
        doc_path = _one(sorted(logs.glob("*.json")))
        journal_path = _one(sorted(logs.glob("*.jsonl")))
        if doc_path is not None:
            # The new document, complete; never an empty or half-written one.
            doc = load_document(doc_path)
            assert doc["final_status"] == "done", n
            assert _interaction_inputs(doc) == expected, n
            seen_states.add("document")
        else:
            assert journal_path is not None, f"kill {n}: neither document nor journal"
            seen_states.add("journal")
        if journal_path is not None:
            r2 = _recover(logs, folder / "elsewhere")
            recovered = load_document(Path(r2.stdout.strip()))
            if doc_path is None:
                assert recovered["final_status"] == "crashed", n
                # The late calls were pending in memory: they are there if the journal
                # write that carries them finished before the kill.
                inputs = _interaction_inputs(recovered)
                assert inputs in (expected[:3], expected), (n, inputs)
            else:
                # A finished run whose journal outlived its document: left as it was.
                assert recovered == doc
        doc_path = _one(sorted(logs.glob("*.json")))
        assert doc_path is not None
        assert _leftovers(logs, doc_path) == [], n
    else:
        pytest.fail("the host never completed")
    # Every kind of call was a kill point, and both outcomes were reached.
    assert {"open", "write", "fsync", "replace", "unlink"} <= set(trace), trace
    assert trace.count("fsync") >= 2, trace  # the file and its folder
    assert seen_states == {"document", "journal"}


JOURNAL_HOST = FAULT_PRELUDE + """\
import agentlog
arm()  # from the very first event: the journal's creation is a kill point too
with agentlog.iteration():  # an iteration's end writes the journal on this thread
    for i in range(2):
        agentlog.log_interaction("first", {"i": i}, "out")
with agentlog.iteration():
    for i in range(2, 4):
        agentlog.log_interaction("second", {"i": i}, "out")
agentlog.finalize_workflow("done")
disarm()
"""


def test_kill_at_every_syscall_from_the_first_event(tmp_path: Path) -> None:
    """``os._exit`` at each syscall from journal creation to the document: old or new."""
    expected = [{"i": i} for i in range(4)]
    trace: list[str] = []
    outcomes: set[int] = set()
    for n in range(1, 100):
        folder = tmp_path / f"kill{n}"
        r = _run_fault_host(folder, JOURNAL_HOST, n)
        logs = folder / "logs"
        if r.returncode == 0:
            trace = r.stdout.split()
            doc = load_document(_only(sorted(logs.glob("*.json"))))
            assert doc["final_status"] == "done"
            assert _interaction_inputs(doc) == expected
            break
        assert r.returncode == 9, (n, r.stderr)
        if logs.is_dir() and any(p.suffix == ".jsonl" or ".tmp." in p.name
                                 for p in logs.iterdir()):
            _recover(logs, folder / "elsewhere")
        docs = sorted(logs.glob("*.json")) if logs.is_dir() else []
        if not docs:
            outcomes.add(0)  # killed before the journal held anything: nothing was owed
            assert not logs.is_dir() or list(logs.iterdir()) == [], n
            continue
        doc_path = _only(docs)
        doc = load_document(doc_path)
        inputs = _interaction_inputs(doc)
        # The state at an iteration boundary, or the finished document: never between.
        assert inputs in ([], expected[:2], expected), (n, inputs)
        if doc["final_status"] != "done":
            assert doc["final_status"] == "crashed", n
        outcomes.add(len(inputs))
        assert _leftovers(logs, doc_path) == [], n  # journal and temp files are gone
    else:
        pytest.fail("the host never completed")
    assert {"open", "write", "fsync", "replace", "rename"} <= set(trace), trace
    # Nothing, then everything; the state after the first iteration too, unless on a busy
    # machine the flusher's tick (not a kill point: another thread) wrote it first.
    assert {0, 4} <= outcomes, outcomes


SAVE_TWICE_HOST = FAULT_PRELUDE + """\
import agentlog
target = os.path.join(os.path.dirname(__file__), "saved", "doc.json")
for i in range(3):
    agentlog.log_interaction("old", {"i": i}, "out")
agentlog.save_log(target)
for i in range(3, 5):
    agentlog.log_interaction("new", {"i": i}, "out")
arm()
agentlog.save_log(target)
disarm()
"""


def test_kill_at_every_syscall_of_a_second_save_log(tmp_path: Path) -> None:
    """``save_log`` over an earlier save, killed at each syscall: the file is old or new."""
    old = [{"i": i} for i in range(3)]
    new = [{"i": i} for i in range(5)]
    outcomes: set[str] = set()
    for n in range(1, 100):
        folder = tmp_path / f"kill{n}"
        r = _run_fault_host(folder, SAVE_TWICE_HOST, n)
        saved = folder / "saved"
        doc = load_document(saved / "doc.json")
        inputs = _interaction_inputs(doc)
        assert doc["final_status"] == "in_progress"
        if r.returncode == 0:
            assert inputs == new
            assert n == len(r.stdout.split()) + 1
            break
        assert r.returncode == 9, (n, r.stderr)
        assert inputs in (old, new), (n, inputs)
        outcomes.add("new" if inputs == new else "old")
        # The dead writer's temp file, if any, is for recovery to sweep: no partial file
        # ever took the document's name.
        for stray in saved.iterdir():
            assert stray.name == "doc.json" or stray.name.startswith(".doc.json.tmp."), stray
    else:
        pytest.fail("the host never completed")
    assert outcomes == {"old", "new"}


# -- B6: other abrupt deaths ----------------------------------------------------------------
DEATHS = {
    "os_exit": ("os._exit(3)", 3),
    "abort": ("os.abort()", -signal.SIGABRT),
    "segfault": ("import ctypes; ctypes.string_at(0)", -signal.SIGSEGV),
}

DEATH_HOST = """\
import os, sys, time
import agentlog
agentlog.start_workflow("b6")
with agentlog.iteration():
    agentlog.log_interaction("planner", {{"i": 0}}, "plan")
    agentlog.add_resource("data.csv", "file")
for i in range(1, 4):
    agentlog.log_interaction("worker", {{"i": i}}, "out")
agentlog.log_error("something went wrong")
# A temp file left by a document write that this process will never finish.
folder = os.environ["AGENTLOG_DIR"]
stale = os.path.join(folder, f".b6_other.json.tmp.{{os.getpid()}}.0badf00d")
with open(stale, "w") as f:
    f.write("{{")
time.sleep({margin})  # longer than the flush interval: everything is acked
print("dying", flush=True)
{death}
"""


def _no_core_dump() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@pytest.mark.parametrize("how", sorted(DEATHS))
def test_abrupt_death_is_recovered(tmp_path: Path, how: str) -> None:
    """``os._exit``/``abort``/segfault: the journal holds every event, recovery says crashed."""
    death, code = DEATHS[how]
    script = _write_script(
        tmp_path, "host", DEATH_HOST.format(death=death, margin=ACK_MARGIN)
    )
    logs = tmp_path / "logs"
    r = subprocess.run(
        [sys.executable, str(script)],
        env=script_env(logs, PYTHONFAULTHANDLER=""),
        preexec_fn=_no_core_dump,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == code, r.stderr
    assert r.stdout == "dying\n"
    assert not list(logs.glob("*.json"))
    journal = _read_journal(_only(sorted(logs.glob("*.jsonl"))))
    assert journal.tail == b""
    kinds = [e["ev"] for e in journal.events]
    assert kinds.count("interaction") == 4 and "resource" in kinds and "error" in kinds
    assert kinds[-1] != "end"

    rec = _recover(logs, tmp_path / "elsewhere")
    assert rec.stderr == "recovered 1 run\n"
    doc_path = Path(rec.stdout.strip())
    doc = load_document(doc_path)
    assert doc["final_status"] == "crashed"
    assert doc["metadata"]["workflow_name"] == "b6"
    assert doc["metadata"]["exit_code"] is None
    assert _interaction_inputs(doc) == [{"i": i} for i in range(4)]
    assert [r["resource"] for r in doc["resources_used"]] == ["data.csv"]
    assert [e["error"] for e in doc["error_log"]] == ["something went wrong"]
    assert doc["metadata"]["totals"]["interactions"] == 4
    # The journal is consumed; the dead pid's temp file is swept.
    assert _leftovers(logs, doc_path) == []


def test_recovery_keeps_a_live_processes_temp_file(tmp_path: Path) -> None:
    """Recovery sweeps temp files of dead pids only: a live writer's temp file stays."""
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / f".run.json.tmp.{os.getpid()}.00000000"
    live.write_text("{")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=60, check=True)
    stale = logs / f".run.json.tmp.{int(dead.stdout)}.00000000"
    stale.write_text("{")
    _recover(logs, tmp_path / "elsewhere")
    assert live.exists()
    assert not stale.exists()


def test_snapshot_then_crash_is_still_recovered(tmp_path: Path) -> None:
    """``save_log()`` to the run's own path, then SIGKILL: recovery keeps the later events."""
    script = _write_script(
        tmp_path,
        "host",
        """\
        import os, time
        import agentlog
        agentlog.log_interaction("before", {"i": 0}, "out")
        agentlog.save_log()  # an in-progress snapshot at the document's own path
        agentlog.log_interaction("after", {"i": 1}, "out")
        time.sleep(0.3)
        os.kill(os.getpid(), 9)
        """,
    )
    logs = tmp_path / "logs"
    r = subprocess.run([sys.executable, str(script)], env=script_env(logs),
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == -signal.SIGKILL, r.stderr
    snapshot = load_document(_only(sorted(logs.glob("*.json"))))
    assert snapshot["final_status"] == "in_progress"
    assert _one(sorted(logs.glob("*.jsonl"))) is not None
    _recover(logs, tmp_path / "elsewhere")
    doc_path = _one(sorted(logs.glob("*.json")))
    assert doc_path is not None
    doc = load_document(doc_path)
    assert doc["final_status"] == "crashed"
    assert _interaction_inputs(doc) == [{"i": 0}, {"i": 1}]
    assert _leftovers(logs, doc_path) == []
