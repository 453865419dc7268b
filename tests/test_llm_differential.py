"""The differential oracle for LLM capture (TESTPLAN "Conventions" and A3; issue 3
acceptance "identical behaviour with and without agentlog, for every call form").

Every call form of both SDKs (see ``llm_scenarios``) runs twice in fresh interpreters,
each against its own fake server: once with ``import agentlog`` as the script's first
line, once without agentlog ever imported. The transcripts (values, types, stream
items and behaviour, exceptions with their chains and traceback frames) must be byte
for byte the same, and so must the exit code and stderr (minus agentlog's exit line).
The agentlog run must also have written one valid document with exactly one LLM record
per logical request.

Covers A3: every call form of both SDKs, with and without agentlog in fresh interpreters:
    identical values, types, stream behaviour, exceptions and frames; one record per request.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

import agentlog
import llm_scenarios
from helpers import Result, script_env

AGENTLOG_PKG = str(Path(agentlog.__file__).resolve().parent)
# One verbosity per scenario: the oracle must hold at every level that records.
VERBOSITY = {"openai_sync": "1", "openai_async": "2", "anthropic": "3"}


class Pair:
    """Both runs of one scenario, and the side files their hosts wrote."""

    def __init__(self, with_: Result, without: Result, side_with: dict[str, Any],
                 side_without: dict[str, Any]) -> None:
        self.with_ = with_
        self.without = without
        self.side_with = side_with
        self.side_without = side_without


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pair]:
    """Each scenario with and without agentlog, two hosts at a time (two cores)."""
    root = tmp_path_factory.mktemp("differential")
    jobs = []
    for name in llm_scenarios.SCENARIOS:
        for variant in ("with", "without"):
            folder = root / name / variant
            env = script_env(
                folder / "logs",
                AGENTLOG_VERBOSITY=VERBOSITY[name],
                SCENARIO_SIDE=str(folder / "side.json"),
                SCENARIO_AGENTLOG_PKG=AGENTLOG_PKG,
            )
            source = llm_scenarios.host_source(name, with_agentlog=variant == "with")
            jobs.append((folder, source, env))
    results = iter(llm_scenarios.run_hosts(jobs, timeout=120))
    found = {}
    for name in llm_scenarios.SCENARIOS:
        with_, without = next(results), next(results)
        sides = [
            json.loads((root / name / v / "side.json").read_text()) for v in ("with", "without")
        ]
        found[name] = Pair(with_, without, sides[0], sides[1])
    return found


NAMES = list(llm_scenarios.SCENARIOS)


@pytest.mark.parametrize("name", NAMES)
def test_transcript_exit_code_and_stderr_identical(pairs: dict[str, Pair], name: str) -> None:
    """Values, types, stream behaviour and exceptions print the same with and without."""
    pair = pairs[name]
    assert pair.without.returncode == 0, pair.without.stderr
    assert pair.with_.returncode == pair.without.returncode, pair.with_.stderr
    assert pair.with_.stdout == pair.without.stdout
    assert "SERVER_REQUESTS" in pair.with_.stdout
    assert pair.without.host_stderr() == pair.without.stderr  # nothing filtered out there
    # The SDK's own "Exception ignored in <function ... at 0x...>" noise (from deepcopy of
    # a stream) names addresses, which differ between any two runs.
    assert _stable(pair.with_.host_stderr()) == _stable(pair.without.stderr)
    exit_lines = [ln for ln in pair.with_.stderr.splitlines() if ln.startswith("agentlog: ")]
    assert len(exit_lines) == 1, pair.with_.stderr


@pytest.mark.parametrize("name", NAMES)
def test_without_run_never_imports_agentlog(pairs: dict[str, Pair], name: str) -> None:
    """The baseline is really agentlog-free, and writes nothing."""
    pair = pairs[name]
    assert pair.side_without["agentlog_imported"] is False
    assert pair.side_with["agentlog_imported"] is True
    assert not pair.without.logs.exists() or not any(pair.without.logs.iterdir())


@pytest.mark.parametrize("name", NAMES)
def test_one_document_one_record_per_request(pairs: dict[str, Pair], name: str) -> None:
    """One valid document; llm_calls = server requests - SDK retries - non-LLM endpoints
    + requests that never reached the server (connection refused)."""
    pair = pairs[name]
    doc = pair.with_.doc()  # exactly one, validated against the schema
    side = pair.side_with
    assert side == {**pair.side_without, "agentlog_imported": True, "agentlog_frames": ANY}
    expected = side["expected_records"]
    assert expected > 20
    totals = doc["metadata"]["totals"]
    assert totals["llm_calls"] == expected
    records = llm_scenarios.records(doc)
    assert len(records) == expected
    assert doc["metadata"]["verbosity"] == int(VERBOSITY[name])
    # Every exception the transcript shows is one error_log entry of source "llm".
    raised = pair.with_.stdout.count(": raised ")
    assert raised >= 5
    assert [e["source"] for e in doc["error_log"]] == ["llm"] * raised
    assert doc["final_status"] == "completed"
    assert all(not r["incomplete"] or r.get("incomplete_reason") for r in records)


@pytest.mark.parametrize("name", NAMES)
def test_traceback_frames_beyond_agentlog_are_unchanged(
    pairs: dict[str, Pair], name: str
) -> None:
    """The stdout comparison covers the frames minus agentlog's; here: where agentlog's
    own frames show up (one wrapper frame at most per traceback, never in the baseline).
    """
    pair = pairs[name]
    with_frames = pair.side_with["agentlog_frames"]
    without_frames = pair.side_without["agentlog_frames"]
    assert with_frames.keys() == without_frames.keys()
    assert all(frames == [] for frames in without_frames.values())
    for label, frames in with_frames.items():
        assert len(frames) <= 1, (label, frames)
        for path, _function, _line in frames:
            assert path.startswith("integrations" + os.sep), (label, frames)


def _stable(text: str) -> str:
    return re.sub(r"0x[0-9a-fA-F]+", "0x?", text)


class _Any:
    def __eq__(self, other: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()
