"""The process lifecycle: statuses, exit codes, excepthooks, signals, settings, recovery.

The lifecycle promises of the design: every final status, hook chaining, the
``AGENTLOG=0`` kill switch, what ``import agentlog`` imports, the exit line, import
order and recovery on import. Every test runs its host program in a fresh interpreter;
the differential oracle runs the same script again with ``AGENTLOG=0`` and compares
stdout, stderr and the exit code.

Covers A14: normal exit, ``sys.exit(3)``, an uncaught exception, KeyboardInterrupt and
SIGINT keep their exit code (0, 3, 1, -2) and stdout; stderr holds only the host's own
lines plus agentlog's one exit line, never "Exception ignored in atexit callback".
Covers B4: SIGTERM/SIGHUP with our handler (chains the user's, restores the default,
re-raises: status -15/-1, document ``terminated``) and with the default disposition
put back (no atexit: the journal, flushed within the interval, recovers ``crashed``).
Covers B5: ``os.fsync`` sleeping 30 s, or the journal's ``os.write`` hanging, at exit:
the exit is delayed at most ``shutdown_timeout`` (default 2 s, and 0.5 s when set);
stderr says so once; the journal is kept with the timeout in error_log and the status,
so recovery writes ``completed`` (or ``crashed`` when the journal's disk hung); a
non-daemon host thread still running after main is waited for and recorded.
Covers B10: ``threading.Thread.start`` raising "can't create new thread at interpreter
shutdown", before and after import: no exception, no hang, each event written to the
journal as it comes, an event logged from an atexit handler still in the document.
"""

from __future__ import annotations

import json
import re
import select
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import Result, documents, load_document, run_script, script_env

OFFSET = re.compile(r"[+-]\d\d:\d\d$")


def _agents(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """(agent_name, input_data) of every interaction in the document, in order."""
    return [
        (ix["agent_name"], ix["input_data"])
        for it in doc["iterations"]
        for ix in it["interactions"]
    ]


def _exit_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("agentlog: ")]


def _same_as_without_agentlog(tmp_path: Path, source: str, result: Result) -> None:
    """The differential oracle: the same script with ``AGENTLOG=0`` behaves identically."""
    plain = run_script(tmp_path, source, AGENTLOG="0")
    assert result.stdout == plain.stdout
    assert result.host_stderr() == plain.stderr
    assert result.returncode == plain.returncode
    assert "Exception ignored" not in result.stderr


class _Child:
    """A host started with Popen, for signals sent from outside."""

    def __init__(self, tmp_path: Path, source: str, **extra: str) -> None:
        script = tmp_path / "host.py"
        script.write_text(textwrap.dedent(source))
        self.logs = tmp_path / "logs"
        self.proc = subprocess.Popen(
            [sys.executable, str(script)],
            env=script_env(self.logs, **extra),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )

    def wait_ready(self, timeout: float = 20) -> None:
        """Block until the host prints ``ready`` (after recording what it records)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.finish(kill=True)
            pytest.fail("the host never said it was ready")
        line = self.proc.stdout.readline()
        if line != "ready\n":
            _, err = self.finish(kill=True)
            pytest.fail(f"expected 'ready', got {line!r}; stderr: {err}")

    def finish(self, kill: bool = False, timeout: float = 20) -> tuple[str, str]:
        if kill:
            self.proc.kill()
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"the host did not exit within {timeout} s: {err}")
        return out, err


# -- every final status -----------------------------------------------------------------
def test_normal_end_is_completed(run: Any) -> None:
    """A script that simply ends writes one document with final_status completed, exit 0."""
    r = run(
        """
        import agentlog
        agentlog.log_interaction("planner", "plan", "planned")
        print("done")
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "done\n"
    doc = r.doc()
    assert doc["final_status"] == "completed"
    assert _agents(doc) == [("planner", "plan")]
    assert r.host_stderr() == ""
    assert not list(r.logs.glob("*.jsonl")), "the journal outlived the document"


def test_uncaught_exception_is_failed(run: Any) -> None:
    """An uncaught exception: status failed, exit code 1, its traceback in error_log."""
    r = run(
        """
        import agentlog
        agentlog.log_interaction("planner", "plan", "planned")
        raise ValueError("boom in the host")
        """
    )
    assert r.returncode == 1
    doc = r.doc()
    assert doc["final_status"] == "failed"
    assert doc["metadata"]["exit_code"] == 1
    uncaught = [e for e in doc["error_log"] if e["source"] == "uncaught"]
    assert len(uncaught) == 1
    assert uncaught[0]["type"] == "ValueError"
    assert uncaught[0]["error"] == "boom in the host"
    assert 'raise ValueError("boom in the host")' in uncaught[0]["traceback"]
    assert r.host_stderr().startswith("Traceback (most recent call last):")
    assert r.host_stderr().endswith("ValueError: boom in the host\n")


