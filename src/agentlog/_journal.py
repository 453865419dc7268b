"""The append-only JSONL journal of a run, and the flusher that writes it.

Appending is a deque append of already-serialised bytes: no syscall, no fsync. One
daemon thread per process writes every journal's backlog at most ``flush_interval``
after an event. ``write()`` into the page cache is enough to survive SIGKILL of the
process; fsync is left to the document write at the end. When no thread can be started
(at interpreter shutdown), each append is written inline instead.

Drop policy (backpressure): the backlog not yet written is bounded, by
``max_events`` (``AGENTLOG_MAX_QUEUE``, 100,000) and by ``MAX_PENDING_BYTES`` (64 MiB).
When a slow or failing disk lets it fill up, the *newest* events are refused (as Sentry
does; OpenTelemetry drops the oldest instead), until the disk has taken some of the
backlog: what was accepted is never thrown away, keeps its order, and its seqs have no
holes (a refused event gets none). Each refused event is counted; the count is journaled
as a ``dropped`` note, lands in ``metadata.totals.dropped_events`` and in the exit line,
and the first drop or write failure is warned about once on stderr.

Each journal is held under ``flock`` for its owner's lifetime, so a journal whose lock
can be taken belongs to a dead process and may be recovered.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path

import orjson

from ._guard import Guard

JOURNAL_SUFFIX = ".jsonl"
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
_WRITE_CHUNK = 1 << 20
MAX_PENDING_BYTES = 64 << 20
"""Bytes of backlog kept while the disk cannot keep up; later events are dropped."""

_FLUSH_GUARD = Guard("journal.flush")


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700 whatever the umask; leave existing ones alone."""
    if path.is_dir():
        return
    missing: list[Path] = []
    while not path.is_dir() and path.parent != path:
        missing.append(path)
        path = path.parent
    # One at a time: ``mkdir(parents=True)`` gives the parents the umask's mode (0777
    # under umask 000), not ours.
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made meanwhile by another thread or process: theirs to keep
        try:
            os.chmod(folder, 0o700)  # mkdir's mode was masked by the umask
        except OSError:
            pass


