"""Forked and spawned children: os.fork, multiprocessing, ProcessPoolExecutor.

The policy under test: a child gets a run of its own (``parent_run_id`` = the parent's
run id after a fork); a child that recorded nothing leaves no document; the parent's
document is never written or finalised by a child and holds only the parent's events;
no event is in two documents; a child never deadlocks, even when it was forked while
another thread was inside agentlog. Every host runs in a fresh interpreter. The counts
are printed after the module and kept in ``/tmp/agentlog-figures/fork.json``.

Covers B7: ``os.fork()`` children leaving by ``sys.exit`` (the parent's atexit runs in
them) or ``os._exit``, after the parent imported agentlog and recorded (gunicorn-like
preload): the parent's document is intact (PID guard), each recording child writes its
own, a silent child writes nothing; multiprocessing with fork, spawn and
forkserver, and ProcessPoolExecutor on each: every task's event in exactly one document;
500 forks, each while another thread holds one of agentlog's six locks, and 60 forks
while a thread hammers ``log_interaction``: no child exceeds its 5 s timeout, no event
is duplicated across parent and children.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Result, script_env
from reliability_scripts import _figures


@pytest.fixture(scope="module", autouse=True)
def _figures_after_module(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from _figures.show(request, "fork")


def _agents(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """(agent_name, input_data) of every interaction in the document, in order."""
    return [
        (ix["agent_name"], ix["input_data"])
        for it in doc["iterations"]
        for ix in it["interactions"]
    ]


def _split(r: Result, parent_pid: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The parent's document and every other document in the log folder."""
    docs = r.docs()
    parents = [d for d in docs if d["metadata"]["pid"] == parent_pid]
    assert len(parents) == 1, f"expected one parent document, found {len(parents)}: {r.stderr}"
    return parents[0], [d for d in docs if d["metadata"]["pid"] != parent_pid]


def _exit_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("agentlog: ")]


def _no_event_twice(docs: list[dict[str, Any]]) -> None:
    seen = [event for doc in docs for event in _agents(doc)]
    assert len(seen) == len({json.dumps(e, sort_keys=True) for e in seen}), seen


# -- os.fork -------------------------------------------------------------------------------
FORK_THEN_EXIT = """\
import json, os, sys, time
{preamble}
import agentlog

agentlog.log_interaction("parent", "before fork", "x")
{before_fork}
pid = os.fork()
if pid == 0:
    agentlog.log_interaction("child", "in the child", "x")
    sys.exit(0)  # runs the atexit handlers the child inherited from the parent
_, status = os.waitpid(pid, 0)
agentlog.log_interaction("parent", "after fork", "x")
print(json.dumps({{"pid": os.getpid(), "child": pid, "code": os.waitstatus_to_exitcode(status)}}))
"""


@pytest.mark.parametrize(
    "before_fork",
    ["", "time.sleep(0.3)  # flushed", "agentlog.iteration().__enter__()  # inside an iteration"],
    ids=["pending", "flushed", "in-iteration"],
)
@pytest.mark.parametrize("preamble", ["", "import multiprocessing.util"],
                         ids=["plain", "mp-imported"])
def test_fork_child_exit_leaves_the_parent_intact(run: Any, before_fork: str,
                                                 preamble: str) -> None:
    """A fork child that records and calls ``sys.exit``: two documents, no event in both."""
    r = run(FORK_THEN_EXIT.format(preamble=preamble, before_fork=before_fork))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["code"] == 0
    parent, others = _split(r, info["pid"])
    assert parent["final_status"] == "completed"
    assert parent["metadata"]["parent_run_id"] is None
    assert _agents(parent) == [("parent", "before fork"), ("parent", "after fork")]
    (child,) = others
    assert child["metadata"]["pid"] == info["child"]
    assert child["metadata"]["parent_run_id"] == parent["metadata"]["run_id"]
    assert child["metadata"]["run_id"] != parent["metadata"]["run_id"]
    assert child["final_status"] == "completed"
    assert _agents(child) == [("child", "in the child")]
    _no_event_twice([parent, child])
    assert not list(r.logs.glob("*.jsonl"))
    assert len(_exit_lines(r.stderr)) == 2, r.stderr  # one per process, never twice


