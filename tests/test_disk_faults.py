"""Disk faults: a failing, full, slow or vanished disk never breaks the host.

Faults are injected in the host's own interpreter by wrapping ``os`` functions (never
agentlog's): ``os.write`` fails on the journal's descriptor (found through
``/proc/self/fd``) with ``ENOSPC``/``EIO``/``EROFS``/``EACCES``, then space returns; the
N-th ``os.write``/``os.fsync``/``os.replace`` of the run fails once, with each errno;
the log folder is deleted under a live run; the log folder is a 1 MB tmpfs; ``os.fsync``
or ``os.replace`` fail during the document write; journal writes are slowed to a crawl.
The host must behave exactly as without the fault, and what it recorded must be in the
document, or counted as dropped. The number of injections survived is printed after the
module and kept in ``/tmp/agentlog-figures/disk_faults.json``.

Covers B9: ENOSPC/EIO/EROFS/EACCES on journal writes (short writes too), then space
returns and every event is written once; the N-th write/fsync/replace fails once with each
errno (36 runs); a disk failing for the whole run (memory bounded, drops counted exactly,
warned once); the folder deleted mid-run; a 1 MB tmpfs (skipped where mount is refused);
fsync/replace failing at exit (exit code kept, journal recovered). Always: host stdout,
stderr and exit code unchanged, one warning at most, a valid final document (written or
recovered), ``metadata.totals.dropped_events`` and error_log telling what happened.
Covers B11: a slow writer (100 KB/s, 3 MB/s) under 100,000 small events and under 200 MB
of 100 KB events: the backlog stops at ``AGENTLOG_MAX_QUEUE`` events or 64 MiB (peak RSS
growth asserted), newer events are dropped and counted, warned about once, the kept ones
stay in order; the drop policy is in ``agentlog._journal``'s docstring.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentlog import _lifecycle
from helpers import Result, load_document, run_script, script_env
from reliability_scripts import _figures


@pytest.fixture(scope="module", autouse=True)
def _figures_after_module(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from _figures.show(request, "disk_faults", "backpressure")

# Installed before ``import agentlog`` in every faulty host. ``fault(True/False)`` turns
# the failure on and off ("space returns"); only journal writes from the N-th on fail.
WRITE_FAULT = """\
import errno, os, sys

_real_write = os.write
_ERRNO = getattr(errno, os.environ.get("FAULT_ERRNO", "ENOSPC"))
_FROM = int(os.environ.get("FAULT_FROM", "1"))
_SHORT = os.environ.get("FAULT_SHORT") == "1"
_enabled = os.environ.get("FAULT_ON", "0") == "1"
failing = False
journal_writes = 0
failures = 0


def _is_journal(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}").endswith(".jsonl")
    except OSError:
        return False


def _write(fd, data):
    global journal_writes, failures
    if failing and _is_journal(fd):
        journal_writes += 1
        if journal_writes >= _FROM:
            failures += 1
            if _SHORT and failures == 1 and len(data) > 1:
                # What a filling disk does first: a short write, then the error.
                return _real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(_ERRNO, os.strerror(_ERRNO))
    return _real_write(fd, data)


os.write = _write


def fault(on):
    global failing
    failing = on and _enabled
"""


def _interactions(doc: dict[str, Any]) -> list[Any]:
    return [ix["input_data"] for it in doc["iterations"] for ix in it["interactions"]]


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "cannot write the journal" in line]


def _unwritten(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "cannot write the document" in line]


def _same_host_behaviour(faulty: Result, clean: Result) -> None:
    """The differential oracle: stdout, the host's stderr and the exit code are unchanged."""
    assert faulty.stdout == clean.stdout
    assert faulty.host_stderr() == clean.host_stderr()
    assert faulty.returncode == clean.returncode
    assert "Traceback" not in faulty.stderr
    assert "Exception ignored" not in faulty.stderr


def _journal_seqs(logs: Path) -> list[int]:
    journal = sorted(logs.glob("*.jsonl"))
    assert len(journal) == 1, journal
    return [json.loads(line)["seq"] for line in journal[0].read_bytes().splitlines() if line]


