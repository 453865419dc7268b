"""The shipped examples run as documented and log what they say they log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import REPO, Result, load_document, script_env

EXAMPLES = REPO / "examples"


def _run_example(tmp_path: Path, name: str) -> Result:
    """Run ``examples/<name>.py`` as a user would: its own cwd and log folder."""
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        env=script_env(logs),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = Result(proc.returncode, proc.stdout, proc.stderr, logs)
    assert result.returncode == 0, result.stderr
    return result


def _one_document(result: Result) -> tuple[Path, dict[str, Any]]:
    paths = list(result.logs.glob("*.json"))
    assert len(paths) == 1, paths
    assert not list(result.logs.glob("*.jsonl")), "the journal outlived its document"
    return paths[0], load_document(paths[0])


def _exit_line_names(result: Result, path: Path) -> None:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("agentlog: ")]
    assert len(lines) == 1 and lines[0].startswith(f"agentlog: {path} ("), result.stderr
    assert result.host_stderr() == ""


def _interactions(doc: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(it["iteration_number"], ix) for it in doc["iterations"] for ix in it["interactions"]]


def test_invisible_example(tmp_path: Path) -> None:
    """invisible.py: prints its results, logs an interaction and an agent with a tool call."""
    result = _run_example(tmp_path, "invisible")
    assert result.stdout == "LLM result: Echo: Hello, world!\nResearch: agent is a word.\n"
    path, doc = _one_document(result)
    assert path.name.startswith("invisible_")
    _exit_line_names(result, path)

    assert doc["final_status"] == "success"
    assert doc["metadata"]["workflow_name"] == "invisible"
    assert doc["metadata"]["verbosity"] == 2
    (n1, echo), (n2, research) = _interactions(doc)
    assert (n1, n2) == (1, 2)
    assert (echo["agent_name"], echo["input_data"], echo["output_data"]) == (
        "my_agent", "Hello, world!", "Echo: Hello, world!",
    )
    assert (research["agent_name"], research["input_data"], research["output_data"]) == (
        "researcher", "define agent", "agent is a word.",
    )
    (action,) = research["actions"]
    assert (action["action_name"], action["input_data"], action["output_data"]) == (
        "tool:lookup", "agent", "agent is a word.",
    )
    assert doc["error_log"] == [] and doc["resources_used"] == []
    assert doc["metadata"]["totals"]["interactions"] == 2

    # save_log("my_invisible_log.json") after finalize: a copy of the final document.
    saved_path = tmp_path / "my_invisible_log.json"
    saved = load_document(saved_path)
    assert saved == doc
    assert saved_path.stat().st_mode & 0o777 == 0o600


def test_auto_iteration_example(tmp_path: Path) -> None:
    """auto_iteration.py: each agent run is an iteration of its own; finalised as "success"."""
    result = _run_example(tmp_path, "auto_iteration")
    assert result.stdout == "Processed: Hello 1\nProcessed: Hello 2\n"
    path, doc = _one_document(result)
    assert path.name.startswith("my_auto_workflow_")
    _exit_line_names(result, path)

    assert doc["final_status"] == "success"
    assert doc["metadata"]["workflow_name"] == "my_auto_workflow"
    runs = _interactions(doc)
    assert [(n, ix["agent_name"], ix["input_data"], ix["output_data"]) for n, ix in runs] == [
        (1, "test_agent", "Hello 1", "Processed: Hello 1"),
        (2, "test_agent", "Hello 2", "Processed: Hello 2"),
    ]
    assert [len(it["interactions"]) for it in doc["iterations"]] == [1, 1]
    assert all(it["status"] == "completed" for it in doc["iterations"])
    assert doc["error_log"] == []


def test_advanced_example(tmp_path: Path) -> None:
    """advanced.py: one manual iteration, AgentAlpha's interaction and its "thinking" action."""
    result = _run_example(tmp_path, "advanced")
    assert result.stdout == "done\n"
    path, doc = _one_document(result)
    assert path.name.startswith("my_advanced_workflow_")
    _exit_line_names(result, path)

    assert doc["final_status"] == "completed"
    assert doc["metadata"]["workflow_name"] == "my_advanced_workflow"
    (it,) = doc["iterations"]
    assert (it["iteration_number"], it["status"], it["auto"]) == (1, "completed", False)
    (ix,) = it["interactions"]
    assert ix["agent_name"] == "AgentAlpha"
    assert ix["input_data"] == {"message": "Hello from user"}
    assert ix["output_data"] == {"message": "Greetings, user!"}
    assert ix["status"] == "completed"
    (action,) = ix["actions"]
    assert action["action_name"] == "thinking"
    assert action["input_data"] == {"thought": "User says hello"}
    assert action["output_data"] == {"response": "We are about to greet"}
    assert doc["error_log"] == []
