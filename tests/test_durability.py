"""Durability: a run that dies at any moment loses nothing it acknowledged.

TESTPLAN B1 (SIGKILL at a random moment), B2 (a kill at every syscall of the document
write), B3 (huge events + SIGKILL) and B6 (``os._exit``, ``os.abort()``, a segfault).
Every host runs in its own interpreter; what it left behind is checked on disk, then
recovered with ``python -m agentlog recover`` and checked again.

The kill trials are random: each failure message carries the seed, and
``AGENTLOG_KILL_SEED`` replays it. ``AGENTLOG_KILL_TRIALS=500`` runs more of them.
"""

from __future__ import annotations

import os
import random
import resource
import select
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers import load_document, script_env

FLUSH_INTERVAL = 0.05
ACK_MARGIN = 0.3
"""An event acked this long before the kill must be in the journal (flush interval + slack)."""

KILL_TRIALS = int(os.environ.get("AGENTLOG_KILL_TRIALS", "30"))
SEED = int(os.environ.get("AGENTLOG_KILL_SEED", str(random.randrange(1 << 32))))


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


# -- B1 / B3: SIGKILL at a random moment ----------------------------------------------------
KILL_HOST = """\
import sys, time
import agentlog

calls, pad, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
if pad > 2_000:
    agentlog.set_logging(True, verbosity=2)  # keep huge fields whole
# Two bytes each in UTF-8; fields are capped at 200,000 characters, so many pieces.
piece = "\\u00e9" * min(pad // 4, 100_000)
side = [piece] * max(1, pad // 400_000)
out = sys.stdout
out.write("start\\n")
out.flush()
for i in range(calls):
    agentlog.log_interaction("worker", {"i": i, "pad": side}, side)
    out.write(f"{i}\\n")  # the ack: agentlog has returned
    out.flush()
    time.sleep(pause)
out.write("done\\n")
out.flush()
"""


@dataclass
class KillTrial:
    """One SIGKILL trial: when each call was acked, when the kill was sent."""

    seed: int
    calls: int
    acks: dict[int, float] = field(default_factory=dict)
    kill_at: float | None = None
    finished: bool = False

    def acked_before(self, margin: float) -> list[int]:
        assert self.kill_at is not None
        return sorted(i for i, t in self.acks.items() if t < self.kill_at - margin)


def _run_and_kill(
    script: Path, logs: Path, rng: random.Random, seed: int, args: list[str], run_time: float
) -> KillTrial:
    """Start the host, read its acks as they come, SIGKILL it at uniform(0, run_time)."""
    trial = KillTrial(seed, int(args[0]))
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        env=script_env(logs, AGENTLOG_FLUSH_INTERVAL=str(FLUSH_INTERVAL)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=script.parent,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    started: float | None = None
    deadline = time.monotonic() + 30  # until "start": interpreter start and import
    try:
        while True:
            now = time.monotonic()
            if trial.kill_at is not None and now >= trial.kill_at:
                break
            wait = (trial.kill_at if trial.kill_at is not None else deadline) - now
            ready, _, _ = select.select([fd], [], [], max(wait, 0))
            if not ready:
                if started is None:
                    pytest.fail(f"seed {seed}: the host never started")
                continue
            chunk = os.read(fd, 65536)
            stamp = time.monotonic()  # no earlier than the host's own ack
            if not chunk:
                break  # the host ended before the kill
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line == b"start":
                    started = stamp
                    trial.kill_at = started + rng.uniform(0, run_time)
                elif line == b"done":
                    trial.finished = True
                else:
                    trial.acks[int(line)] = stamp
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=30)
    if trial.kill_at is None:
        trial.kill_at = time.monotonic()
    if not trial.finished:
        assert proc.returncode == -signal.SIGKILL, (seed, proc.returncode, err)
    assert b"Traceback" not in err, err
    return trial


