"""Figures the reliability tests measure (SIGKILL trials, forks, disk faults ...).

Each test adds its counts; the totals of this pytest process are kept in
``$AGENTLOG_FIGURES/<topic>.json`` (default ``/tmp/agentlog-figures``) and shown at the
end of each module, even without ``-s``, so that they can be quoted.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FOLDER = Path(os.environ.get("AGENTLOG_FIGURES", "/tmp/agentlog-figures"))
_totals: dict[str, dict[str, float]] = {}
_lock = threading.Lock()


def add(topic: str, **counts: float) -> None:
    """Add ``counts`` to ``topic``'s totals and rewrite its file."""
    with _lock:
        totals = _totals.setdefault(topic, {})
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
        try:
            FOLDER.mkdir(parents=True, exist_ok=True)
            (FOLDER / f"{topic}.json").write_text(json.dumps(totals, indent=1, sort_keys=True))
        except OSError:
            pass  # figures are a courtesy; a read-only /tmp must not fail the test


def peak(topic: str, **values: float) -> None:
    """Keep the largest value seen for each key (peaks, not sums)."""
    with _lock:
        totals = _totals.setdefault(topic, {})
        for key, value in values.items():
            totals[key] = max(totals.get(key, value), value)
    add(topic)


def show(request: pytest.FixtureRequest, *topics: str) -> Iterator[None]:
    """Body of a module-scoped fixture: print the totals of ``topics`` after the module."""
    yield
    lines = []
    for topic in topics:
        totals = _totals.get(topic)
        if totals:
            counts = ", ".join(
                f"{k}={int(v) if float(v).is_integer() else round(v, 3)}"
                for k, v in sorted(totals.items())
            )
            lines.append(f"[figures] {topic}: {counts}  ({FOLDER / (topic + '.json')})")
    capture: Any = request.config.pluginmanager.getplugin("capturemanager")
    reporter: Any = request.config.pluginmanager.getplugin("terminalreporter")
    if not lines or capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)
