"""Arize Phoenix on loopback: a real OTLP backend for ``test_otel_phoenix.py``.

Phoenix lives in a venv of its own (``.ci/phoenix.sh`` makes it and prints the path of
its ``phoenix`` executable; it pins packages our main environment must not get). The
tests find it through ``AGENTLOG_PHOENIX`` and skip, saying why, without it.

``phoenix serve`` runs on free loopback ports with its storage (SQLite) in a temporary
folder, its telemetry and every request to the internet it would make on its own
switched off, and is stopped at teardown. Spans are read back through Phoenix's own REST
API (``GET /v1/projects/{project}/spans``); each test sends to a project of its own
(resource attribute ``openinference.project.name``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

STARTUP_TIMEOUT_S = 300.0
"""Phoenix migrates its database at start: tens of seconds on a busy machine."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _get(url: str, timeout: float = 10.0) -> Any:
    # A proxy set in the environment must not see loopback traffic.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


@dataclass
class Phoenix:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span of ``project`` (none when the project does not exist yet)."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = "limit=1000" + (f"&cursor={cursor}" if cursor else "")
            try:
                page = _get(f"{self.url}/v1/projects/{project}/spans?{query}")
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return []
                raise
            out.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def wait_for_spans(self, project: str, count: int, timeout: float = 90.0) -> list[
        dict[str, Any]
    ]:
        """The project's spans once ``count`` have been ingested (Phoenix writes in batches)."""
        deadline = time.monotonic() + timeout
        spans: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            spans = self.spans(project)
            if len(spans) >= count:
                time.sleep(1.0)  # and nothing more comes
                return self.spans(project)
            time.sleep(0.5)
        raise AssertionError(f"{len(spans)} of {count} spans reached Phoenix: "
                             f"{[s['name'] for s in spans]}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _env(work: Path, http: int, grpc: int) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "SSL_CERT_FILE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        PHOENIX_WORKING_DIR=str(work),
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(http),
        PHOENIX_GRPC_PORT=str(grpc),
        PHOENIX_TELEMETRY_ENABLED="false",
        PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
        NO_PROXY="*",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    exe = os.environ.get("AGENTLOG_PHOENIX")
    if not exe:
        pytest.skip("AGENTLOG_PHOENIX is not set: run `bash .ci/phoenix.sh` (it installs "
                    "Arize Phoenix into a venv of its own) and set it to the path it prints")
    if not os.access(exe, os.X_OK):
        pytest.skip(f"AGENTLOG_PHOENIX={exe} is not an executable file")
    work = tmp_path_factory.mktemp("phoenix")
    http, grpc = free_port(), free_port()
    log = work / "phoenix.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([exe, "serve"], env=_env(work, http, grpc), cwd=work,
                                   stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Phoenix(f"http://127.0.0.1:{http}", process, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"phoenix serve exited with {process.returncode}:\n{server.tail()}")
            try:
                _get(f"{server.url}/v1/projects", timeout=2.0)
                break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Phoenix did not start in {STARTUP_TIMEOUT_S:.0f} s:\n"
                            f"{server.tail()}")
            time.sleep(0.5)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
