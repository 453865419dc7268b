"""Files the workflow reads: ``open()`` / ``io.open`` in read modes, and so ``pathlib``.

``builtins.open`` and ``io.open`` are one object, and ``Path.open``/``read_text``/
``read_bytes`` call ``io.open``: one wrapper, put in both places, sees them all. It keeps
the original's name, module (``io``) and ``__wrapped__``, so ``pickle.dumps(open)`` writes
the same bytes as without agentlog and ``copy.deepcopy(open)`` returns ``open`` itself.

Only the user's data is kept: files under the interpreter's prefixes, in site-packages,
in agentlog's own package or log folders, in system folders (``/proc``, ``/sys``,
``/dev``, ``/etc``, ``/usr``...), per-user tool folders (``~/.cache``, ``~/.config``,
``~/.local``) and Python sources are left out. The decision is cached per path, so a
repeated read costs a dict lookup and a count.
"""

from __future__ import annotations

import builtins
import io
import os
import site
import sys
from typing import Any

from .. import api
from .._guard import BREAKER_THRESHOLD as _BREAK
from .._patching import Patches
from . import _resources
from ._resources import G_NOTE, QUIET

PATCHES = Patches()

_SKIP_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi", ".pth")
_SYSTEM = ("/proc/", "/sys/", "/dev/", "/etc/", "/usr/", "/lib/", "/lib64/", "/run/",
           "/var/lib/", "/snap/", "/nix/store/")
_PREFIX_PARTS = ("lib", "lib64", "include", "bin", "share", "etc", "Lib", "Scripts", "Include")
_HOME_TOOLS = (".cache/", ".config/", ".local/", ".netrc", "_netrc", ".pki/")
_skip_prefixes: tuple[str, ...] = ()

_MAX_CACHED = 4_096
_decided: dict[str, str | None] = {}
"""Path as passed (relative ones prefixed with the cwd) -> resource name, or None: skip."""


def _folder(path: str | os.PathLike[str] | None) -> str | None:
    if not path:
        return None
    text = os.path.normpath(os.path.abspath(os.fspath(path)))
    return text.rstrip("/") + "/"


def _static_prefixes() -> tuple[str, ...]:
    """Folders that never hold the user's data, known at install time."""
    found: list[str | None] = []
    cwd = _folder(os.getcwd()) or "/"
    for prefix in map(_folder, {sys.prefix, sys.base_prefix, sys.exec_prefix,
                                sys.base_exec_prefix}):
        if prefix and cwd.startswith(prefix):
            # The project is inside the prefix (``python -m venv .``): only its
            # interpreter folders are the interpreter's.
            found += [prefix + sub + "/" for sub in _PREFIX_PARTS]
        else:
            found.append(prefix)
    try:
        found += [_folder(p) for p in site.getsitepackages()]
        found.append(_folder(site.getusersitepackages()))
    except Exception:  # noqa: BLE001 - ``site`` differs in embedded interpreters
        pass
    found.append(_folder(os.path.dirname(os.path.dirname(__file__))))  # agentlog itself
    home = os.path.expanduser("~")
    if home and home != "~":
        found += [os.path.join(home, tool) for tool in _HOME_TOOLS]
    for var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        found.append(_folder(os.environ.get(var)))
    return tuple(sorted({p for p in found if p and p != "/"})) + _SYSTEM


def _log_folders() -> list[str]:
    """Where agentlog writes: its documents and journals are never the user's data."""
    rec = api.RECORDER
    run = rec.run
    folders = [rec.settings.log_dir, run.journal_dir, run.doc_dir]
    if rec.settings.log_dir is None:
        from .._settings import default_log_dir

        folders.append(default_log_dir())
    return [f for f in (_folder(p) for p in folders) if f]


def decide(path: str) -> str | None:
    """The resource name of an absolute, normalised path, or None when it is not data."""
    if path.endswith(_SKIP_SUFFIXES) or path.startswith(_skip_prefixes):
        return None
    if "/site-packages/" in path or "/dist-packages/" in path or "/__pycache__/" in path:
        return None
    if path.startswith(tuple(_log_folders())):
        return None
    return path


_MISS = object()


def _name(file: Any) -> str | None:
    """The resource name for what was passed to ``open``; None when it is not data."""
    cls = type(file)
    if cls is int:
        return None  # a file descriptor: its file was opened, and seen, elsewhere
    path = file if cls is str else os.fspath(file)
    if type(path) is bytes:
        path = os.fsdecode(path)
    key = path if path[:1] == "/" else os.getcwd() + "\0" + path
    name = _decided.get(key, _MISS)
    if name is not _MISS:
        return name  # type: ignore[return-value]
    name = decide(_resources.absolute(path) if path[:1] != "/" else os.path.normpath(path))
    if len(_decided) >= _MAX_CACHED:
        _decided.clear()
    _decided[key] = name
    return name


def _make_open(original: Any) -> Any:
    rec = api.RECORDER
    guard = G_NOTE
    note = _resources.note

    # The hot path: a mode test, a ContextVar read, the cached decision and a count.
    def open(file: Any, mode: Any = "r", *args: Any, **kwargs: Any) -> Any:
        handle = original(file, mode, *args, **kwargs)
        if "r" in mode and rec.verbosity and not QUIET.get() and guard.failures < _BREAK:
            try:
                # An absolute str path is its own cache key (relative keys hold the cwd).
                name = _decided.get(file, _MISS) if type(file) is str else _MISS
                if name is _MISS:
                    name = _name(file)
                if name is not None:
                    note(name, "file", "open", None, handle)  # type: ignore[arg-type]
            except Exception as exc:  # the guard reports it (re-raises under pytest)
                with guard:
                    raise exc
        return handle

    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(open, attr, getattr(original, attr, None))
    open.__wrapped__ = original  # type: ignore[attr-defined]
    return open


_wrappers: dict[int, Any] = {}


def _wrapper(original: Any) -> Any:
    """One wrapper per original, so ``open is io.open`` stays true."""
    found = _wrappers.get(id(original))
    if found is None or found.__wrapped__ is not original:
        found = _wrappers[id(original)] = _make_open(original)
    return found


def install() -> None:
    """Wrap ``builtins.open`` and ``io.open``; idempotent."""
    global _skip_prefixes
    if not _skip_prefixes:
        _skip_prefixes = _static_prefixes()
    _resources.install()
    PATCHES.apply(builtins, "open", _wrapper)
    PATCHES.apply(io, "open", _wrapper)


def uninstall() -> None:
    """Put the originals back."""
    PATCHES.remove()
    _decided.clear()
