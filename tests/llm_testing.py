"""Shared by the ``test_llm_*.py`` files: fixtures, drivers, folds, common checks.

Registered in ``conftest.py`` (``pytest_plugins``), so the ``srv`` and ``verbosity``
fixtures need no import; the rest is imported by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import agentlog
from agentlog.testing import Captured
from fake_llm import FakeLLM
from helpers import Result, documents, script_env, validate_document

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


async def first_then_close(stream: Any) -> Any:
    """A stream's first item, then the stream closed as a caller would: ``aclose()`` (or
    an async ``close()``) for an async one, ``close()`` for a sync one."""
    if hasattr(stream, "__anext__"):
        first = await stream.__anext__()
        await (stream.aclose() if hasattr(stream, "aclose") else stream.close())
    else:
        first = next(stream)
        stream.close()
    return first


def driver(default_factory: Callable[..., Any],
           close: Callable[[Any], Any] = lambda client: client.close()) -> Callable[..., Any]:
    """A ``drive`` whose clients come from ``default_factory`` unless a test names another,
    and are closed by ``close(client)`` (awaited if it returns an awaitable)."""

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
                await aw(close(client))

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


def usage(input_tokens: Any, output_tokens: Any, cache_read: Any = None, cache_write: Any = None,
          reasoning: Any = None) -> dict[str, Any]:
    """A record's ``usage`` block as a test expects it."""
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read, "cache_write_input_tokens": cache_write,
            "reasoning_output_tokens": reasoning}


def cut_short(cap: Captured) -> tuple[dict[str, Any], dict[str, Any]]:
    """The document and its one, incomplete, record (``folded`` expects no time to first
    token there; a stream cut after its first item has one)."""
    doc = validate_document(cap.document())
    (record,) = llm_records(doc)
    assert record["llm"]["incomplete"] is True
    return doc, record


def cut_record(cap: Captured, srv: FakeLLM) -> dict[str, Any]:
    """The one record of the one request, for a stream that did not finish after its
    first item arrived."""
    assert srv.count() == 1
    (record,) = llm_records(validate_document(cap.document()))
    llm = record["llm"]
    assert llm["incomplete"] is True and llm["streamed"] is True
    assert 0 <= llm["ttft_ms"] <= llm["duration_ms"]
    return record


def cut_by_server(cap: Captured, raised: BaseException) -> tuple[dict[str, Any], dict[str, Any]]:
    """The document and record of a stream the server cut: an incomplete record with the
    error the caller got, which is also the one entry of error_log."""
    doc, record = cut_short(cap)
    assert record["error"]["type"].endswith(type(raised).__name__)
    assert record["llm"]["incomplete_reason"] == "error"
    assert [e["type"] for e in doc["error_log"]] == [record["error"]["type"]]
    return doc, record


def host_run(run: Callable[..., Result], source: str, **env: str
             ) -> tuple[str, list[dict[str, Any]]]:
    """Run a host script that must exit cleanly, with nothing on its own stderr: its
    ``RESULT`` line and the LLM records of its document."""
    result = run(source, **env)
    assert result.returncode == 0, result.stderr
    assert result.host_stderr() == "", result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("RESULT")]
    return line, llm_records(result.doc())


NETWORK_GUARD = """
import sys
outside = []

def audit(event, args):
    # Any connection or name lookup beyond loopback is a failure of the test.
    if event == "socket.connect":
        host = args[1][0] if isinstance(args[1], tuple) else args[1]
        if host not in ("127.0.0.1", "::1", "localhost"):
            outside.append((event, args[1]))
    elif event == "socket.getaddrinfo" and args[0] not in ("127.0.0.1", "localhost", "::1"):
        outside.append((event, args[0]))

sys.addaudithook(audit)
"""
"""Prepended to a host script: ``outside`` lists every attempt to leave loopback."""


def on_and_off(tmp_path: Path, source: str, disable: str, timeout: float, **env: str
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``NETWORK_GUARD + source`` twice at once (an SDK import and an interpreter exit
    take seconds each): recorded, and with ``AGENTLOG_DISABLE=disable``. Each must make
    two requests, leave loopback never, and print whether the SDK is patched; the
    recorded run has two LLM calls, the other none. Returns both documents."""
    script = tmp_path / "host.py"
    script.write_text(NETWORK_GUARD + source)
    hosts = {}
    for name, extra in (("on", {}), ("off", {"AGENTLOG_DISABLE": disable})):
        host_env = script_env(tmp_path / name, **env, **extra)
        hosts[name] = subprocess.Popen([sys.executable, str(script)], env=host_env,
                                       cwd=tmp_path, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
    out = {name: proc.communicate(timeout=timeout) for name, proc in hosts.items()}
    for name, proc in hosts.items():
        assert proc.returncode == 0, out[name][1]
    assert "requests 2\npatched True\noutside []" in out["on"][0]
    assert "requests 2\npatched False\noutside []" in out["off"][0]
    (on,) = documents(tmp_path / "on")
    (off,) = documents(tmp_path / "off")
    assert on["metadata"]["totals"]["llm_calls"] == 2
    assert off["metadata"]["totals"]["llm_calls"] == 0
    return on, off