def test_uncaught_keyboard_interrupt_is_interrupted(run: Any) -> None:
    """An uncaught KeyboardInterrupt: status interrupted, the process dies of SIGINT (-2)."""
    r = run(
        """
        import agentlog
        agentlog.log_interaction("planner", "plan", "planned")
        raise KeyboardInterrupt
        """
    )
    assert r.returncode == -signal.SIGINT
    doc = r.doc()
    assert doc["final_status"] == "interrupted"
    assert doc["metadata"]["exit_code"] == -signal.SIGINT
    assert _agents(doc) == [("planner", "plan")]


@pytest.mark.parametrize("wait", ["stdin", "sleep"])
def test_sigterm_from_the_parent_is_terminated(tmp_path: Path, wait: str) -> None:
    """SIGTERM sent from outside: exit status -15, a document with final_status terminated."""
    waiting = "sys.stdin.read()" if wait == "stdin" else "time.sleep(60)"
    child = _Child(
        tmp_path,
        f"""
        import sys, time
        import agentlog
        agentlog.log_interaction("planner", "plan", "planned")
        print("ready", flush=True)
        {waiting}
        print("never reached", flush=True)
        """,
    )
    child.wait_ready()
    child.proc.send_signal(signal.SIGTERM)
    out, err = child.finish()
    assert child.proc.returncode == -signal.SIGTERM
    assert out == ""
    doc = load_document(_only_document(child.logs))
    assert doc["final_status"] == "terminated"
    assert doc["metadata"]["exit_code"] == -signal.SIGTERM
    assert _agents(doc) == [("planner", "plan")]
    assert len(_exit_lines(err)) == 1


def test_user_status_from_finalize_workflow(run: Any) -> None:
    """``finalize_workflow("success")`` ends the run with the user's own status."""
    r = run(
        """
        import agentlog
        agentlog.log_interaction("planner", "plan", "planned")
        agentlog.finalize_workflow("success")
        """
    )
    assert r.returncode == 0
    doc = r.doc()
    assert doc["final_status"] == "success"
    assert _agents(doc) == [("planner", "plan")]
    assert len(_exit_lines(r.stderr)) == 1


def _only_document(logs: Path) -> Path:
    paths = sorted(logs.glob("*.json"))
    assert len(paths) == 1, f"expected one document in {logs}, found {paths}"
    return paths[0]


# -- A14: exit noise ---------------------------------------------------------------------
EXIT_PATHS = {
    "normal": ("print('bye')", 0),
    "sys.exit(3)": ("print('bye'); sys.exit(3)", 3),
    "exception": ("print('bye'); raise RuntimeError('host failure')", 1),
    "KeyboardInterrupt": ("print('bye'); raise KeyboardInterrupt", -signal.SIGINT),
    "SIGINT": ("print('bye', flush=True); os.kill(os.getpid(), signal.SIGINT); time.sleep(30)",
               -signal.SIGINT),
    # Shown by a direct call to the hook, then the program ends normally: exit 0.
    "KeyboardInterrupt shown": ("try:\n    raise KeyboardInterrupt\nexcept KeyboardInterrupt:\n"
                                "    sys.excepthook(*sys.exc_info())\nprint('bye')", 0),
}


@pytest.mark.parametrize("path", list(EXIT_PATHS))
def test_exit_path_unchanged(tmp_path: Path, path: str) -> None:
    """A14: exit code, stdout and the host's stderr are byte-identical to a run without us."""
    ending, code = EXIT_PATHS[path]
    source = f"""\
import os, signal, sys, time
import agentlog
agentlog.log_interaction("planner", "plan", "planned")
sys.stderr.write("host's own line\\n")
{ending}
"""
    r = run_script(tmp_path, source)
    assert r.returncode == code
    _same_as_without_agentlog(tmp_path, source, r)
    assert "atexit" not in r.stderr
    assert len(_exit_lines(r.stderr)) == 1
    assert r.doc()["iterations"], "the document lost what was recorded"


# -- chaining: excepthook ------------------------------------------------------------------
USER_EXCEPTHOOK = """\
import sys

def user_hook(exc_type, exc, tb):
    sys.stderr.write(f"user hook saw {exc_type.__name__}: {exc}\\n")
"""


def test_excepthook_installed_before_import_still_runs(tmp_path: Path) -> None:
    """A user excepthook set before ``import agentlog`` is still called, and we still record."""
    source = USER_EXCEPTHOOK + """\
sys.excepthook = user_hook
import agentlog
agentlog.log_interaction("planner", "plan", "planned")
raise ValueError("boom")
"""
    r = run_script(tmp_path, source)
    assert r.returncode == 1
    assert r.host_stderr() == "user hook saw ValueError: boom\n"
    _same_as_without_agentlog(tmp_path, source, r)
    doc = r.doc()
    assert doc["final_status"] == "failed"
    assert [e["type"] for e in doc["error_log"] if e["source"] == "uncaught"] == ["ValueError"]


