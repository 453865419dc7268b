"""Process lifecycle: exit, uncaught exceptions, SIGTERM/SIGHUP, fork, and recovery.

Every hook chains what was there before and never replaces it: the previous
``sys.excepthook`` still prints the user's traceback, a previous signal handler still
runs, and the default disposition is restored and re-raised so the exit status stays
what it would have been (-15 for SIGTERM).
"""

from __future__ import annotations

import atexit
import contextvars
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import orjson

from . import (
    _context,
    _document,
    _guard,
    _imports,
    _journal,
    _read,
    _recorder,
    _redact,
    _settings,
    api,
)
from ._guard import Guard, internal_errors
from ._recorder import Recorder

_G_EXIT = Guard("lifecycle.exit")
_G_HOOK = Guard("lifecycle.excepthook")
_installed = False
_atexit_registered = False
_prev_excepthook: Callable[..., Any] | None = None
_prev_thread_hook: Callable[..., Any] | None = None
_prev_signals: dict[int, Any] = {}
_HANDLED_SIGNALS = ("SIGTERM", "SIGHUP")
_exit_by_sigint = False
"""The main module ended in an uncaught KeyboardInterrupt: the process must die of SIGINT."""
_last_said: Path | None = None
_mp_finalizer: Any = None


def _rec() -> Recorder:
    return api.RECORDER


# -- exit -----------------------------------------------------------------------------
def _is_multiprocessing_child() -> bool:
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return False
    try:
        return mp.parent_process() is not None
    except Exception:  # noqa: BLE001 - very old or odd multiprocessing
        return False


def _at_exit() -> None:
    """atexit: write the final document and say where it went."""
    try:
        _finish_at_exit()
    finally:
        if _exit_by_sigint:
            _rearm_sigint_exit()


def _raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def _rearm_sigint_exit() -> None:
    """Keep the exit status of an uncaught KeyboardInterrupt: death by SIGINT (-2).

    CPython kills itself with SIGINT at the very end only while a flag, raised when the
    main module ended in KeyboardInterrupt, is still up; every ``eval``/``exec`` of a
    string clears it (a namedtuple or dataclass made by a module we import lazily while
    recording the error, say). An ``eval`` that ends in KeyboardInterrupt raises it again.
    """
    try:
        eval("_raise()", {"_raise": _raise_keyboard_interrupt})
    except KeyboardInterrupt:
        pass


def _finish_at_exit() -> None:
    with _G_EXIT:
        rec = _rec()
        run = rec.run
        if run.pid != os.getpid():
            return
        if run.finalized:
            # The user finalised it already: still say where it went, once.
            if run.document_path is not None and rec.verbosity >= 1:
                _say_summary(rec, run.document_path)
            return
        rec.settle()  # held-back records (LLM calls, resources) open the journal if any
        if run.writer is None and (
            rec.verbosity == 0 or run.parent_run_id is not None or _is_multiprocessing_child()
        ):
            return  # nothing recorded: a child process leaves no empty documents
        _finalize_in_time(rec, None)
    _leave_journal_whole()


def _finalize_in_time(rec: Recorder, status: str | None) -> None:
    """Write the document, waiting on the disk at most ``shutdown_timeout``; say where."""
    timeout = rec.settings.shutdown_timeout_s
    try:
        # Most of the budget for the document, the rest for the journal's last lines.
        path = _bounded(rec, status, timeout * 0.8, timeout)
    except ShutdownTimeout as exc:
        _leave_to_recovery(rec, status)
        if rec.verbosity >= 1:
            _say_unwritten(rec, exc)
        raise  # into error_log (the journal), via the guard
    except OSError as exc:
        # A full or failing disk: the user must hear that there is no document.
        if rec.verbosity >= 1:
            _say_unwritten(rec, exc)
        raise  # into error_log, via the guard
    if path is not None and rec.verbosity >= 1:
        _say_summary(rec, path)


def _leave_journal_whole() -> None:
    """After a swallowed failure too: if no document could be written, leave recovery a
    complete journal, the error that stopped us included."""
    with _G_EXIT:
        rec = _rec()
        run = rec.run
        if not run.finalized and run.pid == os.getpid() and run.writer is not None:
            run.writer.flush(timeout=max(0.05, rec.settings.shutdown_timeout_s * 0.2))


class ShutdownTimeout(TimeoutError):
    """Writing the document at exit took longer than ``shutdown_timeout``."""


