"""Where-we-are lives in contextvars: asyncio tasks never mix, and work handed to
threads keeps its caller's iteration and agent (DESIGN "Context"; TESTPLAN B8).

Covers B8: 50 interleaved asyncio tasks, ``Thread.start``, executor submits and ``to_thread``:
    each event lands in its caller's iteration, or a thread's own automatic one, never lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import agentlog
from agentlog import _context, api
from agentlog.testing import Captured, capture
from helpers import load_document

TASKS = 50
ROUNDS = 3


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Every test leaves verbosity and the installed hooks as it found them."""
    verbosity = api.RECORDER.verbosity
    yield
    agentlog.set_logging(True, verbosity=verbosity)


def owners(logs: Captured) -> dict[int, int]:
    """interaction id -> iteration id, from the captured starts."""
    return {e["ix"]: e["it"] for e in logs.interactions}


# -- asyncio: concurrent tasks never mix ------------------------------------------------
def test_fifty_concurrent_tasks_each_keep_their_own_iteration(tmp_path: Path) -> None:
    """50 interleaved tasks: every interaction and action lands in its own task's iteration."""

    @agentlog.tool
    async def fetch(task: int, step: int) -> str:
        await asyncio.sleep(0)
        return f"{task}:{step}"

    @agentlog.tool("tally")
    def tally(task: int, step: int) -> int:
        return task * 100 + step

    running: set[int] = set()
    overlap = 0

    async def worker(task: int) -> None:
        nonlocal overlap
        with agentlog.iteration(number=10_000 + task):
            for step in range(ROUNDS):
                with agentlog.interaction(f"task{task}", {"task": task, "step": step}) as ix:
                    running.add(task)
                    overlap = max(overlap, len(running))
                    await asyncio.sleep(0)
                    got = await fetch(task, step)
                    await asyncio.sleep(0)
                    tally(task, step)
                    ix.output = got
                    running.discard(task)
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(worker(t) for t in range(TASKS)))

    with capture() as logs:
        asyncio.run(main())
    assert overlap > 1, "the tasks never interleaved: the test proves nothing"

    numbers = {e["it"]: e["number"] for e in logs.of("iteration_start")}
    assert sorted(numbers.values()) == [10_000 + t for t in range(TASKS)]
    it_of = owners(logs)
    for e in logs.interactions:
        task = e["input"]["task"]
        assert e["agent"] == f"task{task}"
        assert numbers[e["it"]] == 10_000 + task
        assert e["parent"] is None
    assert len(logs.actions) == TASKS * ROUNDS * 2
    for action in logs.actions:
        task = action["input"]["task"]
        assert numbers[it_of[action["ix"]]] == 10_000 + task
        owner = next(e for e in logs.interactions if e["ix"] == action["ix"])
        assert owner["input"] == action["input"]  # same task, same step
    assert {e["status"] for e in logs.of("interaction_end")} == {"completed"}

    path = agentlog.save_log(tmp_path / "x.json")
    assert path is not None
    doc = load_document(path)
    mine = {it["iteration_number"]: it for it in doc["iterations"]
            if 10_000 <= it["iteration_number"] < 10_000 + TASKS}
    assert len(mine) == TASKS
    for number, it in mine.items():
        task = number - 10_000
        assert [ix["agent_name"] for ix in it["interactions"]] == [f"task{task}"] * ROUNDS
        for step, ix in enumerate(it["interactions"]):
            assert ix["output_data"] == f"{task}:{step}"
            assert [a["action_name"] for a in ix["actions"]] == ["tool:fetch", "tool:tally"]
            assert ix["actions"][1]["output_data"] == task * 100 + step
    assert _context.current.get() is _context.EMPTY


def test_tasks_started_inside_a_scope_inherit_it_without_leaking_back() -> None:
    """A task created inside an interaction records into it; its own scopes stay its own."""

    async def child(n: int) -> None:
        with agentlog.interaction(f"child{n}", n):
            await asyncio.sleep(0)

    async def main() -> None:
        async with agentlog.iteration(), agentlog.interaction("parent", 0):
            await asyncio.gather(child(1), child(2))
            agentlog.log_interaction("after", 1, 2)

    with capture() as logs:
        asyncio.run(main())
    parent, c1, c2 = logs.of("interaction_start")
    assert c1["parent"] == c2["parent"] == parent["ix"]
    (after,) = logs.of("interaction")
    assert after["parent"] == parent["ix"]  # the children's scopes did not leak back


# -- threads and executors keep the caller's scope ----------------------------------------
class _RunThread(threading.Thread):
    def __init__(self, fn: Callable[[], None]) -> None:
        super().__init__()
        self.fn = fn

    def run(self) -> None:  # overrides run: no target at all
        self.fn()


def _plain_thread(fn: Callable[[], None]) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()


