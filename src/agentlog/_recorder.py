"""The recorder: the one place events are converted, capped, redacted and journaled.

Integrations and the manual APIs both call ``RECORDER.emit``. Memory holds the run's
identity, counters and the open scopes; payloads go straight to the journal.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from . import _document, _journal, _settings
from ._journal import JournalWriter
from ._redact import scrub
from ._serialize import Limits, fix_surrogates, to_jsonable
from ._version import __version__

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

LIMITS = {
    1: Limits(max_str=2_000, max_items=50, max_depth=16, max_total=20_000, time_budget_s=0.05),
    2: Limits(
        max_str=200_000, max_items=2_000, max_depth=32, max_total=2_000_000, time_budget_s=0.5
    ),
}
NOT_CAPTURED = "<content not captured: AGENTLOG_CAPTURE_CONTENT=0>"
_MAX_KEPT_ERRORS = 100
_WAKE_AT = 256
"""Records held back after which the flusher is woken early."""

now_ns: Callable[[], int] = time.time_ns
"""The clock. ``agentlog.testing.fixed_clock`` swaps it for a deterministic one."""


def new_run_id() -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, Crockford base32, sortable."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def type_name(exc: BaseException) -> str:
    """``ValueError`` for builtins and the main script, ``module.Qualname`` otherwise."""
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cleaned.strip("._")[:80] or "workflow"


class Run:
    """One run: the process's (or, after ``finalize``, the next) unit of recording."""

    def __init__(
        self,
        workflow_name: str,
        journal_dir: Path | None,
        parent_run_id: str | None = None,
        counters_from: Run | None = None,
    ) -> None:
        self.run_id = new_run_id()
        self.parent_run_id = parent_run_id
        self.pid = os.getpid()
        self.start_ns = now_ns()
        self.workflow_name = workflow_name
        self.journal_dir = journal_dir
        self.doc_dir: Path | None = None
        self.writer: JournalWriter | None = None
        self.base_name: str | None = None
        self.status_hint: str | None = None
        self.exit_code: int | None = None
        self.finalized = False
        self.document_path: Path | None = None
        self.lock = threading.Lock()
        # Ids continue across runs so a scope inherited by a fork child never collides.
        self.next_id: int = counters_from.next_id if counters_from else 1
        self.next_number = 1
        self.totals: dict[str, Any] = {}
        """The written document's totals, for the exit line."""
        self.kept_errors: list[dict[str, Any]] = []
        """Internal errors that could not be journaled; ``Recorder.document`` folds them in."""

    def new_id(self) -> int:
        with self.lock:
            value = self.next_id
            self.next_id = value + 1
        return value

    def new_number(self, wanted: int | None = None) -> int:
        with self.lock:
            if wanted is not None:
                self.next_number = max(self.next_number, wanted + 1)
                return wanted
            value = self.next_number
            self.next_number = value + 1
        return value

    def name(self) -> str:
        if self.base_name is None:
            stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(self.start_ns / 1e9))
            self.base_name = f"{_safe_name(self.workflow_name)}_{stamp}_{self.run_id[-8:]}"
        return self.base_name

    def header(self, verbosity: int) -> dict[str, Any]:
        uname = os.uname()
        return {
            "ev": "run",
            "t": self.start_ns,
            "run_id": self.run_id,
            "parent_run_id": self.parent_run_id,
            "workflow_name": self.workflow_name,
            "pid": self.pid,
            "python": sys.version.split()[0],
            "platform": f"{sys.platform}-{uname.release}-{uname.machine}",
            "agentlog_version": __version__,
            "verbosity": verbosity,
            "argv": list(getattr(sys, "argv", [])),
            "doc_dir": str(self.doc_dir) if self.doc_dir else None,
        }