def test_excepthook_installed_after_import_replaces_ours(tmp_path: Path) -> None:
    """A user excepthook set after the import replaces ours: theirs runs, we miss the error.

    Documented limitation: Python calls only the installed hook, so agentlog cannot see
    the exception; the document is still written at exit, without a ``failed`` status.
    """
    source = USER_EXCEPTHOOK + """\
import agentlog
sys.excepthook = user_hook
agentlog.log_interaction("planner", "plan", "planned")
raise ValueError("boom")
"""
    r = run_script(tmp_path, source)
    assert r.returncode == 1
    assert r.host_stderr() == "user hook saw ValueError: boom\n"
    _same_as_without_agentlog(tmp_path, source, r)
    doc = r.doc()
    assert _agents(doc) == [("planner", "plan")]
    assert not [e for e in doc["error_log"] if e["source"] == "uncaught"]
    assert doc["final_status"] == "completed"


# -- chaining: SIGTERM ---------------------------------------------------------------------
USER_SIGTERM = """\
import os, signal, sys, time

def on_term(signum, frame):
    print("user handler ran", flush=True)
    {action}

signal.signal(signal.SIGTERM, on_term)
import agentlog
agentlog.log_interaction("planner", "before", "x")
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.05)  # the handler runs at the next bytecode boundary
print("still running", flush=True)
agentlog.log_interaction("planner", "after", "x")
"""


def test_user_sigterm_handler_that_returns_keeps_the_run_going(tmp_path: Path) -> None:
    """A SIGTERM handler set before import still runs; when it returns, the run goes on."""
    source = USER_SIGTERM.format(action="pass")
    r = run_script(tmp_path, source)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "user handler ran\nstill running\n"
    _same_as_without_agentlog(tmp_path, source, r)
    doc = r.doc()
    assert doc["final_status"] == "completed"
    assert _agents(doc) == [("planner", "before"), ("planner", "after")]


def test_user_sigterm_handler_that_exits_is_terminated(tmp_path: Path) -> None:
    """A SIGTERM handler set before import that calls ``sys.exit(0)``: exit 0, terminated."""
    source = USER_SIGTERM.format(action="sys.exit(0)")
    r = run_script(tmp_path, source)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "user handler ran\n"
    _same_as_without_agentlog(tmp_path, source, r)
    doc = r.doc()
    assert doc["final_status"] == "terminated"
    assert _agents(doc) == [("planner", "before")]


def test_ignored_sigterm_is_left_alone(tmp_path: Path) -> None:
    """SIGTERM set to SIG_IGN before import stays ignored: the process survives it."""
    source = """\
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
import agentlog
print("still ignored:", signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)
agentlog.log_interaction("planner", "before", "x")
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.05)
print("survived", flush=True)
"""
    r = run_script(tmp_path, source)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "still ignored: True\nsurvived\n"
    _same_as_without_agentlog(tmp_path, source, r)
    assert r.doc()["final_status"] == "completed"


# -- B4: default SIGTERM / SIGHUP ----------------------------------------------------------
RECORD_THEN_WAIT = """\
import sys
import agentlog
for i in range(50):
    agentlog.log_interaction("worker", {"i": i}, f"out {i}")
with agentlog.iteration():
    with agentlog.interaction("planner", "plan") as ix:
        ix.output = "planned"
agentlog.add_resource("data.csv", "file")
agentlog.log_error("a recorded error")
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_default_signal_keeps_everything_recorded(tmp_path: Path, signame: str) -> None:
    """B4: a default SIGTERM/SIGHUP still kills with the same status (-15/-1), nothing lost."""
    signum = getattr(signal, signame)
    child = _Child(tmp_path, RECORD_THEN_WAIT)
    child.wait_ready()
    child.proc.send_signal(signum)
    _, err = child.finish()
    assert child.proc.returncode == -signum
    assert "Traceback" not in err
    doc = load_document(_only_document(child.logs))
    assert doc["final_status"] == "terminated"
    assert doc["metadata"]["exit_code"] == -signum
    agents = _agents(doc)
    assert agents[:50] == [("worker", {"i": i}) for i in range(50)]
    assert agents[50:] == [("planner", "plan")]
    assert [r["resource"] for r in doc["resources_used"]] == ["data.csv"]
    assert [e["error"] for e in doc["error_log"]] == ["a recorded error"]
    assert not list(child.logs.glob("*.jsonl"))


def test_sigterm_without_our_handler_loses_nothing_flushed(tmp_path: Path) -> None:
    """B4: SIGTERM with the default disposition put back (no atexit): the journal recovers."""
    child = _Child(
        tmp_path,
        RECORD_THEN_WAIT.replace(
            'print("ready"',
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
            "time.sleep(0.5)  # ten flush intervals\n"
            'print("ready"',
        ),
    )
    child.wait_ready()
    child.proc.send_signal(signal.SIGTERM)
    child.finish()
    assert child.proc.returncode == -signal.SIGTERM
    assert not list(child.logs.glob("*.json")), "no handler ran, so no document yet"
    recovered = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(child.logs)],
        env=script_env(tmp_path / "elsewhere"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert recovered.returncode == 0, recovered.stderr
    doc = load_document(_only_document(child.logs))
    assert doc["final_status"] == "crashed"
    assert len(_agents(doc)) == 51
    assert [e["error"] for e in doc["error_log"]] == ["a recorded error"]


# -- B5: a slow disk or a hung writer at exit -----------------------------------------------
SLOW_EXIT_HOST = """\
import os, sys, time
import agentlog