def _check_kill_trial(trial: KillTrial, logs: Path, elsewhere: Path) -> int:
    """The journal, then the recovered document, hold a contiguous prefix with every ack.

    Returns the number of calls recovered.
    """
    seed = trial.seed
    must_have = trial.acked_before(ACK_MARGIN)
    journal_path = _one(sorted(logs.glob("*.jsonl"))) if logs.is_dir() else None
    finished = _one(sorted(logs.glob("*.json"))) if logs.is_dir() else None
    if finished is not None:
        # The kill came after the exit's document was written: it is complete.
        doc = load_document(finished)
        assert doc["final_status"] == "completed", seed
        assert len(_interaction_inputs(doc)) == trial.calls, seed
    if journal_path is None:
        if finished is None:  # killed before the first flush
            assert not must_have, f"seed {seed}: no journal, yet {len(must_have)} calls acked"
            return 0
        return trial.calls
    journal = _read_journal(journal_path)
    calls = [e["input"]["i"] for e in journal.events if e["ev"] == "interaction"]
    assert calls == list(range(len(calls))), f"seed {seed}: journal is not a prefix"
    if must_have:
        assert must_have[-1] < len(calls), (
            f"seed {seed}: call {must_have[-1]} acked "
            f"{(trial.kill_at or 0) - trial.acks[must_have[-1]]:.3f} s before the kill "
            f"is missing (journal has {len(calls)})"
        )

    r = _recover(logs, elsewhere)
    doc_path = Path(r.stdout.strip())
    assert doc_path.parent == logs and doc_path.name == journal_path.stem + ".json", r.stdout
    doc = load_document(doc_path)
    # The journal is consumed and any temp file of the dead host is gone.
    assert _leftovers(logs, doc_path) == [], seed
    if finished is not None:
        assert doc_path == finished and doc["final_status"] == "completed", seed
        return trial.calls
    assert doc["final_status"] == "crashed"
    assert doc["metadata"]["recovery"]["dropped_tail_bytes"] == len(journal.tail)
    assert doc["metadata"]["recovery"]["dropped_lines"] == 0
    got = [data["i"] for data in _interaction_inputs(doc)]
    assert got == calls, f"seed {seed}: the document is not the journal's prefix"
    return len(calls)


def _kill_trials(
    tmp_path: Path, trials: int, args: list[str], run_time: float
) -> list[tuple[KillTrial, int]]:
    script = _write_script(tmp_path, "host", KILL_HOST)
    results = []
    for n in range(trials):
        seed = SEED + n
        rng = random.Random(seed)
        logs = tmp_path / f"logs{n}"
        trial = _run_and_kill(script, logs, rng, seed, args, run_time)
        try:
            recovered = _check_kill_trial(trial, logs, tmp_path / "elsewhere")
        except AssertionError as exc:
            replay = f"AGENTLOG_KILL_SEED={seed} replays it"
            raise AssertionError(f"trial {n} ({replay}): {exc}") from exc
        results.append((trial, recovered))
    assert not (tmp_path / "elsewhere").exists()
    return results


def test_sigkill_at_a_random_moment_loses_no_acked_call(tmp_path: Path) -> None:
    """SIGKILL anywhere in 1,000 calls: a contiguous prefix with every acked call survives."""
    results = _kill_trials(tmp_path, KILL_TRIALS, ["1000", "40", "0.001"], run_time=1.2)
    # The trials must have killed mid-run and checked something, not only before or after.
    checked = [t for t, _ in results if t.acked_before(ACK_MARGIN)]
    assert len(checked) >= KILL_TRIALS // 4, f"seed {SEED}: too few trials acked anything"
    assert any(0 < recovered < 1000 for _, recovered in results), f"seed {SEED}"


def test_sigkill_during_huge_events_loses_no_acked_call(tmp_path: Path) -> None:
    """SIGKILL among 4 MB events: same as above; recovery drops a torn tail of any size."""
    results = _kill_trials(tmp_path, 3, ["8", str(4_000_000), "0.1"], run_time=1.5)
    assert any(t.acks for t, _ in results), f"seed {SEED}: no huge event was ever acked"


def test_huge_event_is_journaled_whole(tmp_path: Path) -> None:
    """The B3 host, killed after its last ack: each 4 MB event is one 4 MB journal line."""
    script = _write_script(tmp_path, "host", KILL_HOST + "time.sleep(30)\n")
    logs = tmp_path / "logs"
    env = script_env(logs)
    # Stop short of exit: SIGKILL after "done" and the sleep keeps the journal on disk.
    proc = subprocess.Popen(
        [sys.executable, str(script), "2", str(4_000_000), "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line == "done\n":
                time.sleep(ACK_MARGIN)
                proc.kill()
                break
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    journal = _read_journal(_only(sorted(logs.glob("*.jsonl"))))
    assert journal.tail == b""
    sizes = [len(orjson.dumps(e)) for e in journal.events if e["ev"] == "interaction"]
    assert len(sizes) == 2
    assert all(size > 3_900_000 for size in sizes), sizes


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
