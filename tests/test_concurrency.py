"""Threads and asyncio tasks: every event kept, every line whole, each in its place.

Each test runs in a child process. Before it exits, the child waits until the flusher
has written everything it expects into the journal and parses every line of it, so the
journal (deleted once the document is written) is checked as well as the document.
The counts are printed after the module (``/tmp/agentlog-figures/concurrency.json``).

Covers B8: 32 threads x 500 calls in a ThreadPoolExecutor (16,000 events), asyncio.gather
of 200 tasks, ``asyncio.to_thread``, raw ``threading.Thread`` (and a subclass), a bare pool
without ``copy_context``, threads started inside an interaction: every JSONL line parses,
seqs are contiguous, every event is present exactly once and attributed to its own
iteration (or to an automatic one, never dropped).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Result, run_script
from reliability_scripts import _figures


@pytest.fixture(scope="module", autouse=True)
def _figures_after_module(request: pytest.FixtureRequest) -> Iterator[None]:
    yield from _figures.show(request, "concurrency")

JOURNAL_CHECK = """
import json as _json, os as _os, time as _time
from pathlib import Path as _Path


def check_journal(expected_interactions):
    folder = _Path(_os.environ["AGENTLOG_DIR"])
    deadline = _time.monotonic() + 60
    while True:
        journals = list(folder.glob("*.jsonl"))
        data = journals[0].read_bytes() if len(journals) == 1 else b""
        lines = data.split(b"\\n")[:-1]  # whole lines only: the flusher may be mid-write
        count = sum(1 for ln in lines if b'"ev":"interaction"' in ln)
        if count >= expected_interactions or _time.monotonic() > deadline:
            break
        _time.sleep(0.05)
    bad, seqs, kinds = 0, [], {}
    for ln in lines:
        try:
            ev = _json.loads(ln)
        except ValueError:
            bad += 1
            continue
        seqs.append(ev["seq"])
        kinds[ev["ev"]] = kinds.get(ev["ev"], 0) + 1
    _Path("journal_check.json").write_text(_json.dumps({
        "journals": len(journals), "lines": len(lines), "bad": bad,
        "seqs_contiguous": seqs == list(range(len(seqs))), "kinds": kinds,
        "first": _json.loads(lines[0])["ev"] if lines else None,
    }))
"""


def _run(tmp_path: Path, body: str) -> tuple[Result, dict[str, Any], dict[str, Any]]:
    result = run_script(tmp_path, JOURNAL_CHECK + body, timeout=120)
    assert result.returncode == 0, result.stderr
    journal = json.loads((tmp_path / "journal_check.json").read_text())
    return result, result.doc(), journal


def _assert_journal(journal: dict[str, Any], interactions: int) -> None:
    assert journal["journals"] == 1
    assert journal["bad"] == 0, "a journal line did not parse: writes were interleaved"
    assert journal["seqs_contiguous"]
    assert journal["first"] == "run"
    assert journal["kinds"].get("interaction") == interactions
    assert "dropped" not in journal["kinds"]


def _inputs(it: dict[str, Any]) -> list[Any]:
    return [ix["input_data"] for ix in it["interactions"]]


def test_32_threads_x_500_calls_each_in_their_own_iteration(tmp_path: Path) -> None:
    """32 pool threads x 500 calls, each thread in its own iteration: 16,000 events in place."""
    body = """
import threading
from concurrent.futures import ThreadPoolExecutor

import agentlog

THREADS, CALLS = 32, 500
barrier = threading.Barrier(THREADS)


def work(t):
    barrier.wait()  # all threads hammer the recorder at once
    with agentlog.iteration():
        for i in range(CALLS):
            agentlog.log_interaction(f"agent-{t}", {"t": t, "i": i}, i * 2)
    return t


with ThreadPoolExecutor(max_workers=THREADS) as pool:
    assert sorted(pool.map(work, range(THREADS))) == list(range(THREADS))