def _thread_subclass(fn: Callable[[], None]) -> None:
    t = _RunThread(fn)
    t.start()
    t.join()


def _executor_submit(fn: Callable[[], None]) -> None:
    with ThreadPoolExecutor(max_workers=2) as ex:
        ex.submit(fn).result()


def _executor_map(fn: Callable[[], None]) -> None:
    with ThreadPoolExecutor(max_workers=2) as ex:
        list(ex.map(lambda _: fn(), range(2)))


def _run_in_executor(fn: Callable[[], None]) -> None:
    async def main() -> None:
        await asyncio.get_running_loop().run_in_executor(None, fn)

    asyncio.run(main())


def _run_in_own_executor(fn: Callable[[], None]) -> None:
    async def main() -> None:
        with ThreadPoolExecutor(max_workers=1) as ex:
            await asyncio.get_running_loop().run_in_executor(ex, fn)

    asyncio.run(main())


def _to_thread(fn: Callable[[], None]) -> None:
    async def main() -> None:
        await asyncio.to_thread(fn)

    asyncio.run(main())


HANDOFFS = {
    "Thread": _plain_thread,
    "Thread-subclass-run": _thread_subclass,
    "Executor.submit": _executor_submit,
    "Executor.map": _executor_map,
    "run_in_executor": _run_in_executor,
    "run_in_executor-own-pool": _run_in_own_executor,
    "to_thread": _to_thread,
}


@pytest.mark.parametrize("handoff", list(HANDOFFS), ids=list(HANDOFFS))
def test_work_handed_to_threads_keeps_iteration_and_agent(handoff: str) -> None:
    """Tools, resources, errors and interactions from the thread belong to the caller."""
    main_thread = threading.get_ident()
    threads: list[int] = []

    @agentlog.tool
    def lookup(q: str) -> str:
        return q

    def work() -> None:
        threads.append(threading.get_ident())
        lookup("in-thread")
        agentlog.add_resource("thread-resource.txt")
        agentlog.log_error("thread-error")
        agentlog.log_interaction("nested", 1, 2)

    @agentlog.agent("boss")
    def boss() -> None:
        HANDOFFS[handoff](work)

    with capture() as logs, agentlog.iteration(number=20_000):
        boss()
    assert threads and main_thread not in threads
    (it_start,) = logs.of("iteration_start")
    boss_ix = next(e for e in logs.interactions if e["agent"] == "boss")
    runs = len(threads)
    assert [a["ix"] for a in logs.actions] == [boss_ix["ix"]] * runs
    nested = logs.of("interaction")
    assert len(nested) == runs
    assert all(e["it"] == it_start["it"] and e["parent"] == boss_ix["ix"] for e in nested)
    assert all("it_number" not in e for e in nested)
    for event in (*logs.resources, *logs.errors):
        assert event["where"]["iteration_number"] == 20_000
        assert event["where"]["agent_name"] == "boss"
    assert len(logs.resources) == len(logs.errors) == runs


@pytest.mark.parametrize("handoff", ["Thread", "Thread-subclass-run", "Executor.submit"])
def test_thread_started_outside_any_scope_gets_its_own_auto_iteration(handoff: str) -> None:
    """Work from a thread started outside any scope records into its own auto iteration."""

    @agentlog.agent("worker")
    def work() -> None:
        agentlog.log_interaction("inner", 1, 2)

    with capture() as logs:
        HANDOFFS[handoff](work)
    (start,) = logs.of("iteration_start")
    assert start["auto"] is True
    worker, inner = logs.interactions
    assert worker["it"] == inner["it"] == start["it"]
    assert inner["parent"] == worker["ix"]


def test_pool_worker_does_not_lend_a_finished_scope_to_later_work() -> None:
    """A pool thread started inside an iteration does not put later, unscoped work in it."""
    with ThreadPoolExecutor(max_workers=1) as ex, capture() as logs:
        with agentlog.iteration():
            ex.submit(agentlog.log_interaction, "inside", 1, 2).result()
        ex.submit(agentlog.log_interaction, "outside", 1, 2).result()
    inside, outside = logs.of("interaction")
    (it_start,) = logs.of("iteration_start")
    assert inside["it"] == it_start["it"]
    assert outside["it"] != it_start["it"]
    assert "it_number" in outside  # a bare call: its own automatic iteration


def test_each_submit_carries_its_own_callers_scope() -> None:
    """One pool serving two iterations attributes each task to the iteration that sent it."""
    with ThreadPoolExecutor(max_workers=1) as ex, capture() as logs:
        for n in (1, 2):
            with agentlog.iteration(number=30_000 + n):
                ex.submit(agentlog.log_interaction, f"from{n}", n, n).result()
    numbers = {e["it"]: e["number"] for e in logs.of("iteration_start")}
    assert [(e["agent"], numbers[e["it"]]) for e in logs.of("interaction")] == [
        ("from1", 30_001), ("from2", 30_002),
    ]


