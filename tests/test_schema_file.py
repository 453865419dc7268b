"""Tests for the shipped JSON Schema of the run document (schema version 1)."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

EXAMPLE = Path(__file__).resolve().parents[2] / "shared" / "example-document.json"
TS = "2026-11-28T10:02:11.412305+00:00"


def _schema() -> dict[str, Any]:
    text = files("agentlog").joinpath("schema/document-v1.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _validator() -> Draft202012Validator:
    return Draft202012Validator(_schema())


def _minimal_document() -> dict[str, Any]:
    return {
        "metadata": {
            "schema_version": 1,
            "workflow_name": "wf",
            "run_id": "r1",
            "parent_run_id": None,
            "start_time": TS,
            "end_time": None,
            "duration_s": None,
            "agentlog_version": "0.1.0",
            "verbosity": 1,
            "python": "3.11.7",
            "platform": "Linux",
            "pid": 1,
            "exit_code": None,
            "totals": {
                "iterations": 1,
                "interactions": 1,
                "llm_calls": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_write_input_tokens": 0,
                "reasoning_output_tokens": 0,
                "cost_usd": None,
                "errors": 0,
                "dropped_events": 0,
            },
        },
        "iterations": [
            {
                "iteration_number": 1,
                "start_time": TS,
                "end_time": None,
                "status": "in_progress",
                "interactions": [
                    {
                        "agent_name": "a",
                        "input_data": None,
                        "output_data": None,
                        "start_time": TS,
                        "end_time": None,
                        "actions": [],
                    }
                ],
            }
        ],
        "resources_used": [
            {"resource": "x.txt", "kind": "file", "first_time": TS, "count": 1},
        ],
        "error_log": [],
        "final_status": "crashed",
    }


def _errors(doc: dict[str, Any]) -> list[str]:
    return [e.message for e in _validator().iter_errors(doc)]


def test_schema_is_valid_draft_2020_12() -> None:
    """The shipped schema is itself a valid draft 2020-12 JSON Schema."""
    Draft202012Validator.check_schema(_schema())


def test_example_document_validates() -> None:
    """The shared example document validates against the schema."""
    if not EXAMPLE.is_file():
        pytest.skip(f"{EXAMPLE} not present")
    doc = json.loads(EXAMPLE.read_text("utf-8"))
    assert _errors(doc) == []


def test_minimal_document_validates() -> None:
    """A minimal unfinished-run document with null end times validates."""
    assert _errors(_minimal_document()) == []


def test_missing_top_level_key_fails() -> None:
    """A document missing a required top-level key is rejected."""
    doc = _minimal_document()
    del doc["error_log"]
    assert _errors(doc)


def test_extra_top_level_key_fails() -> None:
    """A document with an unknown top-level key is rejected."""
    doc = _minimal_document()
    doc["extra"] = {}
    assert _errors(doc)


def test_timestamp_without_offset_fails() -> None:
    """A timestamp lacking a UTC offset is rejected."""
    doc = _minimal_document()
    doc["metadata"]["start_time"] = "2026-11-28T10:02:11.412305"
    assert _errors(doc)


def test_negative_token_total_fails() -> None:
    """A negative token count in metadata.totals is rejected."""
    doc = _minimal_document()
    doc["metadata"]["totals"]["input_tokens"] = -1
    assert _errors(doc)


def test_resource_count_zero_fails() -> None:
    """A resources_used entry with count 0 is rejected."""
    doc = _minimal_document()
    doc["resources_used"][0]["count"] = 0
    assert _errors(doc)


def test_schema_version_two_fails() -> None:
    """A document claiming schema_version 2 is rejected."""
    doc = _minimal_document()
    doc["metadata"]["schema_version"] = 2
    assert _errors(doc)


def test_nested_objects_allow_future_fields() -> None:
    """Unknown fields below the top level are accepted for forward compatibility."""
    doc = _minimal_document()
    doc["metadata"]["future"] = 1
    doc["metadata"]["totals"]["future"] = 1
    doc["iterations"][0]["future"] = 1
    doc["iterations"][0]["interactions"][0]["future"] = 1
    doc["resources_used"][0]["future"] = 1
    assert _errors(doc) == []


@pytest.mark.parametrize("iterations", [0, 1, 3])
def test_parts_written_are_the_same_bytes_as_one_dump(iterations: int) -> None:
    """``dumps_parts`` (the document written piece by piece, so it and its JSON are never
    both whole in memory) gives exactly the bytes of ``dumps``, for any iteration count."""
    import copy

    import agentlog
    from agentlog import _document
    from agentlog.testing import capture
    from helpers import validate_document

    with capture() as cap:
        for i in range(iterations):
            with agentlog.iteration():
                agentlog.log_interaction(f"agent {i}", {"q": "ünïcode \u2028 \"quoted\"\n",
                                                        "nested": [[{}], {"k": [1, 2.5]}]},
                                         ["it", "iterations", '"iterations": []'])
    doc = validate_document(cap.document())
    assert len(doc["iterations"]) == iterations
    whole = _document.dumps(doc)
    parts = _document.dumps_parts(copy.deepcopy(doc))
    assert b"".join(parts) == whole
    assert json.loads(whole) == doc