for i in range(5):
    agentlog.log_interaction("worker", {{"i": i}}, "ok")
agentlog.log_error("a recorded error")
time.sleep(0.3)  # flushed: the journal holds all of it
{fault}
print("exiting", flush=True)
"""

SLOW_FSYNC = """\
_real_fsync = os.fsync

def _slow_fsync(fd):  # a disk that takes 30 s to sync: the document's fsync hangs
    time.sleep(30)
    return _real_fsync(fd)

os.fsync = _slow_fsync
"""

HUNG_WRITE = """\
_real_write = os.write

def _hung_write(fd, data):  # the journal's disk stops answering: the flusher hangs
    if os.readlink(f"/proc/self/fd/{fd}").endswith(".jsonl"):
        time.sleep(3600)
    return _real_write(fd, data)

os.write = _hung_write
agentlog.log_interaction("worker", {"i": 5}, "ok")  # the flusher takes it, and hangs
time.sleep(0.3)
"""


def _timed_exit(tmp_path: Path, source: str, **env: str) -> tuple[float, str, str, int]:
    """Run the host; seconds from its ``exiting`` line to its end, stdout, stderr, code."""
    child = _Child(tmp_path, source, AGENTLOG_STRICT="0", **env)
    assert child.proc.stdout is not None
    ready, _, _ = select.select([child.proc.stdout], [], [], 30)
    assert ready, "the host never got to its end"
    line = child.proc.stdout.readline()
    started = time.monotonic()
    out, err = child.finish(timeout=60)
    return time.monotonic() - started, line + out, err, child.proc.returncode


@pytest.mark.parametrize(
    ("fault", "timeout"),
    [(SLOW_FSYNC, None), (SLOW_FSYNC, "0.5"), (HUNG_WRITE, None)],
    ids=["slow-fsync", "slow-fsync-timeout-0.5", "hung-writer"],
)
def test_slow_disk_at_exit_delays_it_at_most_shutdown_timeout(
    tmp_path: Path, fault: str, timeout: str | None
) -> None:
    """B5: fsync sleeping 30 s, or a hung journal write: exit within ``shutdown_timeout``."""
    limit = float(timeout or 2.0)  # 2 s is the default of AGENTLOG_SHUTDOWN_TIMEOUT
    env = {"AGENTLOG_SHUTDOWN_TIMEOUT": timeout} if timeout else {}
    source = SLOW_EXIT_HOST.format(fault=fault)
    elapsed, out, err, code = _timed_exit(tmp_path, source, **env)
    # Interpreter teardown on a busy machine gets a little slack; the fault itself is 30 s.
    assert elapsed < limit + 1.0, elapsed
    if timeout:
        assert elapsed > limit * 0.7, elapsed  # the setting is what bounds it
    plain = run_script(tmp_path, source, AGENTLOG="0")
    assert (out, code) == (plain.stdout, plain.returncode) == ("exiting\n", 0)
    (line,) = _exit_lines(err)
    assert "cannot write the document" in line and "shutdown_timeout" in line, err
    assert f"({limit:g} s)" in line
    assert "Traceback" not in err and "Exception ignored" not in err
    logs = tmp_path / "logs"
    assert not list(logs.glob("*.json")), "no document: the disk never let it out"
    recovered = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(logs)],
        env=script_env(tmp_path / "elsewhere"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert recovered.returncode == 0, recovered.stderr
    doc = load_document(_only_document(logs))
    assert sorted(p.name for p in logs.iterdir()) == [_only_document(logs).name]
    assert [x["i"] for _, x in _agents(doc)] == list(range(5))
    errors = [(e["source"], e["error"]) for e in doc["error_log"]]
    assert errors[0] == ("user", "a recorded error")
    if fault is SLOW_FSYNC:
        # Only the document's fsync was slow: the journal took the note and the status.
        assert doc["final_status"] == "completed"
        assert len(errors) == 2 and errors[1][0] == "agentlog:lifecycle.exit"
        assert "shutdown_timeout" in errors[1][1]
    else:
        # The journal's disk hung: what reached it before is kept, the rest is lost.
        assert doc["final_status"] == "crashed"


def test_sigterm_with_a_slow_disk_still_dies_in_time(tmp_path: Path) -> None:
    """B4 + B5: SIGTERM while fsync takes 30 s: status -15 within ``shutdown_timeout``."""
    source = SLOW_EXIT_HOST.format(fault=SLOW_FSYNC).replace(
        'print("exiting", flush=True)', 'print("ready", flush=True)\ntime.sleep(60)'
    )
    child = _Child(tmp_path, source, AGENTLOG_STRICT="0")
    child.wait_ready()
    child.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, err = child.finish(timeout=60)
    assert time.monotonic() - started < 3.0
    assert child.proc.returncode == -signal.SIGTERM
    (line,) = _exit_lines(err)
    assert "shutdown_timeout" in line
    recovered = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(child.logs)],
        env=script_env(tmp_path / "elsewhere"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert recovered.returncode == 0, recovered.stderr
    doc = load_document(_only_document(child.logs))
    assert doc["final_status"] == "terminated"
    assert doc["metadata"]["exit_code"] == -signal.SIGTERM
    assert [x["i"] for _, x in _agents(doc)] == list(range(5))


def test_non_daemon_host_thread_is_waited_for_then_recorded(run: Any) -> None:
    """B5: a host thread still running at the end of main is the host's: its events are kept."""
    r = run(
        """
        import threading, time
        import agentlog

        def late():
            time.sleep(0.5)  # main has ended: Python waits for this thread, and so do we
            agentlog.log_interaction("late", "after main", "x")

        threading.Thread(target=late).start()
        agentlog.log_interaction("main", "in main", "x")
        """
    )
    assert r.returncode == 0, r.stderr
    doc = r.doc()
    assert doc["final_status"] == "completed"
    assert sorted(_agents(doc)) == [("late", "after main"), ("main", "in main")]