# -- os.write fails on the journal, then space returns -----------------------------------------
TRANSIENT_HOST = WRITE_FAULT + """\
import json, time
import agentlog

probe = {}
print("working")
for i in range(10):
    agentlog.log_interaction("before", {"i": i}, "ok")
time.sleep(0.2)  # on disk
fault(True)
for i in range(10, 30):
    agentlog.log_interaction("during", {"i": i}, "ok")
    time.sleep(0.01)  # the flusher retries meanwhile, and fails
time.sleep(0.2)
probe["failures"] = failures
fault(False)  # space returns
time.sleep(0.3)  # the flusher writes the backlog
folder = os.environ["AGENTLOG_DIR"]
journal = [n for n in os.listdir(folder) if n.endswith(".jsonl")][0]
with open(os.path.join(folder, journal), "rb") as f:
    lines = f.read().split(b"\\n")
probe["ends_with_newline"] = lines[-1] == b""
probe["inputs"] = []
for line in lines:
    try:
        ev = json.loads(line)
    except ValueError:
        continue  # a line torn by a short write
    if ev.get("ev") == "interaction":
        probe["inputs"].append(ev["input"]["i"])
for i in range(30, 40):
    agentlog.log_interaction("after", {"i": i}, "ok")
with open("probe.json", "w") as f:
    json.dump(probe, f)
print("done", sum(range(40)))
"""

TRANSIENT_CASES = [
    pytest.param("ENOSPC", 1, False, id="ENOSPC-first"),
    pytest.param("ENOSPC", 3, False, id="ENOSPC-third"),
    pytest.param("ENOSPC", 1, True, id="ENOSPC-short-write"),
    pytest.param("EIO", 1, False, id="EIO-first"),
    pytest.param("EIO", 2, True, id="EIO-short-write"),
    pytest.param("EROFS", 1, False, id="EROFS-first"),
    pytest.param("EACCES", 2, False, id="EACCES-second"),
]


@pytest.mark.parametrize(("err", "start", "short"), TRANSIENT_CASES)
def test_journal_write_errors_then_space_returns(
    run: Any, err: str, start: int, short: bool
) -> None:
    """Journal writes fail for a while: host unchanged, then every event is written once."""
    clean = run(TRANSIENT_HOST)
    assert clean.returncode == 0, clean.stderr
    assert json.loads((clean.logs.parent / "probe.json").read_text())["failures"] == 0
    for doc in clean.logs.glob("*.json"):
        doc.unlink()
    faulty = run(
        TRANSIENT_HOST,
        FAULT_ON="1",
        FAULT_ERRNO=err,
        FAULT_FROM=str(start),
        FAULT_SHORT="1" if short else "0",
    )
    _same_host_behaviour(faulty, clean)
    probe = json.loads((faulty.logs.parent / "probe.json").read_text())
    assert probe["failures"] > 1, "the fault never fired"
    # Writing resumed when space returned: the backlog reached the journal, each event
    # once, in order, and the torn line (if any) was ended before the next.
    assert probe["inputs"] == list(range(30))
    assert probe["ends_with_newline"]
    assert len(_warnings(faulty.stderr)) <= 1
    doc = faulty.doc()
    assert doc["final_status"] == "completed"
    assert [x["i"] for x in _interactions(doc)] == list(range(40))
    assert doc["metadata"]["totals"]["dropped_events"] == 0
    assert not list(faulty.logs.glob("*.jsonl"))
    _figures.add("disk_faults", injections=probe["failures"], transient_runs=1)


# -- os.write fails for the whole run: the backlog is bounded -------------------------------
BOUNDED_HOST = WRITE_FAULT + """\
import json, tracemalloc
import agentlog

fault(True)  # for the whole run, exit included
pad = "x" * 1_000
agentlog.log_interaction("warmup", {"i": -1}, pad)
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]
for i in range(20_000):
    agentlog.log_interaction("worker", {"i": i}, pad)
grown = tracemalloc.get_traced_memory()[0] - base
tracemalloc.stop()
with open("probe.json", "w") as f:
    json.dump({"grown": grown, "failures": failures}, f)
print("done")
"""