class JournalWriter:
    """One run's journal: a bounded in-memory backlog and the file it drains into."""

    def __init__(self, path: Path, max_events: int, max_bytes: int = MAX_PENDING_BYTES) -> None:
        self.path = path
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.pending_bytes = 0
        self.high_water = max(1, min(max_events // 8, 4096))
        self.fd: int | None = None
        self.pending: deque[bytes] = deque()
        self.seq = 0
        # Re-entrant: a signal handler on the main thread may emit while the main
        # thread is inside ``append``; a plain Lock would deadlock there.
        self.lock = threading.RLock()
        self.write_lock = threading.RLock()
        self.dropped = 0
        self._dropped_written = 0
        self._torn = False
        self._failing = False
        self.warned = False
        self.closed = False
        self.sync = False
        """No flusher thread could be started: ``append`` writes inline."""

    # -- hot path -------------------------------------------------------------
    def append(self, body: bytes) -> int:
        """Queue one event (``body`` is a JSON object without ``seq``); return its seq.

        Returns -1 when the backlog is full: the event is dropped and counted.
        """
        with self.lock:
            if (
                len(self.pending) >= self.max_events
                or (self.pending_bytes >= self.max_bytes and self.pending)
                or self.closed
            ):
                self.dropped += 1
                return -1
            seq = self.seq
            self.seq = seq + 1
            line = b'{"seq":%d,' % seq + body[1:]
            self.pending.append(line)
            self.pending_bytes += len(line)
            if len(self.pending) == self.high_water:
                FLUSHER.wake.set()  # a burst: drain now rather than at the next tick
        if self.sync:
            self.flush(timeout=1.0)
        return seq

    # -- draining -------------------------------------------------------------
    def _open(self) -> int:
        """Create the journal already locked, so recovery never sees it unlocked.

        It is made under a temporary name, locked, then renamed into place: a live run's
        journal is never, even for a moment, an unlocked file that looks abandoned.
        """
        make_private_dir(self.path.parent)
        tmp = self.path.with_name(f".{self.path.name}.tmp.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, _OPEN_FLAGS, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pass  # no flock on this filesystem: nothing better to do than go on
            # Names are unique per run; still, never replace someone else's file.
            if os.path.lexists(self.path):
                raise FileExistsError(errno.EEXIST, "journal exists", str(self.path))
            # A rename (not link + unlink) so /proc/self/fd names the journal itself.
            os.rename(tmp, self.path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return fd

    def flush(self, timeout: float = -1) -> bool:
        """Write the backlog. True when it is fully on disk (page cache)."""
        if not self.write_lock.acquire(timeout=timeout):
            return False
        try:
            return self._flush_locked()
        finally:
            self.write_lock.release()

    def _flush_locked(self) -> bool:
        if not self.pending and self.dropped == self._dropped_written:
            return True
        if self.closed and self.fd is None:
            return False  # finished (or the parent's, after a fork): never made again
        try:
            if self.fd is None:
                self.fd = self._open()
            if self._torn:
                self._write_all(b"\n")
                self._torn = False
            dropping = self.dropped != self._dropped_written
            if dropping:
                # Recovery sees drops even if the process dies before the end event.
                self._queue_drop_note()
            while self.pending:
                # Lines leave the backlog only once they are on disk: while a write is
                # failing they still count against ``max_events``, and a retry never
                # writes twice what a short write already got out.
                with self.lock:
                    batch: list[bytes] = []
                    size = 0
                    for line in self.pending:
                        batch.append(line)
                        size += len(line) + 1
                        if size >= _WRITE_CHUNK:
                            break
                data = b"\n".join(batch) + b"\n"
                try:
                    self._write_all(data)
                except OSError as exc:
                    # Keep what is not whole on disk for the next try: space may come back.
                    self._pop(data.count(b"\n", 0, getattr(exc, "agentlog_written", 0)))
                    raise
                self._pop(len(batch))
            if dropping:  # said after the write: a failing disk, if it fails, is the cause
                self._warn(
                    "events come faster than the disk takes them; newer ones are "
                    "dropped and counted (metadata.totals.dropped_events)"
                )
            if self._failing:
                self._failing = False
            return True
        except OSError as exc:
            self._note_failure(exc)
            return False

    def _write_all(self, data: bytes) -> None:
        """Write all of ``data``; an error is raised with ``agentlog_written`` (bytes out)."""
        assert self.fd is not None
        view = memoryview(data)
        done = 0
        while done < len(data):
            try:
                done += os.write(self.fd, view[done:])
            except OSError as exc:
                if done and data[done - 1] != 0x0A:
                    self._torn = True  # half a line is on disk: end it before the next
                exc.agentlog_written = done  # type: ignore[attr-defined]
                raise

    def _pop(self, count: int) -> None:
        with self.lock:
            for _ in range(count):
                self.pending_bytes -= len(self.pending.popleft())

    def _queue_drop_note(self) -> None:
        """Journal the drop count, if there is room; if not, a later flush tries again.

        Never through ``append``: a note refused by a full backlog would count itself
        as one more drop, at every flush, for as long as the disk fails.
        """
        with self.lock:
            if len(self.pending) >= self.max_events or self.closed:
                return
            seq = self.seq
            self.seq = seq + 1
            self._dropped_written = self.dropped
            line = b'{"seq":%d,"ev":"dropped","count":%d}' % (seq, self.dropped)
            self.pending.append(line)
            self.pending_bytes += len(line)

    def _note_failure(self, exc: OSError) -> None:
        self._failing = True
        if exc.errno in (
            errno.ENOSPC, errno.EIO, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.ENOENT,
        ):
            self._warn(
                f"cannot write the journal {self.path} ({exc.strerror}); "
                "events are kept in memory up to a bound, then dropped and counted"
            )

    def _warn(self, message: str) -> None:
        """One line on stderr, once per journal: a failing disk or the first drop."""
        if self.warned:
            return
        self.warned = True
        try:
            sys.stderr.write(f"agentlog: {message}\n")
        except Exception:  # noqa: BLE001 - stderr may be gone
            pass

    def read_back(self) -> bytes:
        """Everything written so far, read through our own descriptor.

        Works even when the folder was deleted under us: the descriptor still holds
        the file.
        """
        return b"" if self.fd is None else read_fd(self.fd)

    def close(self, unlink: bool) -> None:
        self.closed = True
        fd, self.fd = self.fd, None
        if fd is None:
            return
        if unlink:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        os.close(fd)

    def forget_after_fork(self) -> None:
        """In a forked child: the parent owns this journal; drop it without writing."""
        self.closed = True
        self.pending.clear()
        self.pending_bytes = 0
        self.lock = threading.RLock()
        self.write_lock = threading.RLock()
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)  # the parent's lock stays: it is the parent's description
            except OSError:
                pass


class _Flusher:
    """The one background thread that drains every live journal."""

    def __init__(self) -> None:
        self.writers: weakref.WeakSet[JournalWriter] = weakref.WeakSet()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.interval = 0.5
        self.tasks: deque[object] = deque()
        self.before: list[Callable[[], None]] = []
        """Run on every wake, before the journals are flushed (batched record writing)."""

    def register(self, writer: JournalWriter, interval: float) -> None:
        self.writers.add(writer)
        if interval < self.interval:
            self.interval = interval
            # The loop may be waiting out the old, longer interval: the first events of
            # this writer would wait that long, not ``interval``.
            self.wake.set()
        self.ensure_running()

    def ensure_running(self) -> bool:
        if self.thread is not None and self.thread.is_alive():
            return True
        thread = threading.Thread(target=self._loop, name="agentlog-flusher", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            # "can't create new thread at interpreter shutdown": callers flush inline.
            return False
        self.thread = thread
        return True

    def _loop(self) -> None:
        while True:
            # Twice per interval: an event that just missed a pass is then on disk within
            # the interval, writing time included, not up to an interval plus that time.
            self.wake.wait(self.interval / 2)
            self.wake.clear()
            for hook in self.before:
                with _FLUSH_GUARD:
                    hook()
            while self.tasks:
                task = self.tasks.popleft()
                with _FLUSH_GUARD:
                    task()  # type: ignore[operator]
            for writer in list(self.writers):
                if writer.closed:
                    continue
                with _FLUSH_GUARD:
                    writer.flush(timeout=1.0)

    def after_fork_in_child(self) -> None:
        self.writers = weakref.WeakSet()
        self.wake = threading.Event()
        self.thread = None
        self.tasks = deque()


FLUSHER = _Flusher()


# -- reading ------------------------------------------------------------------
class ReadResult:
    """Events parsed from a journal, with what had to be dropped."""

    __slots__ = ("bad_lines", "dropped_tail_bytes", "events")

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.dropped_tail_bytes = 0
        self.bad_lines = 0


def parse(data: bytes) -> ReadResult:
    """Parse journal bytes. A torn last line is dropped and its size reported."""
    result = ReadResult()
    if not data:
        return result
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: empty, or a torn line
    if tail:
        result.dropped_tail_bytes = len(tail)
    for line in lines:
        if not line:
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            result.bad_lines += 1
            continue
        if isinstance(event, dict):
            result.events.append(event)
        else:
            result.bad_lines += 1
    return result


def try_lock(path: Path) -> int | None:
    """Open and lock a journal whose owner is gone; None while its owner lives."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


JOURNAL_HEAD = b'{"seq":0,"ev":"run",'
"""How every journal starts: its run header is always its first line."""


_JOURNAL_NAME = re.compile(r"_\d{8}_\d{6}_[0-9A-Z]{8}\.jsonl\Z")


def is_journal(fd: int, name: str) -> bool:
    """Is this file one of ours? Its first bytes say (a user's file may be huge); a file
    cut before its header was whole is ours only if it also has our kind of name."""
    try:
        head = os.pread(fd, len(JOURNAL_HEAD), 0)
    except OSError:
        return False
    return head == JOURNAL_HEAD or (
        JOURNAL_HEAD.startswith(head) and _JOURNAL_NAME.search(name) is not None)


def read_fd(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, _WRITE_CHUNK, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)
