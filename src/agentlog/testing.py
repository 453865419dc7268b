"""Helpers for users' own tests: see what your code logged, with a fixed clock.

    from agentlog.testing import capture

    def test_planner_logs_its_answer():
        with capture() as logs:
            run_planner("question")
        assert logs.interactions[0]["agent"] == "planner"
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import _document, _recorder, api

Event = dict[str, Any]


class Captured(list[Event]):
    """The events recorded inside a ``capture()`` block, in order.

    Reading it first writes the records agentlog holds back to journal in batches, so a
    call that has returned is always there.
    """

    def __iter__(self) -> Iterator[Event]:
        api.RECORDER.settle()
        return super().__iter__()

    def __len__(self) -> int:
        api.RECORDER.settle()
        return super().__len__()

    def __getitem__(self, index: Any) -> Any:
        api.RECORDER.settle()
        return super().__getitem__(index)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self if e.get("ev") == kind]

    @property
    def interactions(self) -> list[Event]:
        """Interaction events: one-shot ones and the starts of open/closed ones."""
        return [e for e in self if e.get("ev") in ("interaction", "interaction_start")]

    @property
    def actions(self) -> list[Event]:
        return self.of("action")

    @property
    def errors(self) -> list[Event]:
        return self.of("error")

    @property
    def resources(self) -> list[Event]:
        return self.of("resource")

    def document(self) -> dict[str, Any]:
        """These events folded into a run document, as the journal would be."""
        run = api.RECORDER.current()
        return _document.build(
            [run.header(api.RECORDER.verbosity), *self], default_status="in_progress"
        )


@contextmanager
def capture() -> Iterator[Captured]:
    """Collect every event recorded in this block (they are journaled as usual)."""
    captured = Captured()
    sinks = api.RECORDER.sinks
    sinks.append(captured.append)
    try:
        yield captured
    finally:
        api.RECORDER.settle()
        sinks.remove(captured.append)


@contextmanager
def fixed_clock(
    start_ns: int = 1_800_000_000_000_000_000, step_ns: int = 1_000_000
) -> Iterator[None]:
    """Timestamps from a counter: ``start_ns``, then ``step_ns`` later each time asked."""
    counter = itertools.count(start_ns, step_ns)
    previous = _recorder.now_ns
    _recorder.now_ns = lambda: next(counter)
    try:
        yield
    finally:
        _recorder.now_ns = previous