def test_failing_disk_keeps_memory_bounded_and_counts_drops(run: Any) -> None:
    """20,000 events, writes failing, max queue 1,000: memory flat, drops counted exactly."""
    r = run(BOUNDED_HOST, FAULT_ON="1", AGENTLOG_MAX_QUEUE="1000")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "done\n"
    assert r.host_stderr() == ""
    probe = json.loads((r.logs.parent / "probe.json").read_text())
    assert probe["failures"] > 0
    # Unbounded, 20,000 serialised events of over 1 KB each would be over 20 MB.
    assert probe["grown"] < 4_000_000, probe
    assert len(_warnings(r.stderr)) == 1
    doc = r.doc()  # the document itself is not a journal write: it still gets out
    assert doc["final_status"] == "completed"
    kept = [x["i"] for x in _interactions(doc)]
    dropped = doc["metadata"]["totals"]["dropped_events"]
    assert dropped > 0
    assert 0 < len(kept) <= 1000
    # The oldest are kept (the backlog fills up, then new events are dropped).
    assert kept == list(range(-1, len(kept) - 1))
    # Every event is either in the document or counted, and nothing is counted twice.
    assert len(kept) + dropped == 20_001
    assert "dropped event" in r.stderr
    _figures.add("disk_faults", injections=probe["failures"], failing_disk_runs=1)


# -- the log folder deleted under a live run ------------------------------------------------
RMTREE_HOST = """\
import os, shutil, time
import agentlog

folder = os.environ["AGENTLOG_DIR"]
for i in range(5):
    agentlog.log_interaction("before", {{"i": i}}, "ok")
time.sleep(0.2)  # the journal is on disk
had_journal = os.path.isdir(folder) and any(n.endswith(".jsonl") for n in os.listdir(folder))
with open("probe.txt", "w") as f:
    f.write(str(had_journal))
shutil.rmtree(folder, ignore_errors=True)
print("deleted")
for i in range(5, 10):
    agentlog.log_interaction("after", {{"i": i}}, "ok")
time.sleep({pause})
agentlog.add_resource("data.csv", "file")
print("done")
"""


@pytest.mark.parametrize("pause", [0.0, 0.2])
def test_log_folder_deleted_mid_run(run: Any, pause: float) -> None:
    """``rmtree`` of the log folder mid-run: host unchanged, the document has every event."""
    source = RMTREE_HOST.format(pause=pause)
    clean = run(source, AGENTLOG="0")
    assert (clean.logs.parent / "probe.txt").read_text() == "False"
    r = run(source)
    _same_host_behaviour(r, clean)
    assert r.returncode == 0
    assert r.stdout == "deleted\ndone\n"
    assert (r.logs.parent / "probe.txt").read_text() == "True"  # deleted with its journal
    assert r.logs.is_dir()  # made again for the document
    doc = r.doc()
    assert doc["final_status"] == "completed"
    assert [x["i"] for x in _interactions(doc)] == list(range(10))
    assert [res["resource"] for res in doc["resources_used"]] == ["data.csv"]
    assert doc["metadata"]["totals"]["dropped_events"] == 0
    assert [p.suffix for p in r.logs.iterdir()] == [".json"]  # no journal, no temp file
    _figures.add("disk_faults", injections=1, folder_deleted_runs=1)


# -- a 1 MB tmpfs as the log folder ---------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    """A 1 MB tmpfs mounted where the host's logs go; unmounted afterwards."""
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o700)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(logs)],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode(errors='replace')}")
    try:
        yield logs
    finally:
        subprocess.run(["umount", "-l", str(logs)], capture_output=True, timeout=30)


BIG_HOST = """\
import agentlog

agentlog.set_logging(True, verbosity=2)  # fields kept whole: 200 KB a call
piece = "x" * 100_000
for i in range({calls}):
    agentlog.log_interaction("worker", {{"i": i, "pad": piece}}, piece)
print("done", {calls})
"""