# -- B10: no thread can be started (interpreter shutdown) ------------------------------------
REFUSED_THREADS = """\
import atexit, os, sys, threading

def _refuse(self, *args, **kwargs):
    raise RuntimeError("can't create new thread at interpreter shutdown")

if sys.argv[1] == "before":
    threading.Thread.start = _refuse
import agentlog
if sys.argv[1] == "after":
    threading.Thread.start = _refuse

folder = os.environ["AGENTLOG_DIR"]

def on_disk():
    names = [n for n in os.listdir(folder) if n.endswith(".jsonl")]
    with open(os.path.join(folder, names[0]), "rb") as f:
        return f.read().count(b'"ev":"interaction"')

for i in range(3):
    agentlog.log_interaction("worker", {"i": i}, "ok")
    if sys.argv[1] == "before":  # no flusher could ever start: written as it came
        print(i, on_disk(), flush=True)

def at_shutdown():
    agentlog.log_interaction("at exit", {"i": 3}, "ok")

atexit.register(at_shutdown)
print("done", flush=True)
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_threads_refused_at_shutdown(tmp_path: Path, when: str) -> None:
    """B10: ``Thread.start`` raises "can't create new thread": no error, no hang, written inline."""
    r = run_script(tmp_path, REFUSED_THREADS, args=[when], timeout=30)
    assert r.returncode == 0, r.stderr
    if when == "before":
        assert r.stdout == "0 1\n1 2\n2 3\ndone\n"  # each event on disk when the call returned
    else:
        assert r.stdout == "done\n"
    assert r.host_stderr() == ""
    assert len(_exit_lines(r.stderr)) == 1
    doc = r.doc()
    assert doc["final_status"] == "completed"
    assert [x["i"] for _, x in _agents(doc)] == [0, 1, 2, 3]
    assert not list(r.logs.glob("*.jsonl"))


# -- the kill switch -------------------------------------------------------------------------
EVERY_API_CALL = """\
import sys
import agentlog

agentlog.set_logging(True, verbosity=2)
agentlog.start_workflow("switched off")
agentlog.log_interaction("planner", "plan", "planned")
agentlog.add_resource("data.csv", "file")
agentlog.log_error("an error")
agentlog.log_error(ValueError("an exception"))
with agentlog.iteration():
    with agentlog.interaction("planner", "plan") as ix:
        ix.output = "planned"


@agentlog.agent("researcher")
def research(q):
    return q.upper()


@agentlog.tool
def double(x):
    return 2 * x


