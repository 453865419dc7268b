"""Core overhead, as ratios measured side by side in one run.

    python benchmarks/bench_core.py [--quick]

Reports:
- one ``log_interaction`` at verbosity 1 and at verbosity 0, against an empty call;
- ``import agentlog`` against ``python -c pass`` (whole processes, interleaved), and the
  import alone, timed inside the process;
- RSS growth over 1,000,000 ``log_interaction`` calls, after a warm-up.

Each figure is a median over interleaved rounds, because the machine is shared and
noisy: instrumented and bare runs alternate so that both see the same noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _per_call_ns(fn: object, n: int) -> float:
    call = fn  # bound once, so lookup costs are equal on both sides
    start = time.perf_counter_ns()
    for _ in range(n):
        call("planner", "What is the capital of France?", "Paris")  # type: ignore[operator]
    return (time.perf_counter_ns() - start) / n


def bench_calls(rounds: int, n: int) -> None:
    import agentlog
    from agentlog import api

    def empty(agent_name: object, input_data: object, output_data: object) -> None:
        return None

    results: dict[str, list[float]] = {"empty": [], "v1": [], "v0": []}
    for _ in range(rounds):
        results["empty"].append(_per_call_ns(empty, n))
        agentlog.set_logging(True, verbosity=1)
        results["v1"].append(_per_call_ns(agentlog.log_interaction, n))
        agentlog.set_logging(True, verbosity=0)
        results["v0"].append(_per_call_ns(agentlog.log_interaction, n))
    agentlog.set_logging(True, verbosity=1)
    empty_ns = statistics.median(results["empty"])
    v1 = statistics.median(results["v1"])
    v0 = statistics.median(results["v0"])
    print(f"empty call                 {empty_ns / 1000:8.3f} us")
    print(f"log_interaction, verbosity 1 {v1 / 1000:6.3f} us  ({v1 / empty_ns:5.1f}x empty,"
          f" +{(v1 - empty_ns) / 1000:.3f} us)")
    print(f"log_interaction, verbosity 0 {v0 / 1000:6.3f} us  ({v0 / empty_ns:5.1f}x empty,"
          f" +{(v0 - empty_ns) / 1000:.3f} us)")
    _ = api


def bench_import(rounds: int) -> None:
    # An installed package has its bytecode compiled by pip; an editable checkout (or
    # PYTHONDONTWRITEBYTECODE=1) would otherwise time the compiler, not the import.
    import agentlog

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(agentlog.__file__).parent)],
                   check=True)
    logs = tempfile.mkdtemp(prefix="agentlog-bench-")
    env = dict(os.environ, AGENTLOG_DIR=logs)
    timed = (
        "import time; s = time.perf_counter(); import agentlog; "
        "print((time.perf_counter() - s) * 1e3)"
    )
    bare: list[float] = []
    full: list[float] = []
    inner: list[float] = []
    for _ in range(rounds):
        for code, sink in (("pass", bare), ("import agentlog", full)):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True,
                           stderr=subprocess.DEVNULL)
            sink.append((time.perf_counter() - start) * 1e3)
        out = subprocess.run([sys.executable, "-c", timed], env=env, check=True,
                             capture_output=True, text=True).stdout
        inner.append(float(out.strip()))
    b, f, i = statistics.median(bare), statistics.median(full), statistics.median(inner)
    print(f"python -c pass             {b:8.1f} ms")
    print(f"python -c 'import agentlog' {f:7.1f} ms  ({f / b:4.2f}x, +{f - b:.1f} ms,"
          " whole process incl. exit)")
    print(f"import agentlog alone      {i:8.1f} ms  (timed inside the process)")


def bench_rss(total: int) -> None:
    import agentlog

    agentlog.set_logging(True, verbosity=1)
    warm = total // 10
    for i in range(warm):
        agentlog.log_interaction("planner", {"step": i}, "ok")
    base = _rss_kib()
    samples = []
    step = (total - warm) // 10
    for chunk in range(10):
        for i in range(step):
            agentlog.log_interaction("planner", {"step": i}, "ok")
        samples.append(_rss_kib())
        _ = chunk
    print(f"RSS after {warm:,} warm-up calls   {base / 1024:8.1f} MiB")
    print(f"RSS after {total:,} calls        {samples[-1] / 1024:8.1f} MiB"
          f"  (growth {((samples[-1] - base) / 1024):+.1f} MiB;"
          f" last half {((samples[-1] - samples[4]) / 1024):+.1f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for CI smoke")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="agentlog-bench-run-"))
    os.environ["AGENTLOG_DIR"] = str(logs)
    os.environ["AGENTLOG_VERBOSITY"] = "0"  # the exit line would only add noise here
    rounds = 3 if args.quick else 9
    print(f"agentlog core benchmark, python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    bench_calls(rounds, 2_000 if args.quick else 20_000)
    bench_import(rounds if args.quick else 15)
    bench_rss(50_000 if args.quick else 1_000_000)


if __name__ == "__main__":
    main()
