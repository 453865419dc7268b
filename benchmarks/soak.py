"""Soak: a million recorded LLM calls, and memory, threads and fds must stay flat.

    python benchmarks/soak.py [--calls 1000000] [--threads 4] [--trace-from 0.5] [--trim-probe]

TESTPLAN E2. The real ``openai`` SDK calls an in-process ``httpx2.MockTransport`` that
speaks the OpenAI wire format (JSON replies, SSE streams, error statuses), so no socket
is opened and the SDK's own work is all the load there is. The mix, per call:

- 60% plain ``chat.completions.create``;
- 20% streamed and read to the end (``stream_options.include_usage``);
- 5% streamed and abandoned after one chunk (``break`` then ``close()``);
- 5% streamed inside ``with`` and dropped after two chunks;
- 10% errors (HTTP 400 / 429 / 500, raised by the SDK as ``openai.APIStatusError``).

Calls run on ``--threads`` long-lived worker threads, plus one short-lived raw
``threading.Thread`` per batch (a thread agentlog has never seen, which must not leave
anything behind). The run is cut into batches; after each batch the workers are idle
and RSS, thread count and fd count are sampled. Every ``--rotate`` calls the workflow is
finalised (its document written, a new run started), as a long-lived service would.

``tracemalloc`` starts at the batch ``--trace-from`` (default: half-way); its growth is
the traced size at the end minus the traced size one batch after it started, each taken
after the flusher has had time to drain. Tracing slows every allocation about six-fold
on this machine, so a million-call run traces only its tail (``--trace-from 0.95``); the
Python heap over the whole last half is then watched with ``sys.getallocatedblocks()``
(live allocator blocks, free to read) and the count of gc-tracked objects. A plot of
the curves goes to ``--out`` (default ``benchmarks/out/soak.png``).

``--trim-probe`` (glibc only) tells a leak from allocator retention: after each sample it
calls ``malloc_trim(0)`` and reports the RSS after it, glibc's heap (``mallinfo2``: in
use, free, mmapped) and pymalloc's arenas. RSS that trim brings back flat is glibc
keeping freed heap; what remains with flat allocated blocks is pymalloc arenas pinned by
a few live objects each. The trim changes the RSS that follows, hence off by default.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import gc
import json
import os
import queue
import random
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A private log folder, removed at the end, unless the caller chose one (the test suite).
_LOG_DIR = None if "AGENTLOG_DIR" in os.environ else tempfile.mkdtemp(prefix="agentlog-soak-")
if _LOG_DIR is not None:
    os.environ["AGENTLOG_DIR"] = _LOG_DIR
    # Registered before agentlog's own exit hook, so it runs after it (--help, a crash).
    atexit.register(shutil.rmtree, _LOG_DIR, True)

import httpx2  # noqa: E402
import openai  # noqa: E402

import agentlog  # noqa: E402

_MODEL = "gpt-4o-mini-2024-07-18"
_PAGE = os.sysconf("SC_PAGE_SIZE")


# -- the fake provider: OpenAI's wire format, in process --------------------------------
def _chat_body(i: int) -> bytes:
    return json.dumps({
        "id": f"chatcmpl-{i}", "object": "chat.completion", "created": 1, "model": _MODEL,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": f"Answer number {i}."}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    }).encode()


def _sse_body(chunks: int) -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None) -> str:
        body = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
                "model": _MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    parts = [chunk({"role": "assistant", "content": ""}, None)]
    parts += [chunk({"content": "word "}, None) for _ in range(chunks - 2)]
    parts.append(chunk({}, "stop"))
    usage = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
             "model": _MODEL, "choices": [],
             "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 99}}
    parts.append(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n")
    return "".join(parts).encode()


_SSE = _sse_body(12)
_ERRORS = {
    400: b'{"error": {"message": "bad request", "type": "invalid_request_error"}}',
    429: b'{"error": {"message": "slow down", "type": "rate_limit_error"}}',
    500: b'{"error": {"message": "boom", "type": "server_error"}}',
}
_counter = iter(range(1 << 62))


def _handler(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    status = body.get("metadata", {}).get("status")
    if status:
        code = int(status)
        return httpx2.Response(code, content=_ERRORS[code],
                               headers={"content-type": "application/json"})
    if body.get("stream"):
        return httpx2.Response(200, content=_SSE, headers={"content-type": "text/event-stream"})
    return httpx2.Response(200, content=_chat_body(next(_counter)),
                           headers={"content-type": "application/json"})


# -- the calls ------------------------------------------------------------------------
def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": f"Question {i}: what is the capital of France?"}]


def _one_call(client: openai.OpenAI, i: int, rnd: random.Random, tally: dict[str, int]) -> None:
    r = rnd.random()
    msgs: Any = _messages(i)
    if r < 0.60:
        client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        kind = "plain"
    elif r < 0.80:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=msgs,
                                                stream=True,
                                                stream_options={"include_usage": True}):
            pass
        kind = "stream"
    elif r < 0.85:
        s = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True)
        for _ in s:
            break
        s.close()
        kind = "stream_break"
    elif r < 0.90:
        with client.chat.completions.create(model="gpt-4o-mini", messages=msgs,
                                            stream=True) as s:
            next(s)
            next(s)
        kind = "stream_with"
    else:
        status = rnd.choice((400, 429, 500))
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=msgs,
                                           metadata={"status": str(status)})
        except openai.APIStatusError as exc:
            assert exc.status_code == status
        else:
            raise AssertionError("the fake provider must have failed this call")
        kind = "error"
    tally[kind] = tally.get(kind, 0) + 1


def _client() -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-soak", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(_handler)))


# -- sampling -------------------------------------------------------------------------
def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _libc() -> Any:
    """glibc, or None (musl, macOS): the probe needs ``malloc_trim`` and ``mallinfo2``."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def _pymalloc_arenas() -> float:
    """pymalloc's arenas in use (1 MiB each on 3.10+), from ``sys._debugmallocstats``,
    which writes to the C stderr: borrowed for the call. Unknown (NaN) while
    tracemalloc's hooks stand in front of pymalloc."""
    if tracemalloc.is_tracing():
        return float("nan")
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        for line in f.read().decode().splitlines():
            if line.startswith("# arenas allocated current"):
                return int(line.split("=")[1].replace(",", ""))
    return float("nan")