print(research("q"), double(21))
auto = agentlog.AutoIterationLogger("auto", logs_dir="logs")
auto.log_agent_run("a", 1, 2)
auto.add_resource("r")
auto.log_error("e")
manual = agentlog.AdvancedWorkflowLogger("manual", logs_dir="logs")
manual.start_iteration()
manual.start_interaction("a", 1)
manual.log_action("act", 1, 2)
manual.end_interaction(2)
manual.end_iteration()
print("save:", manual.save(), agentlog.save_log(), agentlog.save_log("logs/explicit.json"))
auto.finalize()
agentlog.finalize_workflow("success")
"""


@pytest.mark.parametrize("switch", [{"AGENTLOG": "0"}, {"AGENTLOG_DISABLED": "1"}])
def test_kill_switch_writes_nothing(run: Any, switch: dict[str, str]) -> None:
    """``AGENTLOG=0`` / ``AGENTLOG_DISABLED=1``: every API call works, nothing is written."""
    r = run(EVERY_API_CALL, **switch)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Q 42\nsave: None None None\n"
    assert r.stderr == ""
    assert not r.logs.exists() or not list(r.logs.iterdir())


# -- import cost, names, times, modes -----------------------------------------------------
FORBIDDEN_AT_IMPORT = (
    "openai", "anthropic", "httpx", "requests", "groq", "mistralai", "litellm", "google.genai",
    "langchain_core", "pydantic", "wrapt", "asyncio", "platformdirs",
)


def test_import_pulls_in_no_sdk(run: Any) -> None:
    """``import agentlog`` imports no LLM SDK, no HTTP client, and no platformdirs."""
    r = run(
        """
        import atexit, json, sys

        # Registered before agentlog's handler, so it runs after it: the whole run.
        atexit.register(lambda: print("at exit:", "platformdirs" in sys.modules))
        before = set(sys.modules)
        import agentlog
        agentlog.log_interaction("planner", "plan", "planned")
        print(json.dumps(sorted(set(sys.modules) - before)))
        """
    )
    assert r.returncode == 0, r.stderr
    first, last = r.stdout.splitlines()
    new = json.loads(first)
    bad = [m for m in new if m.split(".")[0] in FORBIDDEN_AT_IMPORT or m in FORBIDDEN_AT_IMPORT]
    assert not bad, f"import agentlog imported {bad}"
    assert last == "at exit: False", "platformdirs imported although AGENTLOG_DIR was set"


def test_workflow_name_is_the_script_stem(run: Any) -> None:
    """The workflow is named after the script (``host``) and the file name starts with it."""
    r = run("import agentlog\nagentlog.log_interaction('a', 1, 2)\n")
    doc = r.doc()
    assert doc["metadata"]["workflow_name"] == "host"
    assert _only_document(r.logs).name.startswith("host_")


def test_workflow_name_from_the_environment(run: Any) -> None:
    """``AGENTLOG_WORKFLOW`` overrides the script stem, in the document and the file name."""
    r = run("import agentlog\nagentlog.log_interaction('a', 1, 2)\n",
            AGENTLOG_WORKFLOW="nightly eval")
    assert r.doc()["metadata"]["workflow_name"] == "nightly eval"
    assert _only_document(r.logs).name.startswith("nightly_eval_")


def test_timestamps_carry_the_local_offset(run: Any) -> None:
    """Every timestamp in the document is ISO 8601 with the local UTC offset."""
    r = run(
        """
        import agentlog
        agentlog.log_interaction("planner", "plan", "planned")
        with agentlog.iteration():
            with agentlog.interaction("planner", "again") as ix:
                ix.output = "done"
        agentlog.add_resource("data.csv", "file")
        agentlog.log_error("an error")
        """,
        TZ="IST-5:30",
    )
    doc = r.doc()
    stamps = [doc["metadata"]["start_time"], doc["metadata"]["end_time"]]
    for it in doc["iterations"]:
        stamps += [it["start_time"], it["end_time"]]
        stamps += [ix[k] for ix in it["interactions"] for k in ("start_time", "end_time")]
    stamps += [res["first_time"] for res in doc["resources_used"]]
    stamps += [err["timestamp"] for err in doc["error_log"]]
    assert len(stamps) == 12
    assert all(s.endswith("+05:30") for s in stamps), stamps


def test_files_are_private(tmp_path: Path) -> None:
    """Whatever the umask, the log folder is 0700 and the journal and document are 0600."""
    logs = tmp_path / "deep" / "logs"
    r = run_script(
        tmp_path,
        """
        import os, stat, time
        os.umask(0)
        import agentlog
        agentlog.log_interaction("planner", "plan", "planned")
        time.sleep(0.3)  # the flusher creates the journal
        folder = os.environ["AGENTLOG_DIR"]
        print(sorted(oct(stat.S_IMODE(os.stat(os.path.join(folder, n)).st_mode))
                     for n in os.listdir(folder)))
        """,
        env=script_env(logs),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "['0o600']\n"  # the journal, while the run is live
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    (doc,) = logs.glob("*.json")
    assert stat.S_IMODE(doc.stat().st_mode) == 0o600


# -- the exit line ---------------------------------------------------------------------------
@pytest.mark.parametrize("verbosity", ["1", "2", "3"])
@pytest.mark.parametrize("ending", ["", "agentlog.finalize_workflow('done')", "raise SystemExit(2)",
                                    "raise ValueError('x')"])
def test_exactly_one_exit_line(run: Any, verbosity: str, ending: str) -> None:
    """At verbosity >= 1 exactly one ``agentlog: `` stderr line names the existing document."""
    r = run(
        f"""
        import agentlog
        agentlog.log_interaction("planner", "plan", "planned")
        {ending}
        """,
        AGENTLOG_VERBOSITY=verbosity,
    )
    lines = _exit_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    named = Path(lines[0][len("agentlog: "):].split(" (")[0])
    assert named.is_file()
    assert named == _only_document(r.logs)


def test_no_exit_line_at_verbosity_0(run: Any) -> None:
    """At verbosity 0 nothing is said on stderr and nothing is written."""
    r = run(
        """
        import agentlog
        agentlog.log_interaction("planner", "plan", "planned")
        agentlog.log_error("an error")
        """,
        AGENTLOG_VERBOSITY="0",
    )
    assert r.returncode == 0
    assert r.stderr == ""
    assert not r.logs.exists() or not list(r.logs.iterdir())


# -- import order ------------------------------------------------------------------------------
def test_import_in_the_middle_of_a_program(run: Any) -> None:
    """Imported late, after other modules and live threads, agentlog records from all of them."""
    r = run(
        """
        import atexit, json, logging, signal, sys, threading
        from concurrent.futures import ThreadPoolExecutor

        go = threading.Event()
        pool = ThreadPoolExecutor(2)

        def early():
            go.wait()
            import agentlog
            agentlog.log_interaction("early thread", "t", "x")

        thread = threading.Thread(target=early)
        thread.start()

        import agentlog

        def state():
            return (sys.excepthook, threading.excepthook, signal.getsignal(signal.SIGTERM),
                    signal.getsignal(signal.SIGHUP), atexit._ncallbacks(),
                    threading.Thread.start)

        first = state()
        import agentlog  # a second import changes nothing
        import agentlog as again
        from agentlog import log_interaction
        assert again is agentlog and state() == first, (state(), first)

        log_interaction("main", "m", "x")
        go.set()
        thread.join()
        pool.submit(agentlog.log_interaction, "pool", "p", "x").result()
        pool.shutdown()
        print("ok")
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"
    assert sorted(_agents(r.doc())) == [("early thread", "t"), ("main", "m"), ("pool", "p")]
    assert len(_exit_lines(r.stderr)) == 1


