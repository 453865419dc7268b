"""Host safety and cost rows that no subject module owns: identity of decorated results,
re-entrancy through the host's logging, per-call cost, import cost, the kill switch, and a
short soak (TESTPLAN A5, A11, E1, E2).

Costs are not timed here: the suite shares two cores with other work, so the figures
come from ``benchmarks/`` (``bench_llm.py``, ``soak.py``). One more host-safety check
lives here: recovery on import must never fold, delete or overwrite the user's own
``*.jsonl`` / ``*.json`` files in the log folder.

Covers A5: @tool/@agent hand back tuple subclasses, namedtuples, generators, awaited values,
    pydantic models and None as the very objects the function made (``is``, ``type``).
Covers A11: a host logging handler that logs into agentlog (errors, interactions, file reads)
    while agentlog writes its own files: no self-records, no RecursionError, valid document.
Covers E1: the costs are measured by benchmarks/ (bench_llm.py, bench_resources.py,
    bench_core.py), never asserted by timed tests on a shared machine; here: no fsync on the
    caller's thread, no SDK imported by ``import agentlog``, and AGENTLOG_DISABLED=1 leaves
    every original in place.
Covers E2: 3,000 calls (plain, streams, errors, 2 threads) in a fresh interpreter: live
    allocator blocks, threads and fds flat after warm-up (the 10^6 run is benchmarks/soak.py).
"""

from __future__ import annotations

import _io
import asyncio
import builtins
import json
import os
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pydantic
import pytest

import agentlog
from agentlog.testing import capture
from helpers import REPO, run_script, script_env, validate_document


# -- A5: what the user's function returns is what the caller gets -------------------------
class Pair(tuple):
    pass


Point = namedtuple("Point", "x y")


class Answer(pydantic.BaseModel):
    text: str


def _results() -> dict[str, Any]:
    def gen() -> Iterator[int]:
        yield 1

    return {
        "tuple subclass": Pair((1, 2)),
        "namedtuple": Point(1, 2),
        "generator": gen(),
        "pydantic": Answer(text="hi"),
        "none": None,
        "list": [1, 2],
    }


@pytest.mark.parametrize("kind", list(_results()))
@pytest.mark.parametrize("decorator", ["tool", "agent"])
def test_decorated_functions_return_the_very_object(kind: str, decorator: str) -> None:
    """No list-for-tuple substitution, no consumed generator: ``is`` the same object."""
    made = _results()[kind]
    wrap: Callable[[Any], Any] = agentlog.tool if decorator == "tool" else agentlog.agent("a")

    @wrap
    def f() -> Any:
        return made

    @wrap
    async def af() -> Any:
        return made

    with capture() as logs:
        got = f()
        awaited = asyncio.run(af())
    assert got is made and type(got) is type(made)
    assert awaited is made
    if kind == "generator":
        assert list(got) == [1]  # not consumed by the recording
    assert len(logs) >= 2
    validate_document(logs.document())


# -- A11: re-entrancy through the host's own logging ---------------------------------------
REENTRANT = """\
import copy, logging, os, sys
from pathlib import Path

import agentlog


class IntoAgentlog(logging.Handler):
    def emit(self, record):
        agentlog.log_error(record.getMessage())
        agentlog.log_interaction("logger", record.getMessage(), {"level": record.levelname})
        Path("read-by-handler.txt").read_text()


Path("read-by-handler.txt").write_text("x")
Path("data.txt").write_text("VISIBLE-data")
root = logging.getLogger()
root.setLevel(logging.DEBUG)
root.addHandler(IntoAgentlog())
root.addHandler(logging.FileHandler("host.log"))

logging.info("VISIBLE-first")
with agentlog.interaction("worker", "VISIBLE-in") as ix:
    with open("data.txt") as f:
        ix.output = f.read()
    logging.warning("VISIBLE-inside")
agentlog.save_log("snapshot.json")
logging.error("VISIBLE-after-save")
assert copy.deepcopy(open) is open and copy.copy(open) is open
print("ok", sys.getrecursionlimit())
"""


