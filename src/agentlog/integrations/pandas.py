"""Data frames loaded with ``pandas.read_*`` from a path or URL.

The ``open()`` or HTTP request pandas makes underneath is quiet: one read is one count,
with ``pandas.read_csv`` (say) as its loader. Buffers and literal content are left to
whatever opened them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .._guard import Guard
from .._patching import Patches
from . import _resources
from ._resources import quiet

PATCHES = Patches()
G_PANDAS = Guard("resources.pandas")

READERS = ("read_csv", "read_table", "read_fwf", "read_json", "read_parquet", "read_feather",
           "read_orc", "read_excel", "read_pickle", "read_hdf", "read_stata", "read_sas",
           "read_spss", "read_xml", "read_html")
"""The readers whose first argument is a path, a URL or a buffer."""

_FIRST = ("filepath_or_buffer", "path_or_buf", "path", "io")


def _source(args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    if args:
        return args[0]
    return next((kwargs[k] for k in _FIRST if k in kwargs), None)


def _note(loader: str, source: object) -> None:
    with G_PANDAS:
        found = _resources.source_name(source)
        if found is None:
            return
        name, kind = found
        size = None
        if kind == "file":
            try:
                size = os.path.getsize(name)
            except OSError:
                pass
        _resources.note(name, kind, loader, size)


def _reader(loader: str) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        @functools.wraps(original)
        def read(*args: Any, **kwargs: Any) -> Any:
            if _resources.off() or G_PANDAS.broken:
                return original(*args, **kwargs)
            with quiet():
                result = original(*args, **kwargs)
            _note(loader, _source(args, kwargs))
            return result

        return read

    return make


def install(module: ModuleType) -> None:
    """Wrap ``pandas.read_*`` as the user calls them (``pd.read_csv``)."""
    _resources.install()
    for name in READERS:
        PATCHES.apply(module, name, _reader(f"pandas.{name}"))


def uninstall() -> None:
    PATCHES.remove()
