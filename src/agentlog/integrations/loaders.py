"""Document loaders: LangChain's ``BaseLoader.load``/``lazy_load`` and LlamaIndex's
``BaseReader.load_data``/``lazy_load_data`` (kind ``loader``).

Every loader overrides these methods, so the base class alone is not enough: the
subclasses that exist now are patched at install, and those defined later as they are
created (``__init_subclass__``). The entry names the loader's source (its file path, URL
or folder) and, as ``loader``, its class. The files it opens underneath stay quiet, also
while a lazy loader's iterator is being read.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from .._guard import Guard
from .._imports import forget, when_imported
from .._patching import Patches
from . import _resources
from ._resources import quiet

PATCHES = Patches()
G_LOADER = Guard("resources.loader")

# base class -> (module, methods that load)
_BASES = {
    "langchain_core": ("langchain_core.document_loaders.base", "BaseLoader",
                       ("load", "lazy_load", "aload")),
    "llama_index.core": ("llama_index.core.readers.base", "BaseReader",
                         ("load_data", "lazy_load_data", "aload_data")),
}
_SOURCE_ATTRS = ("file_path", "path", "web_path", "web_paths", "url", "urls", "input_dir",
                 "input_files", "source", "dataset_path", "bucket", "query")


def _source(loader: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """What a loader reads: its first path-like argument or attribute, else its class."""
    candidates = [*args, *(kwargs[k] for k in ("file", "input_file", "path") if k in kwargs)]
    candidates += [getattr(loader, a, None) for a in _SOURCE_ATTRS]
    for value in candidates:
        if isinstance(value, (list, tuple)) and value:
            value = value[0]
        found = _resources.source_name(value)
        if found is not None:
            return found[0]
    return type(loader).__qualname__


def _record(loader: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with G_LOADER:
        cls = type(loader)
        _resources.note(_source(loader, args, kwargs), "loader",
                        f"{cls.__module__.partition('.')[0]}:{cls.__qualname__}")


_END = object()


def _quiet_iter(inner: Iterator[Any]) -> Iterator[Any]:
    # QUIET is set and reset around each step, never across a ``yield``.
    while True:
        with quiet():
            item = next(inner, _END)
        if item is _END:
            return
        yield item


def _wrap(original: Any) -> Any:
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def aload(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _resources.off():
                return await original(self, *args, **kwargs)
            with quiet():
                result = await original(self, *args, **kwargs)
            _record(self, args, kwargs)
            return result

        return aload

    @functools.wraps(original)
    def load(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _resources.off():
            return original(self, *args, **kwargs)
        with quiet():
            result = original(self, *args, **kwargs)
        _record(self, args, kwargs)
        if inspect.isgenerator(result):  # lazy: its reads happen as it is iterated
            return _quiet_iter(result)
        return result

    return load


def _patch(cls: type, methods: tuple[str, ...]) -> None:
    for name in methods:
        if inspect.isfunction(cls.__dict__.get(name)):
            PATCHES.apply(cls, name, _wrap)


def _subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


_hooked: list[tuple[type, Any]] = []
"""(base class, the ``__init_subclass__`` it had itself, or None) to put back."""


def _hook_new_subclasses(base: type, methods: tuple[str, ...]) -> None:
    """Patch each subclass as it is defined; the base's own hook, if any, runs first."""
    if any(b is base for b, _ in _hooked):
        return
    previous = base.__dict__.get("__init_subclass__")
    own = getattr(previous, "__func__", None)

    def __init_subclass__(cls: Any, **kwargs: Any) -> None:
        if own is not None:
            own(cls, **kwargs)
        else:
            super(base, cls).__init_subclass__(**kwargs)  # type: ignore[arg-type]
        with G_LOADER:
            _patch(cls, methods)

    base.__init_subclass__ = classmethod(__init_subclass__)  # type: ignore[assignment,arg-type]
    _hooked.append((base, previous))


def _install_base(base: type, methods: tuple[str, ...]) -> None:
    _patch(base, methods)
    for sub in list(_subclasses(base)):
        _patch(sub, methods)
    _hook_new_subclasses(base, methods)


def install(module: ModuleType) -> None:
    """Patch the loader base class of LangChain or LlamaIndex, and its subclasses, once
    the module that defines it is imported (not before: it costs import time)."""
    _resources.install()
    where, base_name, methods = _BASES[module.__name__]
    when_imported(where, lambda found: _install_base(getattr(found, base_name), methods))


def uninstall() -> None:
    for where, _, _ in _BASES.values():
        forget(where)
    PATCHES.remove()
    while _hooked:
        base, previous = _hooked.pop()
        if previous is None:
            del base.__init_subclass__
        else:
            base.__init_subclass__ = previous  # type: ignore[method-assign]
