"""Shared test helpers: schema validation, subprocess scripts, reading documents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from agentlog import _document

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(_document.schema_path().read_text())
    return jsonschema.Draft202012Validator(schema)


def validate_document(doc: Any) -> dict[str, Any]:
    """Raise unless ``doc`` is a valid schema-v1 run document; return it."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        raise AssertionError(
            "document does not match the schema:\n"
            + "\n".join(f"  {list(e.path)}: {e.message}" for e in errors[:10])
        )
    return doc  # type: ignore[no-any-return]


def load_document(path: Path) -> dict[str, Any]:
    """Parse with json and orjson, check both agree, validate against the schema."""
    raw = path.read_bytes()
    doc = json.loads(raw.decode("utf-8"))
    assert orjson.loads(raw) == doc
    return validate_document(doc)


def documents(folder: Path) -> list[dict[str, Any]]:
    """Every document in a log folder, validated, oldest first."""
    paths = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    return [load_document(p) for p in paths]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    logs: Path

    def docs(self) -> list[dict[str, Any]]:
        return documents(self.logs)

    def doc(self) -> dict[str, Any]:
        docs = self.docs()
        assert len(docs) == 1, f"expected one document, found {len(docs)}: {self.stderr}"
        return docs[0]

    def host_stderr(self) -> str:
        """stderr without agentlog's own exit line."""
        return "".join(
            line for line in self.stderr.splitlines(keepends=True)
            if not line.startswith("agentlog: ")
        )


def script_env(logs: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLOG", "PYTEST"))}
    env["AGENTLOG_DIR"] = str(logs)
    env["AGENTLOG_FLUSH_INTERVAL"] = "0.05"
    env["AGENTLOG_STRICT"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_script(
    tmp_path: Path,
    source: str,
    name: str = "host",
    timeout: float = 60,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    **extra_env: str,
) -> Result:
    """Run ``source`` as ``<tmp>/<name>.py`` in a fresh interpreter."""
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(source))
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, str(script), *(args or [])],
        env=env if env is not None else script_env(logs, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, logs)


@pytest.fixture
def run(tmp_path: Path) -> Any:
    """``run(source, **env)``: a host script in a subprocess, with its own log folder."""

    def _run(source: str, **kwargs: Any) -> Result:
        return run_script(tmp_path, source, **kwargs)

    return _run
