"""Hugging Face: ``datasets.load_dataset`` (kind ``dataset``), ``from_pretrained`` of
``transformers`` models, tokenizers and configs, and ``sentence_transformers`` models
(kind ``model``).

``transformers`` loads its submodules lazily, and touching ``PreTrainedModel`` would import
torch: each class is patched only when the user's code imports its module. The file reads
and downloads a load makes underneath are quiet; the entry names what the user asked for
(a hub id or a local folder).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .._guard import Guard
from .._imports import forget, when_imported
from .._patching import Patches
from . import _resources
from ._resources import quiet

PATCHES = Patches()
G_HF = Guard("resources.hf")

# transformers submodule -> classes whose ``from_pretrained`` loads a model's files.
_TRANSFORMERS = {
    "transformers.modeling_utils": ("PreTrainedModel",),
    "transformers.tokenization_utils_base": ("PreTrainedTokenizerBase",),
    "transformers.configuration_utils": ("PretrainedConfig",),
    "transformers.models.auto.auto_factory": ("_BaseAutoModelClass",),
    "transformers.models.auto.tokenization_auto": ("AutoTokenizer",),
    "transformers.models.auto.configuration_auto": ("AutoConfig",),
}
_SENTENCE = ("SentenceTransformer", "CrossEncoder")


def _name(value: object) -> str | None:
    """A hub id stays as written; a local path becomes absolute, as files are named."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        return None
    if "://" not in value and os.path.exists(os.path.expanduser(value)):
        return _resources.absolute(os.path.expanduser(value))
    return value


def _loads(kind: str, loader: str, name_of: Callable[[tuple[Any, ...], dict[str, Any]], list[str]]
           ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a loading function: quiet underneath, one count per name once it returned."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def load(*args: Any, **kwargs: Any) -> Any:
            if _resources.off() or G_HF.broken:
                return original(*args, **kwargs)
            with quiet():
                result = original(*args, **kwargs)
            with G_HF:
                for name in name_of(args, kwargs):
                    _resources.note(name, kind, loader)
            return result

        return load

    return wrap


def _dataset_names(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    path = args[0] if args else kwargs.get("path")
    files = kwargs.get("data_files")
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    if isinstance(files, dict):  # {"train": ..., "test": [...]}
        files = [f for v in files.values() for f in (v if isinstance(v, list) else [v])]
    if isinstance(files, list) and files:  # a packaged builder ("csv") reading these files
        return [n for n in (_name(f) for f in files) if n]
    name = _name(path)
    if name is None:
        return []
    config = args[1] if len(args) > 1 else kwargs.get("name")
    return [f"{name}:{config}" if isinstance(config, str) and config else name]


def _first(skip_self: bool, *keys: str) -> Callable[[tuple[Any, ...], dict[str, Any]], list[str]]:
    def names(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        rest = args[1:] if skip_self else args
        value = rest[0] if rest else next((kwargs[k] for k in keys if k in kwargs), None)
        name = _name(value)
        return [name] if name else []

    return names


def _classmethod(loader: str) -> Callable[[Any], Any]:
    """``from_pretrained`` is a classmethod: wrap its function, keep it a classmethod."""

    def make(original: Any) -> Any:
        func = getattr(original, "__func__", None)
        if func is None:
            return original
        names = _first(True, "pretrained_model_name_or_path")
        return classmethod(_loads("model", loader, names)(func))

    return make


def _patch_classes(module: ModuleType, classes: tuple[str, ...], loader: str) -> None:
    for name in classes:
        cls = getattr(module, name, None)
        if isinstance(cls, type) and "from_pretrained" in cls.__dict__:
            PATCHES.apply(cls, "from_pretrained", _classmethod(f"{loader}.{name}"))


def _transformers_module(module: ModuleType) -> None:
    if _installed:
        _patch_classes(module, _TRANSFORMERS.get(module.__name__, ()), "transformers")


def _init(loader: str) -> Callable[[Any], Any]:
    return lambda original: _loads("model", loader, _first(True, "model_name_or_path",
                                                             "model_name"))(original)


_installed = False


def install(module: ModuleType) -> None:
    """Patch the loaders of whichever Hugging Face library was just imported."""
    global _installed
    _installed = True
    _resources.install()
    name = module.__name__
    if name == "datasets":
        PATCHES.apply(module, "load_dataset",
                      _loads("dataset", "datasets.load_dataset", _dataset_names))
    elif name == "transformers":
        for sub in _TRANSFORMERS:
            when_imported(sub, _transformers_module)
    elif name == "sentence_transformers":
        for cls_name in _SENTENCE:
            cls = getattr(module, cls_name, None)
            if isinstance(cls, type):
                PATCHES.apply(cls, "__init__", _init(f"sentence_transformers.{cls_name}"))


def uninstall() -> None:
    global _installed
    _installed = False
    for sub in _TRANSFORMERS:
        forget(sub)
    PATCHES.remove()