def test_host_logging_into_agentlog_makes_no_self_records(tmp_path: Path) -> None:
    """The host's logging handler calls agentlog and reads files while agentlog writes its
    own journal and documents: nothing recurses, only the host's reads are resources."""
    result = run_script(tmp_path, REENTRANT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
    assert result.host_stderr() == ""
    doc = result.doc()
    errors = [e["error"] for e in doc["error_log"]]
    assert errors == ["VISIBLE-first", "VISIBLE-inside", "VISIBLE-after-save"]
    resources = sorted(Path(r["resource"]).name for r in doc["resources_used"])
    assert resources == ["data.txt", "read-by-handler.txt"], resources
    counts = {Path(r["resource"]).name: r["count"] for r in doc["resources_used"]}
    assert counts["read-by-handler.txt"] == 3
    text = json.dumps(doc)
    assert "RecursionError" not in text and ".jsonl" not in text
    assert "snapshot.json" not in text


# -- E1: per-call cost ---------------------------------------------------------------------
_CHAT = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Paris."}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
}).encode()


def _mock_client() -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=_CHAT, headers={"content-type": "application/json"})

    return openai.OpenAI(api_key="sk-test", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def test_hooked_open_and_llm_calls_never_fsync_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No fsync on the caller's thread for file reads or LLM calls (durability waits are
    the flusher's); what they cost is measured in benchmarks/, not asserted here."""
    target = tmp_path / "data.txt"
    target.write_text("x")
    name = str(target)
    fsyncs: list[str] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)

    def read() -> object:
        with open(name) as f:
            return f.read()

    with capture() as logs:
        read()
    assert [r["resource"] for r in logs.resources] == [name]
    assert builtins.open is not _io.open  # hooked while recording
    for _ in range(300):
        read()
    client = _mock_client()
    try:
        for _ in range(20):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    finally:
        client.close()
    main = threading.current_thread().name
    assert main not in fsyncs, f"fsync on the caller's thread: {fsyncs}"


IMPORT_COST = """\
import json, sys
import agentlog
print(json.dumps({"sdks": [m for m in ("openai", "anthropic", "httpx2", "google.genai",
                                       "litellm", "botocore") if m in sys.modules]}))
"""


def test_import_agentlog_imports_no_sdk(tmp_path: Path) -> None:
    """``import agentlog`` loads no SDK (their adapters wait for them); its time is
    measured by benchmarks/bench_core.py."""
    result = run_script(tmp_path, IMPORT_COST)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sdks"] == []


DISABLED = """\
import _io, builtins, json, os, threading
from concurrent.futures import ThreadPoolExecutor
start, submit = threading.Thread.start, ThreadPoolExecutor.submit
import agentlog
import httpx2, openai
from openai._base_client import SyncAPIClient, AsyncAPIClient

def plain(f):
    return not hasattr(f, "__wrapped__") and "agentlog" not in getattr(f, "__module__", "")

client = openai.OpenAI(api_key="k", max_retries=0, http_client=httpx2.Client(
    transport=httpx2.MockTransport(lambda r: httpx2.Response(200, json={{
        "id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": []}}))))
client.chat.completions.create(model="m", messages=[{{"role": "user", "content": "q"}}])
open(__file__).read()
agentlog.log_interaction("a", "b", "c")
print(json.dumps({{
    "open": builtins.open is _io.open,
    "request": plain(SyncAPIClient.request) and plain(AsyncAPIClient.request),
    "thread": threading.Thread.start is start and ThreadPoolExecutor.submit is submit,
    "threads": sorted(t.name for t in threading.enumerate()),
}}))
"""


@pytest.mark.parametrize("switch", ["AGENTLOG_DISABLED", "AGENTLOG"])
def test_kill_switch_leaves_every_original_in_place(tmp_path: Path, switch: str) -> None:
    """With the kill switch no function is patched (the overhead is nil by construction),
    no thread is started, and no file is written."""
    value = "1" if switch == "AGENTLOG_DISABLED" else "0"
    result = run_script(tmp_path, DISABLED.format(), **{switch: value})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    state = json.loads(result.stdout)
    assert state == {"open": True, "request": True, "thread": True, "threads": ["MainThread"]}
    assert not result.logs.exists() or not any(result.logs.iterdir())