def test_double_import_chains_the_excepthook_once(tmp_path: Path) -> None:
    """Two imports do not chain our hook twice: the user hook runs once, one error entry."""
    source = USER_EXCEPTHOOK + """\
sys.excepthook = user_hook
import agentlog
import agentlog
import importlib
importlib.import_module("agentlog")
raise ValueError("boom")
"""
    r = run_script(tmp_path, source)
    assert r.host_stderr() == "user hook saw ValueError: boom\n"
    doc = r.doc()
    assert [e["type"] for e in doc["error_log"]] == ["ValueError"]


# -- recovery ------------------------------------------------------------------------------------
CRASH = """\
import os
import agentlog
for i in range(3):
    agentlog.log_interaction("worker", {"i": i}, "out")
with agentlog.iteration():  # an iteration end flushes the journal
    agentlog.log_interaction("planner", "plan", "planned")
os._exit(1)
"""


def _crash(tmp_path: Path) -> Path:
    r = run_script(tmp_path, CRASH)
    assert r.returncode == 1
    assert not list(r.logs.glob("*.json"))
    assert len(list(r.logs.glob("*.jsonl"))) == 1
    return r.logs


def _check_crashed(doc: dict[str, Any]) -> None:
    assert doc["final_status"] == "crashed"
    assert _agents(doc) == [("worker", {"i": i}) for i in range(3)] + [("planner", "plan")]
    assert doc["metadata"]["recovery"]["dropped_tail_bytes"] == 0


def test_next_import_recovers_a_dead_run(tmp_path: Path) -> None:
    """A run killed by ``os._exit`` is turned into a crashed document by the next import."""
    logs = _crash(tmp_path)
    r = run_script(
        tmp_path,
        """
        import glob, os, time
        import agentlog
        deadline = time.monotonic() + 10
        while glob.glob(os.path.join(os.environ["AGENTLOG_DIR"], "*.jsonl")):
            assert time.monotonic() < deadline, "not recovered"
            time.sleep(0.05)
        """,
        name="next",
    )
    assert r.returncode == 0, r.stderr
    docs = documents(logs)
    crashed = [d for d in docs if d["metadata"]["workflow_name"] == "host"]
    assert len(crashed) == 1
    _check_crashed(crashed[0])
    assert not list(logs.glob("*.jsonl"))
    assert not list(logs.glob(".*"))


