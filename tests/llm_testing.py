"""Shared by ``test_llm_openai.py`` and ``test_llm_anthropic.py``: fixtures, drivers, folds.

Registered in ``conftest.py`` (``pytest_plugins``), so the ``srv`` and ``verbosity``
fixtures need no import; the rest is imported by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

import agentlog
from agentlog.testing import Captured
from fake_llm import FakeLLM
from helpers import validate_document

MODES = pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
STREAMED = pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])


@pytest.fixture
def srv() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server
    assert not server.errors


@pytest.fixture
def verbosity() -> Iterator[Callable[[int], None]]:
    """``verbosity(n)`` for one test; verbosity 1 is restored after it."""
    try:
        yield lambda level: agentlog.set_logging(verbosity=level)
    finally:
        agentlog.set_logging(verbosity=1)


async def aw(value: Any) -> Any:
    """The value, awaited when the async client returned an awaitable."""
    return await value if inspect.isawaitable(value) else value


async def drain(stream: Any) -> list[Any]:
    if hasattr(stream, "__aiter__"):
        return [item async for item in stream]
    return list(stream)


@contextlib.asynccontextmanager
async def opened(manager: Any) -> AsyncIterator[Any]:
    """``with`` or ``async with``, whichever the SDK object supports."""
    if hasattr(manager, "__aenter__"):
        async with manager as value:
            yield value
    else:
        with manager as value:
            yield value


def driver(default_factory: Callable[..., Any]) -> Callable[..., Any]:
    """A ``drive`` whose clients come from ``default_factory`` unless a test names another."""

    def drive(srv: FakeLLM, async_: bool, body: Callable[[Any], Awaitable[Any]],
              factory: Callable[..., Any] = default_factory, **kw: Any) -> Any:
        """Run ``body(client)`` with a sync or async client, which is closed afterwards.

        Bodies are written once, with ``aw``/``drain``/``opened``, for both kinds of client.
        """

        async def main() -> Any:
            client = factory(srv, async_=async_, **kw)
            try:
                return await body(client)
            finally:
                await aw(client.close())

        return asyncio.run(main())

    return drive


def llm_records(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every interaction or action that carries an ``llm`` block, in document order."""
    found = []
    for it in doc["iterations"]:
        for ix in it["interactions"]:
            if "llm" in ix:
                found.append(ix)
            found.extend(a for a in ix["actions"] if "llm" in a)
    return found


def folded(cap: Captured, expected: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The captured document, validated, and its ``expected`` LLM records (timing checked)."""
    doc = validate_document(cap.document())
    records = llm_records(doc)
    assert len(records) == expected, [r["llm"]["operation"] for r in records]
    for record in records:
        llm = record["llm"]
        assert llm["duration_ms"] >= 0
        if llm["streamed"] and not llm["incomplete"] and "error" not in record:
            assert llm["ttft_ms"] is not None and 0 <= llm["ttft_ms"] <= llm["duration_ms"]
        else:
            assert llm["ttft_ms"] is None
    return doc, records


def only_record(cap: Captured, srv: FakeLLM, path: str | None = None) -> dict[str, Any]:
    """The one LLM record for the one request the server received (to ``path``, when
    named); no error logged."""
    assert srv.count() == srv.count(path) == 1
    doc, (record,) = folded(cap, 1)
    assert doc["error_log"] == [] and "error" not in record
    return record


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