def _bounded(rec: Recorder, status: str | None, timeout: float, budget: float) -> Path | None:
    """``rec.finalize(status)`` on a helper thread; give up once the disk is silent
    ``timeout`` s.

    A hung disk (fsync taking 30 s, a flusher stuck in ``write``) must not hold the
    host's exit. Only waits on the disk are bounded (``Recorder.on_disk``), not the CPU
    work of folding a long run. Past the bound the process leaves, the helper (a daemon)
    dies with it, and the journal is left for recovery; ``budget`` is the setting the
    message names. Where no thread can be started (interpreter shutdown) the document
    is written inline, unbounded but never lost.
    """
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, rec.finalize(status)))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread as is
            outcome.append((False, exc))

    context = contextvars.copy_context()
    helper = threading.Thread(
        target=context.run, args=(target,), name="agentlog-finalize", daemon=True
    )
    try:
        helper.start()
    except RuntimeError:
        return rec.finalize(status)
    while not outcome:
        since = rec.disk_since
        if since is not None and time.monotonic() - since >= timeout:
            raise ShutdownTimeout(
                f"writing the document took longer than shutdown_timeout ({budget:g} s)"
            )
        helper.join(0.02)  # returns at once when the helper ends: no added latency
        if not helper.is_alive() and not outcome:
            break  # killed from outside (cannot happen in CPython): nothing to report
    if not outcome:
        return None
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _leave_to_recovery(rec: Recorder, status: str | None) -> None:
    """The document is late: journal how the run ended, so recovery can say it."""
    run = rec.run
    writer = run.writer
    if writer is None or run.finalized:
        return
    # ``Recorder.finalize`` would have written this very status into the document.
    end = {"ev": "end", "t": _recorder.now_ns(),
           "final_status": status or run.status_hint or "completed", "exit_code": run.exit_code}
    writer.append(orjson.dumps(end))