def test_cli_recovers_a_dead_run(tmp_path: Path) -> None:
    """``python -m agentlog recover --dir DIR`` turns the journal into a crashed document."""
    logs = _crash(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(logs)],
        env=script_env(tmp_path / "elsewhere"),  # so the CLI's own import recovers nothing
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    path = _only_document(logs)
    assert r.stdout == f"{path}\n"
    assert r.stderr == "recovered 1 run\n"
    _check_crashed(load_document(path))
    assert not list(logs.glob("*.jsonl"))
    assert not (tmp_path / "elsewhere").exists()


MANY_CRASHES = """\
import os
import agentlog
children = []
for n in range({n}):
    pid = os.fork()
    if pid == 0:
        with agentlog.iteration():  # its end flushes the journal
            agentlog.log_interaction("child", n, "out")
        os._exit(1)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
"""


def test_cli_recover_racing_the_import_recovery(tmp_path: Path) -> None:
    """The CLI in its own import's folder: each run recovered once, all of them reported."""
    logs = tmp_path / "logs"
    r = run_script(tmp_path, MANY_CRASHES.format(n=20), AGENTLOG_RECOVER="0")
    assert r.returncode == 0, r.stderr
    journals = sorted(logs.glob("*.jsonl"))
    assert len(journals) == 20
    r = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(logs)],
        env=script_env(logs),  # its import starts a recovery pass of the same folder
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == "recovered 20 runs\n"
    assert sorted(r.stdout.splitlines()) == [str(j.with_suffix(".json")) for j in journals]
    crashed = [d for d in documents(logs) if d["final_status"] == "crashed"]
    assert sorted(i for d in crashed for _, i in _agents(d)) == list(range(20))
    assert not list(logs.glob("*.jsonl"))


WAIT_FOR_RECOVERY = """\
import glob, os, time
import agentlog
deadline = time.monotonic() + 20
while glob.glob(os.path.join(os.environ["AGENTLOG_DIR"], "*.jsonl")):
    assert time.monotonic() < deadline, "not recovered"
    time.sleep(0.05)
"""


def test_concurrent_importers_recover_each_run_once(tmp_path: Path) -> None:
    """Eight processes importing agentlog at once over 30 dead runs: each recovered once."""
    logs = tmp_path / "logs"
    # AGENTLOG_RECOVER=0: the parent's own import must not recover its dead children.
    r = run_script(tmp_path, MANY_CRASHES.format(n=30), AGENTLOG_RECOVER="0")
    assert r.returncode == 0, r.stderr
    assert len(list(logs.glob("*.jsonl"))) == 30
    script = tmp_path / "importer.py"
    script.write_text(WAIT_FOR_RECOVERY)
    procs = [
        subprocess.Popen([sys.executable, str(script)], env=script_env(logs), cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    outcomes = [(p.communicate(timeout=60), p.returncode) for p in procs]
    for (out, err), code in outcomes:
        assert code == 0, err
        assert out == ""
        assert len(_exit_lines(err)) == len(err.splitlines()) == 1, err
    crashed = [d for d in documents(logs) if d["final_status"] == "crashed"]
    assert sorted(i for d in crashed for _, i in _agents(d)) == list(range(30))
    assert not list(logs.glob("*.jsonl"))
    assert not list(logs.glob(".*"))


def test_recovery_never_takes_a_live_runs_journal(tmp_path: Path) -> None:
    """A live run's journal is locked from the moment it appears: recovery leaves it."""
    logs = tmp_path / "logs"
    script = tmp_path / "host.py"
    script.write_text(
        "import sys, agentlog\n"
        "for i in range(200):\n"
        "    agentlog.log_interaction('live', i, i)\n"
        "    agentlog.api.RECORDER.current().writer.flush()\n"
        "    if i == 0:\n"
        "        print('journal', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, str(script)], env=script_env(logs), cwd=tmp_path,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "journal\n"
        for _ in range(5):  # while it is still writing, and once it waits
            r = subprocess.run(
                [sys.executable, "-m", "agentlog", "recover", "--dir", str(logs)],
                env=script_env(tmp_path / "elsewhere"), capture_output=True, text=True,
                timeout=60,
            )
            assert r.returncode == 0, r.stderr
            assert r.stdout == ""
            assert len(list(logs.glob("*.jsonl"))) == 1
            assert not list(logs.glob("*.json"))
        _, err = child.communicate("\n", timeout=60)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0, err
    docs = documents(logs)
    assert len(docs) == 1 and docs[0]["final_status"] == "completed"
    assert docs[0]["metadata"]["totals"]["interactions"] == 200


def test_cli_path_prints_agentlog_dir(tmp_path: Path) -> None:
    """``agentlog path`` prints the folder given by ``AGENTLOG_DIR``."""
    logs = tmp_path / "some" / "logs"
    script = Path(sys.executable).with_name("agentlog")
    commands = [[sys.executable, "-m", "agentlog", "path"]]
    if script.exists():
        commands.append([str(script), "path"])
    for command in commands:
        r = subprocess.run(command, env=script_env(logs), capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{logs}\n"
        assert r.stderr == ""
    assert not logs.exists()