# -- E2: a short soak ----------------------------------------------------------------------
SOAK = """\
import gc, json, os, random, sys, threading, time
sys.path.insert(0, {bench!r})
import soak  # benchmarks/soak.py: its fake provider and call mix
import agentlog

client_threads = 2
samples = []

def batch(start, n):
    errors = []
    def work(k):
        try:
            c = soak._client()
            rnd = random.Random(start + k)
            for i in range(start + k, start + n, client_threads):
                soak._one_call(c, i, rnd, {{}})
            c.close()
        except BaseException as exc:
            errors.append(exc)
    ts = [threading.Thread(target=work, args=(k,)) for k in range(client_threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert not errors, errors
    time.sleep(0.3)  # several flush intervals: the flusher drains what was held back
    gc.collect()
    samples.append({{"blocks": sys.getallocatedblocks(), "threads": threading.active_count(),
                     "fds": len(os.listdir("/proc/self/fd")), "rss_kib": int(open(
                         "/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                         // 1024}})

for b in range(6):
    batch(b * 500, 500)
print(json.dumps(samples))
"""


def test_short_soak_is_flat_after_warm_up(tmp_path: Path) -> None:
    """3,000 recorded calls in six batches: after the first two (warm-up) the allocator's
    live blocks grow by less than 2 per call, and threads and fds never change."""
    env = script_env(tmp_path / "logs")
    result = run_script(tmp_path, SOAK.format(bench=str(REPO / "benchmarks")), env=env,
                        timeout=300)
    assert result.returncode == 0, result.stderr
    samples = json.loads(result.stdout)
    warm, last = samples[2], samples[-1]
    growth = last["blocks"] - warm["blocks"]
    print(f"\nsoak: blocks {[s['blocks'] for s in samples]}, rss KiB "
          f"{[s['rss_kib'] for s in samples]}")
    assert growth < 2 * 1_500, f"{growth} allocator blocks more over the last 1,500 calls"
    assert len({s["threads"] for s in samples}) == 1
    assert len({s["fds"] for s in samples}) == 1
    (doc,) = [d for d in result.docs()]
    assert doc["metadata"]["totals"]["llm_calls"] == 3_000


# -- recovery must only ever touch agentlog's own journals ---------------------------------
def test_recovery_leaves_the_users_own_jsonl_and_json_files_alone(tmp_path: Path) -> None:
    """A log folder that also holds the user's data (``AGENTLOG_DIR=./data``): recovery on
    import and ``agentlog recover`` must not fold, delete or overwrite a ``*.jsonl`` that
    is not an agentlog journal, nor a ``*.json`` beside it."""
    logs = tmp_path / "logs"
    logs.mkdir()
    user_jsonl = b'{"text": "a training example"}\n{"text": "another"}\n'
    user_json = b'{"vocab": ["a", "b"]}\n'
    (logs / "train.jsonl").write_bytes(user_jsonl)
    (logs / "train.json").write_bytes(user_json)
    (logs / "notes.jsonl").write_bytes(b"not json at all\n")
    result = run_script(tmp_path, "import agentlog, time\ntime.sleep(0.5)\n")
    assert result.returncode == 0, result.stderr
    recover = run_script(tmp_path, "import sys\nfrom agentlog.cli import main\n"
                         "sys.exit(main(['recover', '--dir', sys.argv[1]]))\n",
                         name="recover", args=[str(logs)], AGENTLOG="0")
    assert recover.returncode in (0, 1), recover.stderr
    assert (logs / "train.jsonl").read_bytes() == user_jsonl
    assert (logs / "train.json").read_bytes() == user_json
    assert (logs / "notes.jsonl").read_bytes() == b"not json at all\n"