check_journal(THREADS * CALLS)
print("ok")
"""
    result, doc, journal = _run(tmp_path, body)
    assert result.stdout == "ok\n"
    _assert_journal(journal, 16_000)
    totals = doc["metadata"]["totals"]
    assert totals["interactions"] == 16_000
    assert totals["iterations"] == 32
    assert totals["dropped_events"] == 0
    assert sorted(it["iteration_number"] for it in doc["iterations"]) == list(range(1, 33))
    seen_threads = set()
    for it in doc["iterations"]:
        inputs = _inputs(it)
        assert len(inputs) == 500
        (t,) = {x["t"] for x in inputs}
        seen_threads.add(t)
        assert [x["i"] for x in inputs] == list(range(500)), "order within a thread is kept"
        assert {ix["agent_name"] for ix in it["interactions"]} == {f"agent-{t}"}
        assert [ix["output_data"] for ix in it["interactions"]] == [i * 2 for i in range(500)]
        assert it["status"] == "completed" and it["auto"] is False
    assert seen_threads == set(range(32))
    ids = [ix["interaction_id"] for it in doc["iterations"] for ix in it["interactions"]]
    assert len(set(ids)) == 16_000
    _figures.add("concurrency", thread_events=16_000, threads=32)


def test_asyncio_gather_of_200_tasks_each_with_its_own_iteration(tmp_path: Path) -> None:
    """asyncio.gather of 200 tasks, each with its own iteration: 200 iterations x 5, unmixed."""
    body = """
import asyncio

import agentlog


async def task(n):
    async with agentlog.iteration():
        for i in range(5):
            await asyncio.sleep(0)  # let the other 199 tasks run in between
            agentlog.log_interaction("worker", {"task": n, "i": i}, f"done {n}.{i}")
    return n


async def main():
    results = await asyncio.gather(*(task(n) for n in range(200)))
    assert results == list(range(200))


asyncio.run(main())
check_journal(1000)
print("ok")
"""
    result, doc, journal = _run(tmp_path, body)
    assert result.stdout == "ok\n"
    _assert_journal(journal, 1000)
    assert doc["metadata"]["totals"]["interactions"] == 1000
    assert len(doc["iterations"]) == 200
    tasks = set()
    for it in doc["iterations"]:
        inputs = _inputs(it)
        (n,) = {x["task"] for x in inputs}
        tasks.add(n)
        assert [x["i"] for x in inputs] == [0, 1, 2, 3, 4]
        assert it["status"] == "completed"
    assert tasks == set(range(200))
    assert sorted(it["iteration_number"] for it in doc["iterations"]) == list(range(1, 201))
    _figures.add("concurrency", asyncio_tasks=200, asyncio_events=1000)


def test_to_thread_and_raw_threads_are_attributed_and_never_dropped(tmp_path: Path) -> None:
    """to_thread, raw Thread (and a subclass) and a bare pool: every record kept, in place."""
    body = """
import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import agentlog


def log_many(tag, n):
    for i in range(n):
        agentlog.log_interaction("w", {"tag": tag, "i": i}, None)


class Worker(threading.Thread):
    def __init__(self, tag):
        super().__init__()
        self.tag = tag

    def run(self):
        log_many(self.tag, 50)


