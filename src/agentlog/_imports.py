"""Post-import hooks: run a callback when a module is first imported.

The same idea as ``wrapt.register_post_import_hook``, in a few lines, because importing
wrapt pulls in asyncio and costs more than agentlog's whole import budget. A callback
runs under the guard, so a failing hook never breaks the user's ``import``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from ._guard import internal_errors

Hook = Callable[[ModuleType], None]
_hooks: dict[str, list[Hook]] = {}
_lock = threading.RLock()
_local = threading.local()


def _run(name: str, module: ModuleType) -> None:
    with _lock:
        hooks = _hooks.pop(name, [])
    for hook in hooks:
        with internal_errors(f"import-hook:{name}"):
            hook(module)


class _Loader(importlib.abc.Loader):
    """Delegates to the real loader, then fires the hooks for the module."""

    def __init__(self, real: Any, name: str) -> None:
        self.real = real
        self.name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self.real, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        # Restore the real loader first, so the module looks untouched to anyone
        # who inspects ``__loader__``/``__spec__.loader`` (importlib.reload, pkgutil).
        module.__loader__ = self.real
        if module.__spec__ is not None:
            module.__spec__.loader = self.real
        self.real.exec_module(module)
        _run(self.name, sys.modules.get(self.name, module))

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.real, attr)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _hooks or getattr(_local, "busy", False):
            return None
        _local.busy = True  # find the real spec with every other finder
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            _local.busy = False
        real = spec.loader
        if real is None and spec.submodule_search_locations is not None:
            real = _namespace_loader(spec.submodule_search_locations)
        if real is None or not hasattr(real, "exec_module"):
            return spec
        spec.loader = _Loader(real, fullname)
        return spec


def _namespace_loader(path: Any) -> Any:
    """The loader the import system gives a namespace package (``mistralai`` 3.x is one),
    made here so that its import can fire hooks too; the same two lines as CPython's."""
    cls: Any = getattr(importlib.machinery, "NamespaceLoader", None)  # Python 3.11+
    if cls is None:
        import importlib._bootstrap_external as external

        cls = external._NamespaceLoader
    loader = cls.__new__(cls)
    loader._path = path
    return loader


_FINDER = _Finder()


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once ``name`` is imported (now, if it already is)."""
    module = sys.modules.get(name)
    if module is not None:
        with internal_errors(f"import-hook:{name}"):
            hook(module)
        return
    with _lock:
        _hooks.setdefault(name, []).append(hook)
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)


def forget(name: str) -> None:
    """Drop the hooks still waiting for ``name``."""
    with _lock:
        _hooks.pop(name, None)