def test_fork_child_whose_only_records_are_llm_calls_keeps_them(run: Any) -> None:
    """LLM records are held back before the journal; a child that made only calls and
    left by ``sys.exit`` still writes its document with them."""
    r = run(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import agentlog
        from fake_llm import FakeLLM, openai_client

        srv = FakeLLM().start()  # its thread lives in the parent only: the child leaves it be
        client = openai_client(srv)
        pid = os.fork()
        if pid == 0:
            client.chat.completions.create(model="gpt-4o-mini",
                                           messages=[{{"role": "user", "content": "hi"}}])
            sys.exit(0)
        os.waitpid(pid, 0)
        srv.stop()
        print(json.dumps({{"pid": os.getpid()}}))
        """
    )
    assert r.returncode == 0, r.stderr
    _, children = _split(r, json.loads(r.stdout)["pid"])
    (child,) = children
    assert child["metadata"]["totals"]["llm_calls"] == 1
    assert child["metadata"]["parent_run_id"] is not None


@pytest.mark.parametrize("leave", ["sys.exit(0)", "os._exit(0)"])
def test_fork_child_that_records_nothing_writes_nothing(run: Any, leave: str) -> None:
    """A fork child that records nothing leaves no document and no journal."""
    r = run(
        f"""
        import json, os, sys, time
        import agentlog

        agentlog.log_interaction("parent", "before fork", "x")
        pid = os.fork()
        if pid == 0:
            time.sleep(0.2)  # long enough for a flusher to write, had anything been recorded
            {leave}
        os.waitpid(pid, 0)
        print(json.dumps({{"pid": os.getpid()}}))
        """
    )
    assert r.returncode == 0, r.stderr
    parent, others = _split(r, json.loads(r.stdout)["pid"])
    assert others == []
    assert _agents(parent) == [("parent", "before fork")]
    assert sorted(p.suffix for p in r.logs.iterdir()) == [".json"]
    assert len(_exit_lines(r.stderr)) == 1


def test_fork_child_killed_by_os_exit_is_recovered_later(run: Any, tmp_path: Path) -> None:
    """A fork child that records then dies by ``os._exit`` leaves a journal: recovered, crashed."""
    r = run(
        """
        import json, os
        import agentlog

        agentlog.log_interaction("parent", "before fork", "x")
        pid = os.fork()
        if pid == 0:
            with agentlog.iteration():  # its end flushes the child's journal
                agentlog.log_interaction("child", "in the child", "x")
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": os.getpid(), "child": pid,
                          "code": os.waitstatus_to_exitcode(status)}))
        """
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["code"] == 1
    (journal,) = r.logs.glob("*.jsonl")
    recovered = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(r.logs)],
        env=script_env(tmp_path / "elsewhere"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert recovered.returncode == 0, recovered.stderr
    assert not journal.exists()
    parent, others = _split(r, info["pid"])
    assert parent["final_status"] == "completed"
    assert _agents(parent) == [("parent", "before fork")]
    (child,) = others
    assert child["final_status"] == "crashed"
    assert child["metadata"]["pid"] == info["child"]
    assert child["metadata"]["parent_run_id"] == parent["metadata"]["run_id"]
    assert _agents(child) == [("child", "in the child")]


# -- multiprocessing -------------------------------------------------------------------------
MP_HOST = """\
import json, multiprocessing, os, sys
import agentlog


def work(i):
    agentlog.log_interaction("worker", i, "done")
    return os.getpid()


def idle():
    pass


if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    agentlog.log_interaction("parent", "before", "x")
    procs = [ctx.Process(target=work, args=(i,)) for i in range(3)]
    procs.append(ctx.Process(target=idle))  # records nothing: leaves nothing
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    agentlog.log_interaction("parent", "after", "x")
    print(json.dumps({"pid": os.getpid(), "codes": [p.exitcode for p in procs]}))
"""

POOL_HOST = """\
import json, multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
import agentlog


def work(i):
    agentlog.log_interaction("worker", i, "done")
    return os.getpid()


if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    agentlog.log_interaction("parent", "before", "x")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        pids = list(pool.map(work, range(8)))
    agentlog.log_interaction("parent", "after", "x")
    print(json.dumps({"pid": os.getpid(), "workers": sorted(set(pids))}))