def _trim_probe(libc: Any) -> dict[str, float]:
    """Where the RSS is: glibc's heaps (in use, free), its mmapped chunks, pymalloc's
    arenas; then what ``malloc_trim(0)`` gives back, and what it costs."""
    mi = libc.mallinfo2()
    before = _rss_mib()
    t = time.perf_counter()
    libc.malloc_trim(0)
    trim_us = (time.perf_counter() - t) * 1e6
    after = _rss_mib()
    return {
        "rss_trimmed_mib": after, "trimmed_mib": before - after,
        "trim_us": trim_us,
        "heap_mib": mi.arena / 2**20, "heap_used_mib": mi.uordblks / 2**20,
        "heap_free_mib": mi.fordblks / 2**20, "mmapped_mib": mi.hblkhd / 2**20,
        "pymalloc_arenas": _pymalloc_arenas(),
    }


def _threads() -> int:
    return threading.active_count()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _Pool:
    """Long-lived workers fed batches of call indices; ``run`` waits for the batch."""

    def __init__(self, n: int, seed: int) -> None:
        self.jobs: queue.Queue[tuple[int, int] | None] = queue.Queue()
        self.done: queue.Queue[BaseException | None] = queue.Queue()
        self.tally: dict[str, int] = {}
        self.lock = threading.Lock()
        self.workers = [threading.Thread(target=self._work, args=(seed + k,), daemon=True,
                                         name=f"soak-{k}") for k in range(n)]
        for w in self.workers:
            w.start()

    def _work(self, seed: int) -> None:
        client = _client()
        rnd = random.Random(seed)
        while (job := self.jobs.get()) is not None:
            mine: dict[str, int] = {}
            error: BaseException | None = None
            try:
                for i in range(*job):
                    _one_call(client, i, rnd, mine)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                error = exc
            with self.lock:
                for k, v in mine.items():
                    self.tally[k] = self.tally.get(k, 0) + v
            self.done.put(error)
        client.close()

    def run(self, start: int, stop: int) -> None:
        n = len(self.workers)
        step = -(-(stop - start) // n)
        parts = [(a, min(a + step, stop)) for a in range(start, stop, step)]
        for p in parts:
            self.jobs.put(p)
        for _ in parts:
            error = self.done.get()
            if error is not None:
                raise error

    def close(self) -> None:
        for _ in self.workers:
            self.jobs.put(None)
        for w in self.workers:
            w.join()


def _side_calls(start: int, tally: dict[str, int]) -> None:
    client = _client()
    for k in range(20):  # a fresh Random(start) per call, as ever: all 20 of one kind
        _one_call(client, start + k, random.Random(start), tally)


def _settle(flush_interval: float) -> None:
    """Let the flusher drain what the last batch held back."""
    time.sleep(flush_interval * 3)
    gc.collect()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--rotate", type=int, default=25_000,
                    help="finalise the workflow (write its document) every N calls")
    ap.add_argument("--trace-from", type=float, default=0.5,
                    help="start tracemalloc at this fraction of the run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "soak.png")
    ap.add_argument("--json", type=Path, default=None, help="also write the samples here")
    ap.add_argument("--trim-probe", action="store_true",
                    help="after each sample, also call glibc's malloc_trim(0) and report the "
                    "RSS after it, glibc's heap (mallinfo2) and pymalloc's arenas: flat RSS "
                    "after trim means retention, not a leak. Changes the RSS that follows, "
                    "so off by default")
    args = ap.parse_args()
    libc = _libc() if args.trim_probe else None
    if args.trim_probe and libc is None:
        ap.error("--trim-probe needs glibc (malloc_trim, mallinfo2)")

    flush = float(os.environ.get("AGENTLOG_FLUSH_INTERVAL", "0.5"))
    calls, batches = args.calls, max(args.batches, 4)
    size = -(-calls // batches)
    pool = _Pool(args.threads, args.seed)
    extra_tally: dict[str, int] = {}
    samples: list[dict[str, float]] = []
    trace_at = min(int(batches * args.trace_from), batches - 2)
    traced_base: int | None = None
    traced_end = 0
    snap_base: tracemalloc.Snapshot | None = None
    traced_rss = float("nan")
    documents = 0
    t0 = time.perf_counter()
    done = 0
    next_rotate = args.rotate
    for b in range(batches):
        start, stop = b * size, min((b + 1) * size, calls)
        if start >= stop:
            break
        # One raw thread per batch that agentlog has never seen: it must leave nothing.
        side = threading.Thread(target=_side_calls, args=(start, extra_tally),
                                name="soak-side")
        side.start()
        pool.run(start, stop)
        side.join()
        done = stop + 20 * (b + 1)
        if done >= next_rotate:
            agentlog.finalize_workflow()
            documents += 1
            next_rotate += args.rotate
        if b == trace_at:
            _settle(flush)
            traced_rss = _rss_mib()
            tracemalloc.start(1)
        elif b == trace_at + 1:
            _settle(flush)
            traced_base = tracemalloc.get_traced_memory()[0]
            snap_base = tracemalloc.take_snapshot()
        samples.append({
            "calls": done, "t": time.perf_counter() - t0, "rss_mib": _rss_mib(),
            "threads": _threads(), "fds": _fds(), "blocks": sys.getallocatedblocks(),
            "gc_objects": len(gc.get_objects()),
            "traced_mib": tracemalloc.get_traced_memory()[0] / 2**20
            if tracemalloc.is_tracing() else float("nan"),
        })
        if libc is not None:
            samples[-1].update(_trim_probe(libc))
        if b % max(batches // 20, 1) == 0 or libc is not None:
            s = samples[-1]
            probe = (f" | trimmed {s['rss_trimmed_mib']:6.1f} MiB ({s['trim_us']:.0f} us) "
                     f"heap {s['heap_mib']:.1f} used {s['heap_used_mib']:.1f} "
                     f"free {s['heap_free_mib']:.1f} mmap {s['mmapped_mib']:.1f} "
                     f"pymalloc {s['pymalloc_arenas']:.0f} blocks {s['blocks']}"
                     if libc is not None else "")
            print(f"{done:>9} calls {s['t']:7.1f}s rss {s['rss_mib']:7.1f} MiB "
                  f"threads {s['threads']} fds {s['fds']}{probe}", flush=True)
    elapsed = time.perf_counter() - t0
    _settle(flush)
    traced_end = tracemalloc.get_traced_memory()[0]
    top = []
    if snap_base is not None:
        for stat in tracemalloc.take_snapshot().compare_to(snap_base, "lineno")[:8]:
            top.append(str(stat))
    tracemalloc.stop()
    pool.close()

    warm = samples[len(samples) // 10]  # after warm-up: 10% of the run
    last = samples[-1]
    mid = samples[len(samples) // 2]
    tally = dict(pool.tally)
    for k, v in extra_tally.items():
        tally[k] = tally.get(k, 0) + v
    summary = {
        "calls": sum(tally.values()), "mix": tally, "threads": args.threads,
        "elapsed_s": round(elapsed, 1),
        "calls_per_s": round(sum(tally.values()) / elapsed),
        "documents": documents,
        "rss_mib": {"first": round(samples[0]["rss_mib"], 1),
                    "after_warmup": round(warm["rss_mib"], 1),
                    "half": round(mid["rss_mib"], 1), "end": round(last["rss_mib"], 1),
                    "max": round(max(s["rss_mib"] for s in samples), 1)},
        "rss_growth_after_warmup_mib": round(last["rss_mib"] - warm["rss_mib"], 2),
        "rss_growth_last_half_mib": round(last["rss_mib"] - mid["rss_mib"], 2),
        # tracemalloc's own trace storage is in RSS too: this part is before it starts.
        "rss_growth_warmup_to_tracing_mib": round(traced_rss - warm["rss_mib"], 2),
        "allocated_blocks": {"after_warmup": warm["blocks"], "half": mid["blocks"],
                             "end": last["blocks"]},
        "gc_objects": {"after_warmup": warm["gc_objects"], "half": mid["gc_objects"],
                       "end": last["gc_objects"]},
        "tracemalloc_from_calls": samples[min(trace_at + 1, len(samples) - 1)]["calls"],
        "tracemalloc_growth_kib": (
            round((traced_end - traced_base) / 1024, 1) if traced_base is not None else None),
        "threads_seen": sorted({int(s["threads"]) for s in samples}),
        "fds_seen": sorted({int(s["fds"]) for s in samples}),
        "tracemalloc_top": top,
    }
    if libc is not None:
        summary["trim_probe"] = {
            key: {"after_warmup": round(warm[key], 1), "half": round(mid[key], 1),
                  "end": round(last[key], 1)}
            for key in ("rss_trimmed_mib", "trimmed_mib", "heap_mib", "heap_free_mib",
                        "mmapped_mib", "pymalloc_arenas")}
        summary["trim_probe"]["trim_us_median"] = round(
            sorted(s["trim_us"] for s in samples)[len(samples) // 2])
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    _plot(samples, summary, args.out, half_at=mid["calls"],
          trace_at=samples[min(trace_at, len(samples) - 1)]["calls"])
    print(f"plot: {args.out}")
    # The run's last document is not needed: leave no log folder behind.
    agentlog.set_logging(False)
    if _LOG_DIR is not None:
        shutil.rmtree(_LOG_DIR, ignore_errors=True)


def _plot(samples: list[dict[str, float]], summary: dict[str, Any], out: Path,
          half_at: float, trace_at: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    x = [s["calls"] for s in samples]
    fig, axes = plt.subplots(5, 1, figsize=(9, 12), sharex=True)
    series: list[tuple[str, str, Callable[[dict[str, float]], float]]] = [
        ("rss_mib", "RSS (MiB)", lambda s: s["rss_mib"]),
        ("blocks", "allocated blocks (k)", lambda s: s["blocks"] / 1000),
        ("traced_mib", "tracemalloc (MiB)", lambda s: s["traced_mib"]),
        ("threads", "threads", lambda s: s["threads"]),
        ("fds", "open fds", lambda s: s["fds"]),
    ]
    for ax, (_, label, get) in zip(axes, series, strict=True):
        ax.plot(x, [get(s) for s in samples], marker=".", linewidth=1)
        if label.startswith("RSS") and "rss_trimmed_mib" in samples[0]:
            ax.plot(x, [s["rss_trimmed_mib"] for s in samples], marker=".", linewidth=1,
                    label="after malloc_trim(0) (--trim-probe)")
        ax.set_ylabel(label)
        ax.axvline(half_at, color="grey", linestyle=":", linewidth=1, label="half-way")
        ax.axvline(trace_at, color="red", linestyle="--", linewidth=1,
                   label="tracemalloc on (its own storage shows in RSS)")
        ax.grid(True, alpha=0.3)
    axes[3].set_ylim(0, max(s["threads"] for s in samples) + 2)
    axes[4].set_ylim(0, max(s["fds"] for s in samples) + 5)
    axes[0].legend(loc="lower right", fontsize=8)
    axes[-1].set_xlabel("recorded LLM calls")
    fig.suptitle(
        f"agentlog soak: {summary['calls']:,} calls, {summary['threads']} threads, "
        f"{summary['elapsed_s']} s\nRSS growth from warm-up to tracing "
        f"{summary['rss_growth_warmup_to_tracing_mib']} MiB; tracemalloc growth since "
        f"{summary['tracemalloc_from_calls']:,} calls: {summary['tracemalloc_growth_kib']} KiB")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
