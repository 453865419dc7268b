"""The added cost of one ``open()`` + ``read()`` of a small file, as a ratio in one run.

    python benchmarks/bench_resources.py [--quick]

Four ways alternate round by round, so that all of them see the same noise:

- bare: the builtin ``open`` (``open.__wrapped__``);
- v1: the wrapped ``open`` at verbosity 1, the same file read again and again (the
  steady state: a cached decision and a count);
- v0: the wrapped ``open`` at verbosity 0 (the fast path);
- a library file: the wrapped ``open`` on a file the filter leaves out, against bare.

Also ``Path.read_text`` at verbosity 1 against verbosity 0, and a relative path (one
``getcwd`` more). Each figure is a median over interleaved rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("AGENTLOG_DIR", tempfile.mkdtemp(prefix="agentlog-bench-"))
os.environ.setdefault("AGENTLOG_VERBOSITY", "1")

import agentlog
from agentlog import api


def _per_read_ns(opener: Callable[..., Any], path: Any, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        with opener(path) as f:
            f.read()
    return (time.perf_counter_ns() - start) / n


def _per_read_text_ns(path: Path, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        path.read_text()
    return (time.perf_counter_ns() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for CI smoke")
    args = parser.parse_args()
    rounds, n = (5, 2_000) if args.quick else (15, 20_000)
    wrapped = open
    bare = getattr(open, "__wrapped__", None)
    if bare is None:
        sys.exit("the file hook is not installed (AGENTLOG_DISABLE=open?)")
    folder = Path(tempfile.mkdtemp(prefix="agentlog-bench-data-"))
    small = folder / "prompt.txt"
    small.write_text("You are a helpful assistant. Answer briefly.\n" * 4)
    library = Path(agentlog.__file__).parent / "schema" / "document-v1.schema.json"
    os.chdir(folder)

    results: dict[str, list[float]] = {k: [] for k in (
        "bare", "v1", "relative", "v0", "lib_bare", "lib", "text_bare", "text_v1")}
    for _ in range(rounds):
        results["bare"].append(_per_read_ns(bare, small, n))
        results["v1"].append(_per_read_ns(wrapped, small, n))
        results["relative"].append(_per_read_ns(wrapped, "prompt.txt", n))
        results["lib_bare"].append(_per_read_ns(bare, library, n // 4))
        results["lib"].append(_per_read_ns(wrapped, library, n // 4))
        agentlog.set_logging(True, verbosity=0)
        results["v0"].append(_per_read_ns(wrapped, small, n))
        results["text_bare"].append(_per_read_text_ns(small, n))  # the wrapper's fast path
        agentlog.set_logging(True, verbosity=1)
        results["text_v1"].append(_per_read_text_ns(small, n))
    api.RECORDER.settle()
    size = small.stat().st_size
    os.chdir(tempfile.gettempdir())
    shutil.rmtree(folder, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"agentlog resources benchmark, python {sys.version.split()[0]}, {os.cpu_count()} CPUs,"
          f" {rounds} rounds x {n:,} reads of a {size} B file")

    def line(label: str, value: float, base: float) -> None:
        print(f"{label:36s} {value / 1000:7.3f} us  ({value / base:4.2f}x,"
              f" +{(value - base) / 1000:.3f} us)")

    print(f"{'open()+read(), bare':36s} {med['bare'] / 1000:7.3f} us")
    line("open()+read(), recorded (v1)", med["v1"], med["bare"])
    line("open()+read(), relative path (v1)", med["relative"], med["bare"])
    line("open()+read(), verbosity 0", med["v0"], med["bare"])
    line("open()+read(), a library file (v1)", med["lib"], med["lib_bare"])
    line("Path.read_text(), v1 against v0", med["text_v1"], med["text_bare"])


if __name__ == "__main__":
    main()