# -- transparency: the host's own ContextVars are untouched -------------------------------
USER_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("host_var", default="unset")


@pytest.mark.parametrize("handoff", ["Thread", "Thread-subclass-run", "Executor.submit"])
def test_host_context_vars_are_not_carried_into_threads(handoff: str) -> None:
    """A host ContextVar set by the caller is not visible in the thread, as without agentlog."""
    seen: list[str] = []
    token = USER_VAR.set("caller")
    try:
        with agentlog.iteration(), agentlog.interaction("boss", 0):
            HANDOFFS[handoff](lambda: seen.append(USER_VAR.get()))
        HANDOFFS[handoff](lambda: seen.append(USER_VAR.get()))
    finally:
        USER_VAR.reset(token)
    assert seen and set(seen) == {"unset"}


def test_to_thread_copies_the_host_context_as_asyncio_does() -> None:
    """``asyncio.to_thread`` still copies the whole context (its own documented behaviour)."""

    async def main() -> str:
        USER_VAR.set("caller")
        with agentlog.iteration():
            return await asyncio.to_thread(USER_VAR.get)

    assert asyncio.run(main()) == "caller"


def test_thread_scope_does_not_leak_into_the_starting_thread() -> None:
    """Scopes opened in a thread stay in it; the caller's scope is unchanged after join."""
    before = _context.current.get()

    def work() -> None:
        with agentlog.iteration(), agentlog.interaction("t", 1):
            pass

    with agentlog.iteration():
        inside = _context.current.get()
        _plain_thread(work)
        assert _context.current.get() is inside
    assert _context.current.get() is before


# -- set_logging(False) uninstalls the thread patches -------------------------------------
def test_set_logging_false_uninstalls_and_true_reinstalls_thread_patches() -> None:
    """Off: ``Thread.start``/``submit`` are the originals again; on: patched again."""
    patched_start = threading.Thread.start
    patched_submit = concurrent.futures.ThreadPoolExecutor.submit
    assert getattr(patched_start, "__agentlog_patched__", False)
    assert getattr(patched_submit, "__agentlog_patched__", False)
    original_start = patched_start.__wrapped__  # type: ignore[attr-defined]
    original_submit = patched_submit.__wrapped__  # type: ignore[attr-defined]
    assert original_start.__module__ == "threading"

    agentlog.set_logging(False)
    assert threading.Thread.start is original_start
    assert concurrent.futures.ThreadPoolExecutor.submit is original_submit
    assert not getattr(threading.Thread._bootstrap_inner, "__agentlog_patched__", False)
    ran: list[bool] = []
    _plain_thread(lambda: ran.append(True))  # threads still work unpatched
    assert ran == [True]

    agentlog.set_logging(True)
    assert threading.Thread.start is not original_start
    assert threading.Thread.start.__wrapped__ is original_start  # type: ignore[attr-defined]
    assert getattr(threading.Thread._bootstrap_inner, "__agentlog_patched__", False)
    assert concurrent.futures.ThreadPoolExecutor.submit.__wrapped__ is original_submit  # type: ignore[attr-defined]
    agentlog.set_logging(True)  # idempotent: not wrapped twice
    assert threading.Thread.start.__wrapped__ is original_start  # type: ignore[attr-defined]

    with capture() as logs, agentlog.iteration():
        _plain_thread(lambda: agentlog.log_interaction("again", 1, 2))
    (start,) = logs.of("iteration_start")
    assert logs.of("interaction")[0]["it"] == start["it"]


# -- exceptions crossing threads are logged once -----------------------------------------
def test_exception_through_a_thread_is_logged_once(run: Any) -> None:
    """A failure escaping scopes in a thread, then its excepthook, is one error_log entry."""
    result = run(
        """
        import threading
        from concurrent.futures import ThreadPoolExecutor
        import agentlog

        class Boom(Exception):
            pass

        @agentlog.tool
        def explode(n):
            raise Boom(f"boom {n}")

        @agentlog.agent("worker")
        def work(n):
            explode(n)

        with agentlog.iteration():
            with agentlog.interaction("boss", 0):
                t = threading.Thread(target=work, args=(1,))
                t.start()
                t.join()
                with ThreadPoolExecutor(1) as ex:
                    try:
                        ex.submit(work, 2).result()
                    except Boom:
                        pass
        t = threading.Thread(target=work, args=(3,))
        t.start()
        t.join()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.host_stderr().count("Boom: boom") == 2  # threading's own two reports
    doc = result.doc()
    messages = sorted(e["error"] for e in doc["error_log"])
    assert messages == ["boom 1", "boom 2", "boom 3"]
