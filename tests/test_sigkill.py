"""SIGKILL at a random moment: every acknowledged event survives recovery.

A host (``reliability_scripts/sigkill_host.py``) logs events through
``agentlog.log_interaction`` and acknowledges each on a pipe once agentlog has returned;
the test SIGKILLs it at ``uniform(0, run time)``, checks the journal it left, recovers
it (in process with ``recover_dir``, and every tenth trial with ``python -m agentlog
recover``) and checks the document.

CI runs 50 trials of 1,000 calls and 5 of 4 MB events; ``pytest --trials 500`` runs
500 (and 50). Each failure names its seed; ``AGENTLOG_KILL_SEED=<seed>`` replays it. The
totals (trials, events acked, events lost) are printed after the module and kept in
``/tmp/agentlog-figures/sigkill.json``.

Covers B1: SIGKILL at uniform(0, run time) during 1,000 logged calls, 50 trials (500
with --trials 500): the recovered document is schema-valid, its events a contiguous
prefix (seqs 0..n-1 in the journal), every event acked more than 1 s (the 0.05 s flush
interval plus scheduling slack) before the kill is in it, at most one torn tail line,
dropped and reported as ``metadata.recovery.dropped_tail_bytes``; no ``*.tmp.*`` file is
left. Events lost that were acked more than the flush interval itself before the kill
are counted in the figures.
Covers B3: the same with 4 MB events; a torn tail of any length is dropped and reported;
a 4 MB event is journaled as one whole line.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentlog import _lifecycle
from helpers import load_document, script_env
from reliability_scripts import _figures

HOST = Path(__file__).parent / "reliability_scripts" / "sigkill_host.py"
FLUSH_INTERVAL = 0.05
SLACK = 0.95
"""Scheduling slack: an event acked more than ``FLUSH_INTERVAL + SLACK`` (1 s, the
TESTPLAN's figure) before the kill must be in the document (asserted). On a 2-core
machine at load average 10 the flusher was seen to lag 0.6 s; losses of events acked
more than ``FLUSH_INTERVAL`` before the kill are counted separately and reported."""
CI_TRIALS = 50
SEED = int(os.environ.get("AGENTLOG_KILL_SEED", str(random.randrange(1 << 32))))


@pytest.fixture(scope="module", autouse=True)
def _figures_after_module(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from _figures.show(request, "sigkill", "sigkill_4mb")


@pytest.fixture
def trials(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--trials") or CI_TRIALS)


# -- one trial ------------------------------------------------------------------------------
@dataclass
class Trial:
    """When each event was acked (as the parent saw it) and when the kill was sent."""

    seed: int
    calls: int
    acks: dict[int, float] = field(default_factory=dict)
    started: float | None = None
    done_at: float | None = None
    killed_at: float | None = None
    finished: bool = False
    returncode: int | None = None

    def acked_before(self, margin: float) -> set[int]:
        assert self.killed_at is not None
        return {i for i, t in self.acks.items() if t < self.killed_at - margin}


def _run(logs: Path, seed: int, args: list[str], kill_after: float | None) -> Trial:
    """Start the host and read its acks; SIGKILL it ``kill_after`` s after ``start``."""
    trial = Trial(seed, int(args[0]))
    logs.parent.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, str(HOST), str(write_end), *args],
            env=script_env(logs, AGENTLOG_FLUSH_INTERVAL=str(FLUSH_INTERVAL)),
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=logs.parent,
        )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    buf = b""

    def take(chunk: bytes, stamp: float) -> None:
        nonlocal buf
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line == b"start":
                trial.started = stamp
            elif line == b"done":
                trial.finished = True
                trial.done_at = stamp
            else:
                trial.acks[int(line)] = stamp

    try:
        deadline = time.monotonic() + 60  # interpreter start and import, on a busy machine
        while True:
            now = time.monotonic()
            kill_at = None if trial.started is None or kill_after is None else (
                trial.started + kill_after
            )
            if kill_at is not None and now >= kill_at:
                break
            wait = (kill_at if kill_at is not None else deadline) - now
            ready, _, _ = select.select([read_end], [], [], max(wait, 0))
            if not ready:
                if trial.started is None:
                    pytest.fail(f"seed {seed}: the host never started")
                continue
            chunk = os.read(read_end, 65536)
            stamp = time.monotonic()  # no earlier than the host's own ack
            if not chunk:
                break  # the host ended before the kill
            take(chunk, stamp)
        trial.killed_at = time.monotonic()
        if kill_after is not None:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        # Acks still in the pipe were sent before the kill, at a moment we do not know:
        # count them as acked, but never as acked early enough to be owed.
        while chunk := os.read(read_end, 65536):
            take(chunk, trial.killed_at)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(read_end)
    trial.returncode = proc.returncode
    if not trial.finished:
        assert proc.returncode == -signal.SIGKILL, (seed, proc.returncode, err)
    assert b"Traceback" not in err, err
    return trial


@dataclass
class Journal:
    """A journal as found on disk: its whole lines, parsed, and the torn tail."""

    events: list[dict[str, Any]]
    tail: bytes


def _read_journal(path: Path) -> Journal:
    """Every whole line parses and seqs run 0, 1, 2 ...; only the tail may be torn."""
    lines = path.read_bytes().split(b"\n")
    journal = Journal([], lines.pop())
    for n, line in enumerate(lines):
        assert line, f"empty line {n} in the journal"
        event = orjson.loads(line)  # a torn line anywhere but the tail fails here
        assert event["seq"] == n, f"line {n} has seq {event['seq']}"
        journal.events.append(event)
    if journal.events:
        assert journal.events[0]["ev"] == "run"
    start = b'{"seq":%d,' % len(journal.events)  # a torn tail is the next line's start
    assert journal.tail[: len(start)] == start[: len(journal.tail)], journal.tail[:80]
    return journal


def _inputs(doc: dict[str, Any]) -> list[int]:
    return [ix["input_data"]["i"] for it in doc["iterations"] for ix in it["interactions"]]


def _recover(logs: Path, via_cli: bool, elsewhere: Path) -> list[Path]:
    if not via_cli:
        return _lifecycle.recover_dir(logs)
    r = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(logs)],
        env=script_env(elsewhere),  # its own import-time recovery looks elsewhere
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return [Path(line) for line in r.stdout.split()]


def _check(trial: Trial, logs: Path, via_cli: bool, elsewhere: Path, topic: str) -> int:
    """Journal, recovery and document against the trial's acks; returns events recovered."""
    owed = trial.acked_before(FLUSH_INTERVAL + SLACK)
    journals = sorted(logs.glob("*.jsonl")) if logs.is_dir() else []
    finished = sorted(logs.glob("*.json")) if logs.is_dir() else []
    assert len(journals) <= 1 and len(finished) <= 1, (journals, finished)
    journal = _read_journal(journals[0]) if journals else None
    if journal is not None:
        calls = [e["input"]["i"] for e in journal.events if e["ev"] == "interaction"]
        assert calls == list(range(len(calls))), "the journal is not a prefix"

    recovered = _recover(logs, via_cli, elsewhere) if logs.is_dir() else []
    docs = sorted(logs.glob("*.json")) if logs.is_dir() else []
    if not docs:  # killed before the journal's first write
        assert journal is None and not recovered
        assert not owed, f"no journal, yet {len(owed)} events were acked in time"
        got: list[int] = []
    else:
        (doc_path,) = docs
        # The journal is consumed, and no temp file (journal's or document's) is left.
        assert sorted(p.name for p in logs.iterdir()) == [doc_path.name]
        doc = load_document(doc_path)
        got = _inputs(doc)
        assert got == list(range(len(got))), "the document is not a contiguous prefix"
        if finished:  # the kill came after the exit's document was written
            assert doc_path == finished[0] and doc["final_status"] == "completed"
            assert len(got) == trial.calls
        else:
            assert journal is not None
            assert recovered == [doc_path]
            assert doc["final_status"] == "crashed"
            recovery = doc["metadata"]["recovery"]
            assert recovery["dropped_tail_bytes"] == len(journal.tail)
            assert recovery["dropped_lines"] == 0
            assert got == calls, "the document is not the journal's prefix"
    if owed:
        last = max(owed)
        killed_at = trial.killed_at or 0
        assert last < len(got), (
            f"event {last}, acked {killed_at - trial.acks[last]:.3f} s before the kill, is "
            f"missing (recovered {len(got)}; acks after it: {len(trial.acks) - last - 1}; "
            f"last ack {killed_at - max(trial.acks.values()):.3f} s before the kill)"
        )
    lost = set(trial.acks) - set(got)
    if lost:
        killed_at = trial.killed_at or 0
        _figures.peak(topic, oldest_lost_ack_s=max(killed_at - trial.acks[i] for i in lost))
    _figures.add(
        topic,
        trials=1,
        events_acked=len(trial.acks),
        events_lost=len(lost),
        events_lost_acked_over_flush_interval=len(lost & trial.acked_before(FLUSH_INTERVAL)),
        events_owed=len(owed),
        killed_mid_run=int(not trial.finished and trial.started is not None),
        torn_tails=int(bool(journal and journal.tail)),
        dropped_tail_bytes=len(journal.tail) if journal else 0,
    )
    return len(got)


def _trials(
    tmp_path: Path, count: int, args: list[str], topic: str
) -> list[tuple[Trial, int]]:
    """One unkilled run to time the host, then ``count`` kills at uniform(0, that time)."""
    elsewhere = tmp_path / "elsewhere"
    calibrate = _run(tmp_path / "calibrate" / "logs", SEED, args, None)
    assert calibrate.finished and calibrate.returncode == 0
    assert calibrate.started is not None and calibrate.done_at is not None
    run_time = calibrate.done_at - calibrate.started  # its exit is B2's (test_durability)
    (finished,) = (tmp_path / "calibrate" / "logs").glob("*.json")
    assert _inputs(load_document(finished)) == list(range(calibrate.calls))
    results = []
    # Two hosts at a time (their start-up is most of a trial); checked in order meanwhile.
    pool = ThreadPoolExecutor(2, thread_name_prefix="sigkill-trial")
    try:
        runs = [
            pool.submit(_run, tmp_path / f"t{n}" / "logs", SEED + n, args,
                        random.Random(SEED + n).uniform(0, run_time))
            for n in range(count)
        ]
        for n, future in enumerate(runs):
            trial = future.result()
            logs = tmp_path / f"t{n}" / "logs"
            try:
                got = _check(trial, logs, n % 10 == 9, elsewhere, topic)
            except AssertionError as exc:
                raise AssertionError(
                    f"trial {n}, seed {trial.seed} (AGENTLOG_KILL_SEED={trial.seed} "
                    f"replays it): {exc}"
                ) from exc
            results.append((trial, got))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert not elsewhere.exists()
    return results


# -- B1 / B3 ----------------------------------------------------------------------------------
def test_sigkill_at_a_random_moment_loses_no_acked_event(tmp_path: Path, trials: int) -> None:
    """B1: SIGKILL anywhere in 1,000 calls; the recovered prefix holds every owed event."""
    results = _trials(tmp_path, trials, ["1000", "40", "0.0015"], "sigkill")
    # The kills must have landed mid-run and checked something, not only before or after.
    owed = [t for t, _ in results if t.acked_before(FLUSH_INTERVAL + SLACK)]
    assert len(owed) >= trials // 4, f"seed {SEED}: too few trials owed anything"
    assert sum(0 < got < 1000 for _, got in results) >= trials // 4, f"seed {SEED}"


def test_sigkill_during_4mb_events_loses_no_acked_event(tmp_path: Path, trials: int) -> None:
    """B3: SIGKILL among 4 MB events; recovery drops a torn tail of any size and says so."""
    results = _trials(tmp_path, max(3, trials // 10), ["8", str(4_000_000), "0.25"],
                      "sigkill_4mb")
    assert any(t.acks for t, _ in results), f"seed {SEED}: no huge event was ever acked"


def test_a_4mb_event_is_journaled_whole(tmp_path: Path) -> None:
    """B3: each 4 MB event is one journal line; a tail torn anywhere in one is dropped."""
    logs = tmp_path / "logs"
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, str(HOST), str(write_end), "2", str(4_000_000), "0", "30"],
        env=script_env(logs, AGENTLOG_FLUSH_INTERVAL=str(FLUSH_INTERVAL)),
        pass_fds=(write_end,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as acks:
            for line in acks:
                if line == b"done\n":
                    time.sleep(FLUSH_INTERVAL + SLACK)
                    break
    finally:
        proc.kill()
        proc.wait()
    (path,) = logs.glob("*.jsonl")
    journal = _read_journal(path)
    assert journal.tail == b""
    sizes = [len(orjson.dumps(e)) for e in journal.events if e["ev"] == "interaction"]
    assert len(sizes) == 2
    assert all(size > 3_900_000 for size in sizes), sizes
    # A torn tail of any length: cut the journal 1 byte into, in the middle of, and 1
    # byte short of the end of its last (4 MB) line; recovery drops exactly that much.
    data = path.read_bytes()
    last_start = data.rindex(b"\n", 0, len(data) - 1) + 1
    for cut in (last_start + 1, (last_start + len(data)) // 2, len(data) - 1):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        (folder / path.name).write_bytes(data[:cut])
        (doc_path,) = _lifecycle.recover_dir(folder)
        doc = load_document(doc_path)
        assert doc["final_status"] == "crashed"
        assert doc["metadata"]["recovery"]["dropped_tail_bytes"] == cut - last_start
        assert _inputs(doc) == [0]
        assert sorted(p.name for p in folder.iterdir()) == [doc_path.name]
