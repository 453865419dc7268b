"""Integrations: one module per SDK, installed when that SDK is imported.

Only the names live here, so ``import agentlog`` imports no adapter and no SDK. An
adapter module is imported the moment its SDK is, by a post-import hook.
"""

from __future__ import annotations

import importlib
import itertools
import sys
from collections.abc import Callable, Iterable
from types import ModuleType

from .._guard import internal_errors
from .._imports import forget, when_imported

_PKG = "agentlog.integrations."

ADAPTERS: dict[str, tuple[str, ...]] = {
    "openai": ("openai",),
    "anthropic": ("anthropic",),
    "groq": ("groq",),
    "google.genai": ("google_genai",),
    "mistralai": ("mistral",),
    "cohere": ("cohere",),
    "ollama": ("ollama",),
    "litellm": ("litellm",),
    "botocore.client": ("bedrock",),
    "agents": ("openai_agents",),
    "requests": ("http",),
    "httpx": ("http",),
    "httpx2": ("http",),
    "urllib.request": ("http",),
    "pandas": ("pandas",),
    "datasets": ("hf",),
    "transformers": ("hf",),
    "sentence_transformers": ("hf",),
    "langchain_core": ("loaders", "langchain"),
    "llama_index.core": ("loaders", "llama_index_instr"),
    "pydantic_ai": ("pydantic_ai",),
}
"""SDK module -> adapter modules in this package (each has ``install(sdk_module)`` and may
have ``uninstall()``). ``AGENTLOG_DISABLE`` takes the SDK's name, its first part
(``urllib``, ``google``) or the adapter's (``bedrock``, ``langchain``); ``open`` is the file
hook, which has no module to wait for."""

MIN_VERSIONS: dict[str, tuple[str, tuple[int, ...]]] = {
    "openai": ("openai", (1, 0)),
    "anthropic": ("anthropic", (0, 30)),
    "groq": ("groq", (0, 9)),
    "google.genai": ("google-genai", (1, 0)),
    "mistralai": ("mistralai", (1, 0)),
    "cohere": ("cohere", (5, 0)),
    "ollama": ("ollama", (0, 4)),
    "litellm": ("litellm", (1, 40)),
    "botocore.client": ("botocore", (1, 34)),
    "agents": ("openai-agents", (0, 1)),
    "langchain_core": ("langchain-core", (0, 2)),
    "llama_index.core": ("llama-index-core", (0, 10)),
    "pydantic_ai": ("pydantic-ai-slim", (1, 0)),
}
"""SDK module -> (distribution, oldest version adapted). An older one, or a module of that
name from another distribution (``agents`` is a common name), is left alone, quietly."""


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def supported(sdk: str) -> bool:
    """Is the installed distribution behind ``sdk`` one this version of agentlog adapts?"""
    wanted = MIN_VERSIONS.get(sdk)
    if wanted is None:
        return True
    import importlib.metadata  # 12 ms: only once an adapted SDK is imported

    try:
        found = importlib.metadata.version(wanted[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return _version(found) >= wanted[1]


def _installer(sdk: str, adapter: str) -> Callable[[ModuleType], None]:
    def install(module: ModuleType) -> None:
        if supported(sdk):
            importlib.import_module(_PKG + adapter).install(module)

    return install


def install_all(disabled: Iterable[str] = ()) -> None:
    """Hook every SDK not in ``disabled``: now if imported, else when it is."""
    off = set(disabled)
    for sdk, adapters in ADAPTERS.items():
        if sdk in off or sdk.partition(".")[0] in off:
            continue
        for adapter in adapters:
            if adapter not in off:
                when_imported(sdk, _installer(sdk, adapter))
    if "open" not in off:  # builtins are always imported: wrap ``open`` now
        with internal_errors("import-hook:open"):
            importlib.import_module(_PKG + "files").install()


def uninstall_all() -> None:
    """Put every patched method back; hooks still waiting are dropped."""
    for sdk in ADAPTERS:
        forget(sdk)
    # Never imported means nothing was patched; importing it here would load the LLM
    # machinery into processes that only read runs (the CLI).
    stainless = sys.modules.get(f"{__name__}._stainless")
    if stainless is not None:
        stainless.PATCHES.remove()
    for adapter in sorted({*itertools.chain(*ADAPTERS.values()), "files"}):
        module = sys.modules.get(_PKG + adapter)  # only those installed are imported
        uninstall = getattr(module, "uninstall", None)
        if uninstall is not None:
            uninstall()