class Recorder:
    """Process-wide state: settings, the current run, and ``emit``."""

    def __init__(self, settings: _settings.Settings) -> None:
        self.settings = settings
        self.verbosity = settings.verbosity if settings.enabled else 0
        self.limits = LIMITS[min(max(self.verbosity, 1), 2)]
        self.sinks: list[Callable[[dict[str, Any]], None]] = []
        self.before_finalize: list[Callable[[], None]] = []
        """Run just before a run's document is built: integrations close open calls."""
        self.settlers: list[Callable[[], None]] = []
        """Write what integrations hold back to journal in batches (``settle``)."""
        _journal.FLUSHER.before.append(self.settle)
        self.run = Run(settings.workflow_name or _settings.script_stem(), settings.log_dir)
        self.last_document: Path | None = None
        self.disk_since: float | None = None
        """When the current document write started waiting on the disk (monotonic)."""

    # -- configuration ----------------------------------------------------------
    def set_verbosity(self, verbosity: int) -> None:
        self.verbosity = min(max(int(verbosity), 0), 3)
        self.limits = LIMITS[min(max(self.verbosity, 1), 2)]

    def current(self) -> Run:
        run = self.run
        if run.finalized:
            # Events after ``finalize`` start the next run rather than vanish.
            run = self.run = Run(run.workflow_name, run.journal_dir, counters_from=run)
        return run

    # -- conversion -------------------------------------------------------------
    def convert(self, value: object, notes: list[str], path: str) -> object:
        return to_jsonable(value, self.limits, notes, path)

    def content(self, value: object, notes: list[str], path: str) -> object:
        """Convert user content, unless content capture is off."""
        if not self.settings.capture_content:
            return NOT_CAPTURED
        return to_jsonable(value, self.limits, notes, path)

    # -- the hot path -------------------------------------------------------------
    def emit(self, body: dict[str, Any]) -> None:
        """Journal one event. ``body`` must already be JSON-safe (see ``convert``)."""
        run = self.current()
        writer = run.writer
        if writer is None:
            writer = self._open_writer(run)
        writer.append(orjson.dumps(body))
        for sink in self.sinks:
            sink(body)

    def _open_writer(self, run: Run) -> JournalWriter:
        # Asked before the writer is published, so that no event ever waits for a
        # flusher that could not be started (interpreter shutdown): then every event is
        # written as it comes.
        flusher = _journal.FLUSHER.ensure_running()
        with run.lock:
            if run.writer is not None:
                return run.writer
            if run.journal_dir is None:
                run.journal_dir = _settings.default_log_dir()
            path = run.journal_dir / (run.name() + _journal.JOURNAL_SUFFIX)
            writer = JournalWriter(path, self.settings.max_queue_events)
            writer.sync = not flusher
            writer.append(orjson.dumps(run.header(self.verbosity)))
            run.writer = writer
        if flusher:
            _journal.FLUSHER.register(writer, self.settings.flush_interval_s)
        return writer

    def settle(self) -> None:
        """Journal every record still held back: on each flush, and before anything
        reads the run."""
        for settler in self.settlers:
            settler()

    def add_settler(self, settler: Callable[[], None]) -> None:
        if settler not in self.settlers:
            self.settlers.append(settler)

    @staticmethod
    def holding(waiting: int) -> None:
        """A settler now holds ``waiting`` records back: have the flusher take them in
        time (there may be no journal yet, so no flusher), sooner when there are many."""
        if waiting == 1:
            _journal.FLUSHER.ensure_running()
        elif waiting >= _WAKE_AT:
            _journal.FLUSHER.wake.set()

    def keep_error(self, source: str, exc: BaseException) -> None:
        """Hold an internal error in memory when the path to the journal is what fails.

        Built without the serializer or the journal, so that a document written later
        still says what went wrong. Bounded: a hook that keeps failing is switched off by
        its guard long before the bound matters.
        """
        run = self.run
        if len(run.kept_errors) >= _MAX_KEPT_ERRORS:
            return
        try:
            # Lone surrogates would make the whole document unwritable: U+FFFD instead.
            message = fix_surrogates(scrub(str(exc)[:2_000]))
        except Exception:  # noqa: BLE001 - a hostile __str__, or scrub itself failing
            message = "<message unavailable>"
        run.kept_errors.append(
            {
                "ev": "error",
                "seq": (1 << 61) + len(run.kept_errors),
                "t": now_ns(),
                "type": type_name(exc),
                "error": message,
                "traceback": None,
                "source": source,
                "where": {},
            }
        )

    # -- documents ----------------------------------------------------------------
    def document(self, run: Run, status: str | None) -> dict[str, Any]:
        """The run's document as it stands: final when the run has ended."""
        if run is self.run:
            self.settle()
        events: list[dict[str, Any]] = []
        recovery_bits: dict[str, Any] = {}
        writer = run.writer
        if writer is not None:
            # One consistent cut: the flusher must not move lines from the backlog to
            # the file between our reading the one and the other.
            with self.on_disk(), writer.write_lock:
                writer.flush()
                written = writer.read_back()
                with writer.lock:
                    backlog = list(writer.pending)
            parsed = _journal.parse(written)
            del written  # the journal's bytes: not needed beside its parsed events
            events = parsed.events
            if backlog:  # the disk refused them: fold them from memory
                events += _journal.parse(b"\n".join(backlog) + b"\n").events
            if writer.dropped:
                events.append({"ev": "dropped", "count": writer.dropped})
            if parsed.bad_lines:
                recovery_bits["dropped_lines"] = parsed.bad_lines
        else:
            events = [run.header(self.verbosity)]
        events.extend(run.kept_errors)
        if status is not None:
            events.append(
                {
                    "ev": "end",
                    "seq": 1 << 62,
                    "t": now_ns(),
                    "final_status": status,
                    "exit_code": run.exit_code,
                }
            )
        doc = _document.build(events, default_status="in_progress")
        if recovery_bits:
            doc["metadata"].setdefault("notes", []).append(f"journal problems: {recovery_bits}")
        return doc

    def document_path(self, run: Run) -> Path:
        folder = run.doc_dir or run.journal_dir
        if folder is None:
            folder = run.journal_dir = _settings.default_log_dir()
        return folder / (run.name() + _document.DOCUMENT_SUFFIX)

    def finalize(self, status: str | None = None, exit_code: int | None = None) -> Path | None:
        """End the current run: write its document atomically, then drop its journal."""
        run = self.run
        if run.finalized or run.pid != os.getpid():
            return None
        final = run.status_hint = status or run.status_hint or "completed"  # hooks see it
        if exit_code is not None:
            run.exit_code = exit_code
        for hook in self.before_finalize:
            hook()
        if self.verbosity == 0 and run.writer is None:
            run.finalized = True
            return None
        doc = self.document(run, final)
        run.totals = doc["metadata"]["totals"]
        path = self.document_path(run)
        data = _document.dumps_parts(doc)  # consumes the iterations: not both whole at once
        del doc
        with self.on_disk():
            _journal.make_private_dir(path.parent)
            _document.write_atomic(path, data)
        del data
        run.finalized = True
        run.document_path = self.last_document = path
        if run.writer is not None:
            with self.on_disk():
                run.writer.close(unlink=True)
        _document.give_back_memory()
        return path

    @contextlib.contextmanager
    def on_disk(self) -> Iterator[None]:
        """Mark a wait on the disk: the exit's watchdog bounds these, never the CPU work."""
        self.disk_since = time.monotonic()
        try:
            yield
        finally:
            self.disk_since = None

    def save(self, filename: str | os.PathLike[str] | None) -> Path:
        """Write the document as it stands now, to ``filename`` or the run's own path."""
        run = self.run
        if run.finalized:
            # Already final: its document is on disk; copy that, do not fold again.
            assert run.document_path is not None
            data: bytes | list[bytes] = run.document_path.read_bytes()
        else:
            data = _document.dumps_parts(self.document(run, None))
        path = Path(filename) if filename is not None else self.document_path(run)
        if path.parent != Path("."):
            _journal.make_private_dir(path.parent)
        _document.write_atomic(path, data)
        return path

    # -- fork ---------------------------------------------------------------------
    def after_fork_in_child(self) -> None:
        """The child gets its own run; the parent's journal is left to the parent."""
        parent = self.run
        if parent.writer is not None:
            parent.writer.forget_after_fork()
        _journal.FLUSHER.after_fork_in_child()
        child = Run(
            parent.workflow_name, parent.journal_dir, parent.run_id, counters_from=parent
        )
        child.doc_dir = parent.doc_dir
        self.run = child