"""

START_METHODS = ["fork", "spawn", "forkserver"]


def _check_workers(r: Result, parent_pid: int, method: str, tasks: int) -> list[dict[str, Any]]:
    parent, others = _split(r, parent_pid)
    assert parent["final_status"] == "completed"
    assert _agents(parent) == [("parent", "before"), ("parent", "after")]
    worker_events = sorted(i for doc in others for _, i in _agents(doc))
    assert worker_events == list(range(tasks)), "a worker's events are missing or doubled"
    _no_event_twice([parent, *others])
    for doc in others:
        assert doc["final_status"] == "completed"
        assert all(agent == "worker" for agent, _ in _agents(doc))
        if method == "fork":
            assert doc["metadata"]["parent_run_id"] == parent["metadata"]["run_id"]
        elif method == "spawn":
            assert doc["metadata"]["parent_run_id"] is None  # a fresh interpreter's own run
        # forkserver: no claim; 3.11 imports agentlog in each child after its fork.
    assert not list(r.logs.glob("*.jsonl")), "a worker left a journal instead of a document"
    return others


@pytest.mark.parametrize("method", START_METHODS)
def test_multiprocessing_process(run: Any, method: str) -> None:
    """``multiprocessing.Process``: the parent intact, each worker's event in one document."""
    r = run(MP_HOST, args=[method])
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["codes"] == [0, 0, 0, 0]
    workers = _check_workers(r, info["pid"], method, 3)
    assert len(workers) == 3  # the idle child wrote nothing
    assert "Traceback" not in r.stderr
    _figures.add("fork", **{f"mp_{method}_children": 4})


@pytest.mark.parametrize("method", START_METHODS)
def test_process_pool_executor(run: Any, method: str) -> None:
    """``ProcessPoolExecutor``: the parent intact, every task's event in exactly one document."""
    r = run(POOL_HOST, args=[method])
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    workers = _check_workers(r, info["pid"], method, 8)
    assert sorted(d["metadata"]["pid"] for d in workers) == info["workers"]
    assert "Traceback" not in r.stderr
    _figures.add("fork", **{f"pool_{method}_tasks": 8})


# -- forks while another thread is inside agentlog -------------------------------------------
HAMMER = """\
import json, os, signal, sys, threading, time
sys.setswitchinterval(1e-4)  # switch threads often: forks land inside agentlog's code
import agentlog

stop = threading.Event()
count = [0]


def hammer():
    while not stop.is_set():
        agentlog.log_interaction("hammer", count[0], "x")
        count[0] += 1
        if count[0] % 4 == 0:
            time.sleep(0.0005)


thread = threading.Thread(target=hammer)
thread.start()
while count[0] < 50:
    time.sleep(0.001)
timeouts, codes = [], []
for n in range({forks}):
    pid = os.fork()
    if pid == 0:
        agentlog.log_interaction("child", n, "x")
        if n % 2:
            os._exit(0)
        sys.exit(0)
    deadline = time.monotonic() + 5
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            codes.append(os.waitstatus_to_exitcode(status))
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            timeouts.append(n)
            break
        time.sleep(0.001)
stop.set()
thread.join()
print(json.dumps({{"pid": os.getpid(), "timeouts": timeouts, "codes": sorted(set(codes)),
                  "hammered": count[0]}}))
"""


def test_fork_while_another_thread_records(run: Any) -> None:
    """B7: 60 forks while a thread hammers ``log_interaction``: no child hangs past 5 s."""
    forks = 60
    r = run(HAMMER.format(forks=forks), timeout=300)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["timeouts"] == [], f"children deadlocked: {info['timeouts']}"
    assert info["codes"] == [0]
    parent, others = _split(r, info["pid"])
    assert parent["final_status"] == "completed"
    hammered = [i for agent, i in _agents(parent) if agent == "hammer"]
    assert hammered == list(range(info["hammered"])), "the parent lost or doubled events"
    assert all(agent == "hammer" for agent, _ in _agents(parent))
    # The children that left through sys.exit wrote their own documents, one event each.
    children = [doc for doc in others if doc["final_status"] == "completed"]
    assert sorted(i for doc in children for _, i in _agents(doc)) == list(range(0, forks, 2))
    for doc in children:
        assert _agents(doc)[0][0] == "child" and len(_agents(doc)) == 1
        assert doc["metadata"]["parent_run_id"] == parent["metadata"]["run_id"]
    _figures.add("fork", forks_while_recording=forks)


LOCKS = {
    "guard": "agentlog._guard._lock",
    "redact": "agentlog._redact._lock",
    "imports": "agentlog._imports._lock",
    "run": "agentlog.api.RECORDER.run.lock",
}


