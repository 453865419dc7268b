"""Integrations: one module per SDK, installed when that SDK is imported.

Only the names live here, so ``import agentlog`` imports no adapter and no SDK. An
adapter module is imported the moment its SDK is, by a post-import hook.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from types import ModuleType

from .._imports import forget, when_imported

ADAPTERS = {
    "openai": "agentlog.integrations.openai",
    "anthropic": "agentlog.integrations.anthropic",
}
"""SDK module -> adapter module (which has ``install(sdk_module)``)."""


def _installer(adapter: str) -> Callable[[ModuleType], None]:
    def install(module: ModuleType) -> None:
        importlib.import_module(adapter).install(module)

    return install


def install_all(disabled: Iterable[str] = ()) -> None:
    """Hook every SDK not in ``disabled``: now if imported, else when it is."""
    off = set(disabled)
    for sdk, adapter in ADAPTERS.items():
        if sdk not in off:
            when_imported(sdk, _installer(adapter))


def uninstall_all() -> None:
    """Put every patched method back; hooks still waiting are dropped."""
    for sdk in ADAPTERS:
        forget(sdk)
    from . import _stainless

    _stainless.PATCHES.remove()