@pytest.mark.parametrize("calls", [1, 25])
def test_tiny_tmpfs_log_folder(run: Any, tiny_disk: Path, tmp_path: Path, calls: int) -> None:
    """A 1 MB tmpfs: a document that fits is written; one that does not is reported once."""
    source = BIG_HOST.format(calls=calls)
    r = run(source, AGENTLOG_STRICT="0")
    clean = run(source, AGENTLOG="0")
    _same_host_behaviour(r, clean)
    assert r.returncode == 0
    docs = sorted(tiny_disk.glob("*.json"))
    if calls == 1:  # 200 KB: the journal fits, and so does the document beside it
        assert len(docs) == 1
        doc = load_document(docs[0])
        assert [x["i"] for x in _interactions(doc)] == list(range(calls))
        assert not list(tiny_disk.glob("*.jsonl"))
        _figures.add("disk_faults", injections=1, tmpfs_runs=1)
        return
    # About 5 MB cannot fit: no document, no traceback; each failure said once.
    assert docs == []
    assert "Traceback" not in r.stderr
    assert len(_warnings(r.stderr)) == 1, r.stderr
    assert len(_unwritten(r.stderr)) == 1, r.stderr
    assert len(r.stderr.splitlines()) == 2, r.stderr
    assert not [p for p in tiny_disk.iterdir() if ".tmp." in p.name]  # no half document
    # What did fit is a journal that recovers elsewhere into a prefix, each event once.
    journals = sorted(tiny_disk.glob("*.jsonl"))
    assert len(journals) == 1
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    (elsewhere / journals[0].name).write_bytes(journals[0].read_bytes())
    rec = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(elsewhere)],
        env=script_env(tmp_path / "unused"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rec.returncode == 0, rec.stderr
    doc = load_document(Path(rec.stdout.strip()))
    assert doc["final_status"] == "crashed"
    got = [x["i"] for x in _interactions(doc)]
    assert got == list(range(len(got)))
    _figures.add("disk_faults", injections=1, tmpfs_runs=1)


# -- the document write itself fails -------------------------------------------------------
DOC_FAULT_HOST = """\
import atexit, errno, os, sys
import agentlog

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

def _arm():  # registered after agentlog's exit hook, so it runs first
    os.{call} = _enospc

for i in range(3):
    agentlog.log_interaction("worker", {{"i": i}}, "ok")
agentlog.log_error("user error")
if os.environ.get("AGENTLOG") != "0":
    atexit.register(_arm)
print("done")
sys.exit(3)
"""


@pytest.mark.parametrize("call", ["fsync", "replace"])
def test_document_write_fails_at_exit(tmp_path: Path, call: str) -> None:
    """``os.fsync``/``os.replace`` fail with ENOSPC at exit: exit code kept, journal kept."""
    source = textwrap.dedent(DOC_FAULT_HOST.format(call=call))
    # Not strict: a user's program, where agentlog swallows its own failures.
    r = run_script(tmp_path, source, AGENTLOG_STRICT="0")
    clean = run_script(tmp_path, source, AGENTLOG="0")
    _same_host_behaviour(r, clean)
    assert r.returncode == 3
    assert r.stdout == "done\n"
    (line,) = _unwritten(r.stderr)  # the user hears there is no document, once
    assert os.strerror(errno.ENOSPC) in line and "agentlog recover" in line
    assert r.stderr.splitlines() == [line]
    logs = r.logs
    assert not list(logs.glob("*.json"))
    assert not [p for p in logs.iterdir() if ".tmp." in p.name]  # the temp file is removed
    journals = sorted(logs.glob("*.jsonl"))
    assert len(journals) == 1
    rec = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(logs)],
        env=script_env(tmp_path / "unused"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rec.returncode == 0, rec.stderr
    doc = load_document(Path(rec.stdout.strip()))
    assert doc["final_status"] == "crashed"
    assert [x["i"] for x in _interactions(doc)] == [0, 1, 2]
    errors = [(e["source"], e["error"]) for e in doc["error_log"]]
    assert ("user", "user error") in errors
    # The failure is in error_log, so the crashed document says why it is crashed.
    assert any(
        source.startswith("agentlog:") and os.strerror(errno.ENOSPC) in message
        for source, message in errors
    ), errors
    _figures.add("disk_faults", injections=1, document_write_runs=1)



# -- the N-th os.write / os.fsync / os.replace fails once, with each errno -------------------
# Installed before ``import agentlog``: the N-th call (any descriptor, any thread) of one
# ``os`` function after ``arm()`` raises, once. The run journals, flushes at an iteration
# end, saves a snapshot (write, fsync, replace, folder fsync) and finalizes at exit, so the
# fault lands in a journal write, a snapshot or the final document, depending on N.
NTH_CALL_FAULT = """\
import atexit, errno, json, os, threading

_CALL = os.environ["FAULT_CALL"]
_ERRNO = getattr(errno, os.environ["FAULT_ERRNO"])
_AT = int(os.environ["FAULT_AT"])
_real = getattr(os, _CALL)
_lock = threading.Lock()
_armed = False
calls = 0
fired = 0


def _faulty(*args, **kwargs):
    global calls, fired
    if _armed:
        with _lock:
            calls += 1
            hit = calls == _AT
        if hit:
            fired += 1
            raise OSError(_ERRNO, os.strerror(_ERRNO))
    return _real(*args, **kwargs)


setattr(os, _CALL, _faulty)


def arm():
    global _armed
    _armed = True


def _probe():  # registered before agentlog's exit hook: runs after the document write
    with open("probe.json", "w") as f:
        json.dump({"fired": fired, "calls": calls}, f)


atexit.register(_probe)
"""

NTH_CALL_HOST = NTH_CALL_FAULT + """\
import time
import agentlog

arm()
for i in range(5):
    agentlog.log_interaction("first", {"i": i}, "ok")
with agentlog.iteration():  # its end writes the journal inline
    agentlog.log_interaction("inside", {"i": 5}, "ok")
print("saved:", agentlog.save_log("snapshot.json") is not None)
for i in range(6, 10):
    agentlog.log_interaction("last", {"i": i}, "ok")
time.sleep(0.15)  # the flusher writes (and retries) meanwhile

print("done", sum(range(10)))
"""

NTH_CALL_CASES = [
    (call, n) for call, positions in (("write", 3), ("fsync", 4), ("replace", 2))
    for n in range(1, positions + 1)
]


@pytest.fixture(scope="module")
def nth_call_clean_run(tmp_path_factory: pytest.TempPathFactory) -> Result:
    """The host without agentlog, once: the oracle every faulty run is compared with."""
    env = {"FAULT_CALL": "write", "FAULT_ERRNO": "EIO", "FAULT_AT": "1"}
    return run_script(tmp_path_factory.mktemp("clean"), NTH_CALL_HOST, AGENTLOG="0", **env)


@pytest.mark.parametrize("err", ["ENOSPC", "EIO", "EROFS", "EACCES"])
@pytest.mark.parametrize(("call", "at"), NTH_CALL_CASES,
                         ids=[f"{c}-{n}" for c, n in NTH_CALL_CASES])
def test_nth_call_fails_once(
    tmp_path: Path, nth_call_clean_run: Result, call: str, at: int, err: str
) -> None:
    """B9: the N-th write/fsync/replace fails once: host unchanged; nothing lost or doubled."""
    env = {"FAULT_CALL": call, "FAULT_ERRNO": err, "FAULT_AT": str(at)}
    clean = nth_call_clean_run
    # Not strict: a user's program, where agentlog swallows its own failures.
    faulty = run_script(tmp_path, NTH_CALL_HOST, AGENTLOG_STRICT="0", **env)
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["fired"] == 1, probe  # the fault did land, on a call agentlog made
    saved = faulty.stdout.startswith("saved: True\n")
    # The host's own output is unchanged, but for what ``save_log`` returned (None with
    # AGENTLOG=0, and None when the fault made it fail).
    assert clean.stdout.startswith("saved: False\n")
    _same_host_behaviour(
        dataclasses.replace(faulty, stdout=faulty.stdout.replace("saved: True", "saved: False")),
        clean,
    )
    assert len(_warnings(faulty.stderr)) <= 1
    logs = faulty.logs
    docs = sorted(logs.glob("*.json"))
    if not docs or list(logs.glob("*.jsonl")):
        # The final document's write failed (or its folder's fsync did, after the
        # rename): the user was told, and the journal, complete, is left to recovery.
        assert len(_unwritten(faulty.stderr)) == 1, faulty.stderr
        _lifecycle.recover_dir(logs)
        docs = sorted(logs.glob("*.json"))
    assert len(docs) == 1, sorted(p.name for p in logs.iterdir())
    doc = load_document(docs[0])
    assert [x["i"] for x in _interactions(doc)] == list(range(10))
    assert doc["metadata"]["totals"]["dropped_events"] == 0
    assert sorted(p.name for p in logs.iterdir()) == [docs[0].name]  # no journal, no tmp
    if doc["final_status"] == "completed":
        assert saved or any(e["source"].startswith("agentlog:") for e in doc["error_log"])
    else:
        assert doc["final_status"] == "crashed"
        assert any(
            e["source"].startswith("agentlog:") and os.strerror(getattr(errno, err)) in e["error"]
            for e in doc["error_log"]
        ), doc["error_log"]
    if saved:
        snapshot = load_document(tmp_path / "snapshot.json")
        assert snapshot["final_status"] == "in_progress"
        assert [x["i"] for x in _interactions(snapshot)] == list(range(6))
    _figures.add("disk_faults", injections=probe["fired"], nth_call_runs=1,
                 nth_call_final_document_failed=int(doc["final_status"] == "crashed"))


# -- B11: backpressure from a slow writer ------------------------------------------------------
SLOW_WRITER_HOST = """\
import json, os, sys, time

_real_write = os.write
slow = False
calls, size, CHUNK = (int(arg) for arg in sys.argv[1:4])


def _is_journal(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}").endswith(".jsonl")
    except OSError:
        return False


def _slow_write(fd, data):
    if slow and _is_journal(fd):
        time.sleep(0.02)  # a slow disk: CHUNK bytes per 20 ms
        data = bytes(memoryview(data)[:CHUNK])
    return _real_write(fd, data)


os.write = _slow_write
import agentlog


def peak_rss():
    # VmHWM, not ru_maxrss: that one starts from the parent's peak (pytest's) at exec.
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


if size > 1_000:
    agentlog.set_logging(True, verbosity=2)  # keep the fields whole
pad = "x" * (size // 2)
agentlog.log_interaction("warmup", {"i": -1}, "")
time.sleep(0.2)
base = peak_rss()
slow = True
started = time.monotonic()
for i in range(calls):
    agentlog.log_interaction("worker", {"i": i, "pad": pad}, pad)
took = time.monotonic() - started
grown = peak_rss() - base
slow = False  # the disk catches up: the backlog drains, the document is written
with open("probe.json", "w") as f:
    json.dump({"grown": grown, "took": took}, f)
print("done")
"""

BACKPRESSURE_CASES = {
    # 100,000 small events into a 100 KB/s disk; the backlog is bounded by its count
    # (AGENTLOG_MAX_QUEUE). Unbounded it would grow by some 30 MB.
    "100k-events": (100_000, 100, 2_048, {"AGENTLOG_MAX_QUEUE": "2000"}, 10 * 2**20),
    # 2,000 events of 100 KB (200 MB) into a 3 MB/s disk, with the defaults: bounded
    # by bytes (64 MiB).
    "200MB-default": (2_000, 100_000, 65_536, {}, 110 * 2**20),
}


@pytest.mark.parametrize("case", list(BACKPRESSURE_CASES))
def test_slow_writer_keeps_memory_bounded_and_counts_drops(run: Any, case: str) -> None:
    """B11: a 3 MB/s disk under a fast producer: the backlog stops at its bound.

    The drop policy under test (``_journal`` docstring): once the unwritten backlog holds
    ``AGENTLOG_MAX_QUEUE`` events (100,000) or 64 MiB, new events are refused (the
    newest dropped, as Sentry does) and counted; the first drop is warned about once;
    the kept events stay in order, and writing resumes when the disk catches up.
    """
    calls, size, chunk, env, cap = BACKPRESSURE_CASES[case]
    r = run(SLOW_WRITER_HOST, timeout=120, args=[str(calls), str(size), str(chunk)], **env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "done\n"
    assert r.host_stderr() == ""
    probe = json.loads((r.logs.parent / "probe.json").read_text())
    # Unbounded, the backlog would hold nearly everything produced.
    assert probe["grown"] < cap, probe
    (warning,) = [ln for ln in r.stderr.splitlines() if "faster than the disk" in ln]
    assert "dropped and counted" in warning
    doc = r.doc()
    assert doc["final_status"] == "completed"
    kept = [x["i"] for x in _interactions(doc)]
    dropped = doc["metadata"]["totals"]["dropped_events"]
    assert dropped > calls // 2, dropped  # the slow disk takes far less meanwhile
    assert kept[0] == -1 and kept == sorted(set(kept)), "each kept event once, in order"
    assert len(kept) + dropped == calls + 1, "every event is either kept or counted"
    assert f"{dropped:,} dropped events" in r.stderr
    assert not list(r.logs.glob("*.jsonl"))
    _figures.add("backpressure", events=calls + 1, kept=len(kept), dropped=dropped)
    _figures.peak("backpressure", **{f"peak_rss_growth_mb_{case}": probe["grown"] / 2**20})
