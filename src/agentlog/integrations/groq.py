"""Groq SDK adapter: the OpenAI translator on Groq's own Stainless base client.

The ``groq`` package is generated like ``openai`` but has base classes of its own, so its
``request`` is patched apart from openai's: a call through one SDK never passes the
other's hook, and both installed still make one record per request. What differs is
how a stream reports usage: Groq sends it in the last chunk's ``x_groq.usage``, whether
or not the caller asked for ``stream_options.include_usage``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from . import _stainless
from ._llm import Request
from .openai import OpenAITranslator, _ChoicesStream


class _GroqChoicesStream(_ChoicesStream):
    """Chat chunks, plus the usage Groq puts in ``x_groq`` (only in its last chunk)."""

    __slots__ = ()

    def __init__(self, legacy: bool, data: dict[str, Any]) -> None:
        super().__init__(legacy, data)
        self.wants_usage = True  # Groq always sends it: missing means the stream was cut

    def add(self, chunk: Any) -> None:
        super().add(chunk)
        extra = getattr(chunk, "x_groq", None)
        if extra is not None and self.usage is None:
            self.usage = getattr(extra, "usage", None)


class GroqTranslator(OpenAITranslator):
    name = "groq"

    def accumulator(self, req: Request) -> Any:
        if req.operation == "responses":
            return super().accumulator(req)
        return _GroqChoicesStream(req.operation == "text_completion", req.data)


TRANSLATOR = GroqTranslator()


def install(module: ModuleType) -> None:
    """Called once ``groq`` is imported (``uninstall_all`` removes ``_stainless``'s
    patches, these among them)."""
    _stainless.install(TRANSLATOR, importlib.import_module("groq._base_client"))