def _say_unwritten(rec: Recorder, exc: OSError) -> None:
    """One line on stderr: the document could not be written; the journal stays."""
    try:
        run = rec.run
        reason = exc.strerror or exc
        line = f"agentlog: cannot write the document {rec.document_path(run)} ({reason})"
        if run.writer is not None:
            line += (
                f"; its journal is kept: run `agentlog recover --dir {run.writer.path.parent}` "
                "once this is fixed"
            )
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - stderr may be closed at exit
        pass


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _say_summary(rec: Recorder, path: Path) -> None:
    global _last_said
    if path == _last_said:
        return  # a fork child's atexit and multiprocessing's exit function both got here
    _last_said = path
    totals = rec.run.totals
    parts = [
        _plural(totals.get("iterations", 0), "iteration"),
        _plural(totals.get("llm_calls", 0), "LLM call"),
    ]
    tokens = sum(totals.get(k, 0) for k in ("input_tokens", "output_tokens"))
    if tokens:
        parts.append(_plural(tokens, "token"))
    if totals.get("cost_usd"):
        cost = totals["cost_usd"]
        parts.append(f"${cost:.4f}" if cost >= 0.01 else f"${cost:.6f}")
    parts.append(_plural(totals.get("errors", 0), "error"))
    if totals.get("dropped_events"):
        parts.append(_plural(totals["dropped_events"], "dropped event"))
    try:
        # ``last`` finds it only in the folder the CLI reads by default; elsewhere, name it.
        hint = "agentlog view last"
        if path.parent != (rec.settings.log_dir or _settings.default_log_dir()):
            hint = f"agentlog view {path}"
        sys.stderr.write(f"agentlog: {path} ({', '.join(parts)}); see it: {hint}\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - stderr may be closed at exit
        pass


# -- uncaught exceptions --------------------------------------------------------------
def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> Any:
    with _G_HOOK:
        run = _rec().current()
        run.status_hint = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
        run.exit_code = -signal.SIGINT if run.status_hint == "interrupted" else 1
        api.record_error(exc, source="uncaught")
    if (
        issubclass(exc_type, KeyboardInterrupt)
        and getattr(sys, "last_value", None) is exc  # the main module's own end
        and not sys.flags.interactive
        and not hasattr(sys, "ps1")
    ):
        global _exit_by_sigint
        _exit_by_sigint = True
    previous = _prev_excepthook or sys.__excepthook__
    return previous(exc_type, exc, tb)


def _thread_excepthook(args: Any) -> Any:
    with _G_HOOK:
        if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
            api.record_error(args.exc_value, source="thread")
    previous = _prev_thread_hook or threading.__excepthook__
    return previous(args)


# -- signals ----------------------------------------------------------------------------
def _on_signal(signum: int, frame: FrameType | None) -> Any:
    previous = _prev_signals.get(signum, signal.SIG_DFL)
    with _G_EXIT:
        _rec().current().status_hint = "terminated"
    if callable(previous):
        # The user's handler decides whether this ends the process; if it returns,
        # the run goes on.
        try:
            return previous(signum, frame)
        finally:
            if sys.exc_info()[0] is None:
                with _G_EXIT:
                    _rec().current().status_hint = None
    with _G_EXIT:
        rec = _rec()
        run = rec.current()
        run.exit_code = -signum
        if not run.finalized and run.pid == os.getpid():
            # On a helper thread, bounded: a hung disk must not keep a dying process.
            _finalize_in_time(rec, "terminated")
    _leave_journal_whole()
    # Die of the same signal, as if we had never been here.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return None


def _install_signals() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    for name in _HANDLED_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        current = signal.getsignal(signum)
        if current in (signal.SIG_IGN, None) or current is _on_signal:
            continue  # ignored on purpose, or set outside Python: leave it be
        _prev_signals[signum] = current
        signal.signal(signum, _on_signal)


def _uninstall_signals() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in list(_prev_signals.items()):
        if signal.getsignal(signum) is _on_signal:
            signal.signal(signum, previous)
        del _prev_signals[signum]


# -- fork -----------------------------------------------------------------------------
def _after_fork_in_child() -> None:
    # Another thread may have held any of these at fork time; it does not exist here.
    _guard._lock = threading.Lock()
    _redact._lock = threading.Lock()
    _imports._lock = threading.RLock()
    with _G_EXIT:
        _rec().after_fork_in_child()
        _hang_on_mp_exit()


def _watch_mp_children(mp_util: Any) -> None:
    """Make every multiprocessing child, whatever its start method, write its document.

    ``Process._bootstrap`` clears the finalizers a child inherited, then runs the
    after-fork callbacks: ours hangs ``_at_exit`` on the child's exit there. A forkserver
    child imports agentlog only after its fork (3.11 does not preload ``__main__``), so
    the at-fork hook never runs in it; this callback does.
    """
    mp_util.register_after_fork(_rec(), _hang_on_mp_exit)
    if _is_multiprocessing_child():
        _hang_on_mp_exit()  # imported inside a running worker: its bootstrap is over


def _hang_on_mp_exit(_: object = None) -> None:
    """Run ``_at_exit`` from multiprocessing's exit function too (once per process).

    multiprocessing's fork children leave through ``os._exit``, skipping atexit; its own
    exit function still runs finalizers.
    """
    global _mp_finalizer
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None or (_mp_finalizer is not None and _mp_finalizer.still_active()):
        return
    _mp_finalizer = mp_util.Finalize(None, _at_exit, exitpriority=-100)


# -- install ----------------------------------------------------------------------------
extensions: list[tuple[Callable[[], None], Callable[[], None]]] = []
"""(install, uninstall) pairs run with the process hooks: the integrations, wired in
``agentlog/__init__.py`` so that the core never imports them."""


def install_hooks() -> None:
    """Hook the process once: exit, excepthooks, signals, fork, thread context."""
    global _installed, _atexit_registered, _prev_excepthook, _prev_thread_hook
    if _installed:
        return
    with internal_errors("lifecycle.install"):
        _installed = True
        if not _atexit_registered:
            _atexit_registered = True
            atexit.register(_at_exit)
        if sys.excepthook is not _excepthook:
            _prev_excepthook = sys.excepthook
            sys.excepthook = _excepthook
        if threading.excepthook is not _thread_excepthook:
            _prev_thread_hook = threading.excepthook
            threading.excepthook = _thread_excepthook
        _install_signals()
        _context.install()
    for on, _ in extensions:
        with internal_errors("lifecycle.install"):
            on()


def uninstall_hooks() -> None:
    """Undo ``install_hooks``; what others installed since stays as they left it."""
    global _installed
    if not _installed:
        return
    for _, off in extensions:
        with internal_errors("lifecycle.uninstall"):
            off()
    with internal_errors("lifecycle.uninstall"):
        _installed = False
        # ``_at_exit`` stays registered: what was recorded before ``set_logging(False)``
        # must still become a document, not a journal that recovery calls "crashed". It
        # does nothing for a run that recorded nothing.
        if sys.excepthook is _excepthook:
            sys.excepthook = _prev_excepthook or sys.__excepthook__
        if threading.excepthook is _thread_excepthook:
            threading.excepthook = _prev_thread_hook or threading.__excepthook__
        _uninstall_signals()
        _context.uninstall()


_fork_registered = False


def register_fork_handler() -> None:
    global _fork_registered
    if not _fork_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_registered = True
        _imports.when_imported("multiprocessing.util", _watch_mp_children)


# -- recovery ---------------------------------------------------------------------------
def recover_journal(path: Path) -> Path | None:
    """Turn the journal of a dead run into a document with ``final_status: crashed``."""
    fd = _journal.try_lock(path)
    if fd is None:
        return None  # its owner still holds it
    try:
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return None  # another recoverer finished it between our open and our lock
        except FileNotFoundError:
            return None
        if not _journal.is_journal(fd, path.name):
            return None  # a .jsonl of the user's own, in the same folder: never touched
        parsed = _journal.parse(_journal.read_fd(fd))
        doc = _read.fold(parsed, path.name, alive=False)
        header = next((e for e in parsed.events if e.get("ev") == "run"), {})
        folder = Path(str(header["doc_dir"])) if header.get("doc_dir") else path.parent
        for ev in parsed.events:
            if ev.get("ev") == "meta" and ev.get("doc_dir"):
                folder = Path(str(ev["doc_dir"]))
        target = folder / (path.name[: -len(_journal.JOURNAL_SUFFIX)] + _document.DOCUMENT_SUFFIX)
        # A finished run whose journal outlived its document keeps that document; a
        # ``save_log()`` snapshot (still in progress) is replaced: the journal has more.
        if not _is_final_document(target):
            _journal.make_private_dir(folder)
            _document.write_atomic(target, _document.dumps_parts(doc))
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass  # a recoverer in another process got there first
        return target
    finally:
        os.close(fd)


def _is_final_document(path: Path) -> bool:
    """A document is at ``path`` and it is not an in-progress ``save_log()`` snapshot."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # there but unreadable: leave it alone
    try:
        status: object = orjson.loads(data).get("final_status")
    except (orjson.JSONDecodeError, AttributeError):
        return False  # not a document of ours: the journal's is better
    return status != "in_progress"


def _tmp_owner_dead(name: str) -> bool:
    # ".<doc>.tmp.<pid>.<hex>": left by an atomic write that never finished.
    try:
        pid = int(name.rsplit(".", 2)[-2])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


_recover_lock = threading.Lock()
recovered: list[tuple[Path, Path]] = []
"""(journal folder, document) of every run this process recovered, import-time ones too."""


def recover_dir(folder: Path) -> list[Path]:
    """Recover every dead run's journal in ``folder``; remove stale temp files.

    One pass at a time per process: ``agentlog recover`` waits for the pass its own
    import started, rather than exit while that pass is half done.
    """
    with _recover_lock:
        return _recover_dir(folder)


def _recover_dir(folder: Path) -> list[Path]:
    written: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return written
    own = _rec().run.writer
    for entry in entries:
        name = entry.name
        if name.endswith(_journal.JOURNAL_SUFFIX):
            if own is not None and Path(entry.path) == own.path:
                continue
            with internal_errors("lifecycle.recover"):
                target = recover_journal(Path(entry.path))
                if target is not None:
                    written.append(target)
                    recovered.append((folder, target))
        elif ".tmp." in name and name.startswith(".") and _tmp_owner_dead(name):
            try:
                os.unlink(entry.path)
            except OSError:
                pass
    return written


def recover_in_background(folder: Path | None) -> None:
    """At import: look for dead runs' journals and recover them off the main thread.

    ``None`` means the default folder, whose path (platformdirs) is also worked out on
    the flusher thread, so the import pays for neither.
    """

    def task() -> None:
        target = folder if folder is not None else _settings.default_log_dir()
        try:
            names = os.listdir(target)
        except OSError:
            return
        if any(n.endswith(_journal.JOURNAL_SUFFIX) or ".tmp." in n for n in names):
            recover_dir(target)

    _journal.FLUSHER.tasks.append(task)
    if _journal.FLUSHER.ensure_running():
        _journal.FLUSHER.wake.set()