@pytest.mark.parametrize("lock", list(LOCKS))
def test_fork_while_a_thread_holds_an_agentlog_lock(run: Any, lock: str) -> None:
    """B7: a child forked while another thread holds one of agentlog's locks still finishes."""
    r = run(
        f"""
        import json, os, signal, sys, threading, time
        import agentlog
        import agentlog._guard, agentlog._imports, agentlog._redact

        held, release = threading.Event(), threading.Event()

        def hold():
            with {LOCKS[lock]}:  # as if this thread were inside agentlog at the fork
                held.set()
                release.wait()

        thread = threading.Thread(target=hold)
        thread.start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            # The child's first record: the regex of secrets is built here, not before.
            agentlog.log_interaction("child", "in the child", "x")
            agentlog.log_error(ValueError("child error"))
            from concurrent.futures import ThreadPoolExecutor  # an import agentlog hooks
            sys.exit(0)
        deadline = time.monotonic() + 5
        while not os.waitpid(pid, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                print("deadlocked")
                break
            time.sleep(0.01)
        release.set()
        thread.join()
        print(json.dumps({{"pid": os.getpid()}}))
        """
    )
    assert r.returncode == 0, r.stderr
    assert "deadlocked" not in r.stdout
    _, others = _split(r, json.loads(r.stdout)["pid"])
    (child,) = others
    assert _agents(child) == [("child", "in the child")]
    assert [e["error"] for e in child["error_log"]] == ["child error"]




FORK_WHILE_LOCKED = """\
import json, os, signal, sys, threading, time
import agentlog
import agentlog._guard, agentlog._imports, agentlog._redact, agentlog.api

sys.setswitchinterval(1e-4)  # quick hand-offs between the holder and the forking thread
rec = agentlog.api.RECORDER
agentlog.log_interaction("parent", "before", "x")
LOCKS = [
    lambda: agentlog._guard._lock,
    lambda: agentlog._redact._lock,
    lambda: agentlog._imports._lock,
    lambda: rec.run.lock,
    lambda: rec.run.writer.lock,
    lambda: rec.run.writer.write_lock,
]
held, release, stop = threading.Event(), threading.Event(), threading.Event()
turn = [0]


def holder():  # holds one of agentlog's locks, a different one at each fork
    while not stop.is_set():
        with LOCKS[turn[0] % len(LOCKS)]():
            held.set()
            release.wait()
            release.clear()


thread = threading.Thread(target=holder)
thread.start()
timeouts, codes = [], {{}}
for n in range({forks}):
    held.wait()
    held.clear()
    pid = os.fork()
    if pid == 0:
        agentlog.log_interaction("child", n, "x")
        agentlog.log_error(ValueError(f"child {{n}}"))
        if n % 50 == 0:
            sys.exit(0)  # the whole exit path, the parent's inherited atexit included
        os._exit(0)
    turn[0] = n + 1
    release.set()
    deadline = time.monotonic() + 5
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            codes[code] = codes.get(code, 0) + 1
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            timeouts.append(n)
            break
        time.sleep(0.0005)
stop.set()
release.set()
thread.join()
agentlog.log_interaction("parent", "after", "x")
print(json.dumps({{"pid": os.getpid(), "timeouts": timeouts, "codes": codes}}))
"""


def test_500_forks_while_another_thread_holds_an_agentlog_lock(run: Any, tmp_path: Path) -> None:
    """B7: 500 forks, each while a thread holds one of six agentlog locks: no child hangs.

    Each child records an interaction and an error, then leaves by ``os._exit`` (every
    50th by ``sys.exit``, writing its own document); each must finish within 5 s.
    """
    forks = 500
    # A long flush interval: a child gone by ``os._exit`` leaves no journal behind.
    r = run(FORK_WHILE_LOCKED.format(forks=forks), timeout=240, AGENTLOG_FLUSH_INTERVAL="5")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["timeouts"] == [], f"children deadlocked: {info['timeouts']}"
    assert info["codes"] == {"0": forks}
    if list(r.logs.glob("*.jsonl")):  # a child's flusher was quicker than its exit
        subprocess.run(
            [sys.executable, "-m", "agentlog", "recover", "--dir", str(r.logs)],
            env=script_env(tmp_path / "elsewhere"), capture_output=True, timeout=60, check=True,
        )
    parent, others = _split(r, info["pid"])
    assert parent["final_status"] == "completed"
    assert _agents(parent) == [("parent", "before"), ("parent", "after")]
    assert parent["error_log"] == []
    exited = [doc for doc in others if doc["final_status"] == "completed"]
    assert sorted(i for doc in exited for _, i in _agents(doc)) == list(range(0, forks, 50))
    for doc in others:
        ((agent, n),) = _agents(doc)
        assert agent == "child"
        assert [e["error"] for e in doc["error_log"]] == [f"child {n}"]
        assert doc["metadata"]["parent_run_id"] == parent["metadata"]["run_id"]
    _no_event_twice([parent, *others])
    _figures.add("fork", forks_with_lock_held=forks, child_timeouts=len(info["timeouts"]),
                 child_documents=len(others))
