"""Generic resource-load recording: one entry per resource, counted in memory.

The first load of a resource is journaled at once, on the caller's thread, so it lands in
order and in the right scope. A later load only counts: under one lock, the pending entry
for ``(resource, kind)`` gets its count and last time, and the counts are journaled in
batches, like LLM records: by the flusher thread, and whenever the run is read. A loop
that reads one file a million times costs a dict update per read, and the journal gets
one line per flush, not one per read; the document's fold adds the counts up.

``QUIET`` keeps lower layers silent while a recorded load runs: the ``open()`` inside
``pandas.read_csv``, the HTTP request inside an LLM call, a redirect inside ``requests``.
"""

from __future__ import annotations

import os
import threading
from contextvars import ContextVar
from typing import Any

from .. import _recorder, api
from .._context import Scope, current
from .._guard import Guard
from .._redact import scrub
from .._serialize import fix_surrogates

QUIET: ContextVar[bool] = ContextVar("agentlog_quiet_resources", default=False)
"""True while a recorded load or LLM call runs: what it does underneath is not recorded."""



class quiet:
    """``with quiet():`` sets ``QUIET`` for the block and resets it in the same frame.

    A class, not ``@contextmanager``: an exception passing through adds no frame of ours
    to the caller's traceback.
    """

    __slots__ = ("token",)

    def __enter__(self) -> None:
        self.token = QUIET.set(True)

    def __exit__(self, *exc: object) -> None:
        QUIET.reset(self.token)


G_NOTE = Guard("resources.note")
G_WRITE = Guard("resources.write")

_MAX_NAME = 2_000


class _Pending:
    """Loads of one resource since the last flush."""

    __slots__ = ("count", "first", "last", "loader", "scope", "size")

    def __init__(self, t: int, loader: str, size: int | None, scope: Scope) -> None:
        self.count = 1
        self.first = t
        self.last = t
        self.loader = loader
        self.size = size
        self.scope = scope


_pending: dict[tuple[str, str], _Pending] = {}
_seen: set[tuple[str, str]] = set()
"""Resources already journaled once: their later loads are only counted."""
_MAX_SEEN = 100_000
_lock = threading.Lock()


def off() -> bool:
    """Nothing to record now: verbosity 0, inside a recorded load, or a broken hook."""
    return api.RECORDER.verbosity == 0 or QUIET.get() or G_NOTE.broken


def note(resource: str, kind: str, loader: str, size: int | None = None,
         handle: Any = None) -> None:
    """Count one load of ``resource``: journaled now the first time, else a dict update.

    ``handle``: an open file whose size is the resource's, looked up only the first time.
    """
    t = _recorder.now_ns()
    key = (resource, kind)
    with _lock:
        entry = _pending.get(key)
        if entry is not None:
            entry.count += 1
            entry.last = t
            return
        if key in _seen:  # the first load is journaled with its size; this is a count
            _pending[key] = _Pending(t, loader, size, current.get())
            api.RECORDER.holding(len(_pending))
            return
        if len(_seen) >= _MAX_SEEN:
            _seen.clear()  # then a resource may get one more line: the fold merges it
        _seen.add(key)
    if size is None and handle is not None:
        try:
            size = os.fstat(handle.fileno()).st_size
        except (OSError, AttributeError, ValueError):
            pass
    _write(resource, kind, _Pending(t, loader, size, current.get()))


def name_of(text: str) -> str:
    """A resource name as written: capped, secrets out, valid UTF-8."""
    if len(text) > _MAX_NAME:
        text = text[:_MAX_NAME] + "…"
    return scrub(fix_surrogates(text))


def flush() -> None:
    """Journal every pending count: one event per resource (any thread, any time)."""
    global _pending
    if not _pending:
        return
    with _lock:
        batch, _pending = _pending, {}
    for (resource, kind), entry in batch.items():
        _write(resource, kind, entry)


def _write(resource: str, kind: str, entry: _Pending) -> None:
    rec = api.RECORDER
    if rec.verbosity == 0:
        return
    with quiet(), G_WRITE:  # what agentlog itself reads while writing is not a resource
        scope = entry.scope
        body: dict[str, Any] = {
            "ev": "resource",
            "t": entry.first,
            "resource": name_of(resource),
            "kind": kind,
            "loader": entry.loader,
            "bytes": entry.size,
            "where": {
                "iteration_number": scope.iteration.number if scope.iteration else None,
                "agent_name": scope.agent,
            },
        }
        if entry.count > 1:
            body["count"] = entry.count
            body["t_last"] = entry.last
        rec.emit(body)


def _forget_in_child() -> None:
    # The parent's loads are the parent's to record; the lock may have been held mid-fork.
    global _lock
    _lock = threading.Lock()
    _pending.clear()
    _seen.clear()  # the child's run starts empty: its first loads are journaled again


_installed = False


def install() -> None:
    """Have pending counts journaled by the flusher and before anything reads the run."""
    global _installed
    if _installed:
        return
    _installed = True
    api.RECORDER.add_settler(flush)
    os.register_at_fork(after_in_child=_forget_in_child)


def absolute(path: str) -> str:
    """The absolute, normalised form of a local path; symlinks kept (``os.path.abspath``)."""
    return os.path.normpath(os.path.join(os.getcwd(), path))


def source_name(source: object) -> tuple[str, str] | None:
    """(name, kind) for a path or URL handed to a loader; None for buffers and others."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, bytes):
        source = os.fsdecode(source)
    if not isinstance(source, str) or not source or "\n" in source:
        return None  # a buffer, or literal content (read_json/read_html accept both)
    if "://" in source:
        return source, "url"
    return absolute(os.path.expanduser(source)), "file"  # as pandas and HF read it
