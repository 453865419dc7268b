"""Integrations: one module per SDK, installed when that SDK is imported.

Only the names live here, so ``import agentlog`` imports no adapter and no SDK. An
adapter module is imported the moment its SDK is, by a post-import hook.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from types import ModuleType

from .._guard import internal_errors
from .._imports import forget, when_imported

ADAPTERS = {
    "openai": "agentlog.integrations.openai",
    "anthropic": "agentlog.integrations.anthropic",
    "requests": "agentlog.integrations.http",
    "httpx": "agentlog.integrations.http",
    "httpx2": "agentlog.integrations.http",
    "urllib.request": "agentlog.integrations.http",
    "pandas": "agentlog.integrations.pandas",
    "datasets": "agentlog.integrations.hf",
    "transformers": "agentlog.integrations.hf",
    "sentence_transformers": "agentlog.integrations.hf",
    "langchain_core": "agentlog.integrations.loaders",
    "llama_index.core": "agentlog.integrations.loaders",
}
"""SDK module -> adapter module (which has ``install(sdk_module)``, and may have
``uninstall()``). ``AGENTLOG_DISABLE`` takes these names, or their first part
(``urllib``, ``llama_index``); ``open`` is the file hook, which has no module to wait for."""


def _installer(adapter: str) -> Callable[[ModuleType], None]:
    def install(module: ModuleType) -> None:
        importlib.import_module(adapter).install(module)

    return install


def install_all(disabled: Iterable[str] = ()) -> None:
    """Hook every SDK not in ``disabled``: now if imported, else when it is."""
    off = set(disabled)
    for sdk, adapter in ADAPTERS.items():
        if sdk not in off and sdk.partition(".")[0] not in off:
            when_imported(sdk, _installer(adapter))
    if "open" not in off:  # builtins are always imported: wrap ``open`` now
        with internal_errors("import-hook:open"):
            importlib.import_module("agentlog.integrations.files").install()


def uninstall_all() -> None:
    """Put every patched method back; hooks still waiting are dropped."""
    for sdk in ADAPTERS:
        forget(sdk)
    # Never imported means nothing was patched; importing it here would load the LLM
    # machinery into processes that only read runs (the CLI).
    stainless = sys.modules.get(f"{__name__}._stainless")
    if stainless is not None:
        stainless.PATCHES.remove()
    for adapter in sorted({*ADAPTERS.values(), "agentlog.integrations.files"}):
        module = sys.modules.get(adapter)  # only those installed are imported
        uninstall = getattr(module, "uninstall", None)
        if uninstall is not None:
            uninstall()