# Raw threads and a Thread subclass started inside an iteration belong to it.
with agentlog.iteration(number=100):
    threads = [threading.Thread(target=log_many, args=(f"raw-{k}", 50)) for k in range(8)]
    threads += [Worker(f"sub-{k}") for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

# Raw threads started outside any iteration: each call is its own automatic iteration.
threads = [threading.Thread(target=log_many, args=(f"bare-{k}", 25)) for k in range(4)]
for th in threads:
    th.start()
for th in threads:
    th.join()

# A pool used outside any iteration: kept too.
with ThreadPoolExecutor(4) as pool:
    list(pool.map(lambda k: log_many(f"pool-{k}", 25), range(4)))


# asyncio.to_thread inside a task's iteration belongs to that task's iteration.
async def task(n):
    async with agentlog.iteration(number=1000 + n):
        await asyncio.gather(
            asyncio.to_thread(log_many, f"to_thread-{n}-a", 25),
            asyncio.to_thread(log_many, f"to_thread-{n}-b", 25),
        )


async def main():
    await asyncio.gather(*(task(n) for n in range(4)))


asyncio.run(main())
check_journal(400 + 100 + 100 + 200 + 100)
print("ok")
"""
    result, doc, journal = _run(tmp_path, body)
    assert result.stdout == "ok\n"
    total = 400 + 100 + 100 + 100 + 200  # raw, subclass, bare, pool, to_thread
    _assert_journal(journal, total)
    assert doc["metadata"]["totals"]["interactions"] == total

    def tags(it: dict[str, Any]) -> Counter[str]:
        return Counter(x["tag"] for x in _inputs(it))

    by_number = {it["iteration_number"]: it for it in doc["iterations"]}
    assert tags(by_number[100]) == Counter(
        {**{f"raw-{k}": 50 for k in range(8)}, **{f"sub-{k}": 50 for k in range(2)}}
    )
    for n in range(4):
        assert tags(by_number[1000 + n]) == Counter(
            {f"to_thread-{n}-a": 25, f"to_thread-{n}-b": 25}
        )
    # Work started outside every iteration: one automatic iteration per call.
    auto = [it for it in doc["iterations"] if it["auto"]]
    assert len(auto) == 200
    assert all(len(it["interactions"]) == 1 for it in auto)
    assert sum((tags(it) for it in auto), Counter()) == Counter(
        {**{f"bare-{k}": 25 for k in range(4)}, **{f"pool-{k}": 25 for k in range(4)}}
    )
    numbers = [it["iteration_number"] for it in doc["iterations"]]
    assert len(numbers) == len(set(numbers)), "two iterations share a number"
    for tag_count in (tags(it) for it in doc["iterations"]):
        for tag, count in tag_count.items():
            assert count in (1, 25, 50), (tag, count)
    _figures.add("concurrency", to_thread_raw_thread_pool_events=total)


def test_threads_inside_an_interaction_nest_under_it(tmp_path: Path) -> None:
    """Calls from threads started inside an interaction are its children, in its iteration."""
    body = """
import threading

import agentlog

with agentlog.iteration(number=7):
    with agentlog.interaction("planner", "plan") as ix:
        threads = [
            threading.Thread(
                target=lambda k=k: [agentlog.log_interaction("helper", {"k": k, "i": i}, i)
                                    for i in range(20)]
            )
            for k in range(6)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        ix.output = "planned"
check_journal(120)
print("ok")
"""
    result, doc, journal = _run(tmp_path, body)
    assert result.stdout == "ok\n"
    _assert_journal(journal, 120)
    (it,) = doc["iterations"]
    assert it["iteration_number"] == 7
    planner = next(ix for ix in it["interactions"] if ix["agent_name"] == "planner")
    helpers = [ix for ix in it["interactions"] if ix["agent_name"] == "helper"]
    assert len(helpers) == 120
    assert {ix["parent_interaction_id"] for ix in helpers} == {planner["interaction_id"]}
    assert Counter(ix["input_data"]["k"] for ix in helpers) == Counter(
        {k: 20 for k in range(6)}
    )
    assert planner["output_data"] == "planned"


def test_pool_thread_does_not_lend_its_first_iteration_to_later_work(tmp_path: Path) -> None:
    """A pool thread first started inside an iteration: later work from outside is not put in it."""
    body = """
from concurrent.futures import ThreadPoolExecutor

import agentlog

with ThreadPoolExecutor(max_workers=1) as pool:
    with agentlog.iteration(number=1):
        pool.submit(agentlog.log_interaction, "inside", "first", None).result()
    for i in range(3):
        pool.submit(agentlog.log_interaction, "outside", i, None).result()
    with agentlog.iteration(number=50):
        pool.submit(agentlog.log_interaction, "second", "again", None).result()
check_journal(5)
print("ok")
"""
    result, doc, journal = _run(tmp_path, body)
    assert result.stdout == "ok\n"
    _assert_journal(journal, 5)
    placed = {
        it["iteration_number"]: [ix["agent_name"] for ix in it["interactions"]]
        for it in doc["iterations"]
    }
    assert placed[1] == ["inside"]
    assert placed[50] == ["second"]
    outside = [it for it in doc["iterations"] if it["interactions"][0]["agent_name"] == "outside"]
    assert len(outside) == 3, placed
    assert all(it["auto"] and len(it["interactions"]) == 1 for it in outside)
