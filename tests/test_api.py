"""The public API: the three seed designs, the Pythonic forms, auto mode, and
``agentlog.testing`` (TESTPLAN A2 for scopes and decorators; document checks).

Covers A2: KeyboardInterrupt/SystemExit/CancelledError/GeneratorExit leave scopes and decorators
    as the same object; Ctrl-C through an agent and a tool ends the run interrupted (exit -2).
Covers A5: ``@agent`` hands back the decorated function's very result object (``is``).
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import agentlog
from agentlog import _document, _recorder, api
from agentlog.testing import Captured, capture, fixed_clock
from helpers import load_document

Doc = dict[str, Any]


# -- fixtures and helpers -------------------------------------------------------------
@pytest.fixture(autouse=True)
def _restore_settings() -> Iterator[None]:
    """Every test leaves verbosity, hooks and the workflow name as it found them."""
    rec = api.RECORDER
    verbosity = rec.verbosity
    name = rec.current().workflow_name
    doc_dir = rec.current().doc_dir
    yield
    agentlog.set_logging(True, verbosity=verbosity)
    run = rec.current()
    if run.workflow_name != name:
        agentlog.start_workflow(name)
    run.doc_dir = doc_dir


def saved(tmp_path: Path) -> Doc:
    """This process's document as it stands, written by ``save_log`` and validated."""
    path = agentlog.save_log(tmp_path / "x.json")
    assert path == tmp_path / "x.json"
    return load_document(path)


def by_id(doc: Doc) -> dict[int, tuple[Doc, Doc]]:
    """interaction_id -> (its iteration, the interaction), over the whole document."""
    found: dict[int, tuple[Doc, Doc]] = {}
    for it in doc["iterations"]:
        for ix in it["interactions"]:
            found[ix["interaction_id"]] = (it, ix)
    return found


def ended(logs: Captured, ix: int) -> Doc:
    """The ``interaction_end`` event of interaction ``ix``."""
    (event,) = [e for e in logs.of("interaction_end") if e["ix"] == ix]
    return event


def errors_of(logs: Captured, exc: BaseException) -> list[Doc]:
    return [e for e in logs.errors if e["type"].rsplit(".", 1)[-1] == type(exc).__name__]


# -- design 1: the invisible module functions ------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda: agentlog.set_logging(verbosity=2),
        lambda: agentlog.set_logging(True, verbosity=2),
        lambda: agentlog.set_logging(enabled=True, verbosity=2),
    ],
    ids=["keyword-only", "seed-positional", "both-keywords"],
)
def test_set_logging_verbosity_2_keeps_full_content(call: Callable[[], None]) -> None:
    """Every documented spelling of verbosity 2 keeps a long field whole; 1 caps it."""
    long_text = "x" * 5_000
    agentlog.set_logging(verbosity=1)
    with capture() as logs:
        agentlog.log_interaction("a", long_text, "ok")
    capped = logs.interactions[0]["input"]
    assert isinstance(capped, dict) and capped["_agentlog"] == "truncated"
    assert capped["length"] == 5_000
    call()
    assert api.RECORDER.verbosity == 2
    with capture() as logs:
        agentlog.log_interaction("a", long_text, "ok")
    assert logs.interactions[0]["input"] == long_text


def test_set_logging_false_records_nothing_until_turned_back_on() -> None:
    """``set_logging(False)`` stops recording; ``set_logging(True)`` resumes it."""
    agentlog.set_logging(False)
    assert api.RECORDER.verbosity == 0
    with capture() as logs:
        agentlog.log_interaction("off", 1, 2)
        with agentlog.iteration(), agentlog.interaction("off", 1) as ix:
            ix.output = 2
    assert list(logs) == []
    agentlog.set_logging(True)
    assert api.RECORDER.verbosity >= 1
    with capture() as logs:
        agentlog.log_interaction("on", 1, 2)
    assert [e["agent"] for e in logs.interactions] == ["on"]


def test_verbosity_0_records_nothing_and_changes_no_result() -> None:
    """At verbosity 0 no API records anything, and user code returns what it returns."""
    agentlog.set_logging(verbosity=0)
    sentinel = object()

    @agentlog.tool
    def search(q: str) -> object:
        return sentinel

    @agentlog.agent("planner")
    def plan(q: str) -> object:
        return search(q)

    async def aplan() -> object:
        async with agentlog.iteration(), agentlog.interaction("a", 1):
            return plan("q")

    logger = agentlog.AdvancedWorkflowLogger(api.RECORDER.current().workflow_name)
    with capture() as logs:
        agentlog.log_interaction("a", 1, 2)
        agentlog.add_resource("data.csv")
        agentlog.log_error("bad")
        agentlog.log_error(ValueError("bad"))
        with agentlog.iteration(), agentlog.interaction("a", 1) as ix:
            ix.output = 2
            assert plan("q") is sentinel
        assert asyncio.run(aplan()) is sentinel
        logger.start_iteration(1)
        logger.start_interaction("a", 1)
        logger.log_action("think", 1, 2)
        logger.end_interaction(2)
        logger.end_iteration()
    assert list(logs) == []


def test_log_interaction_outside_iteration_gets_one_automatic_iteration_per_call(
    tmp_path: Path,
) -> None:
    """Each bare ``log_interaction`` is the only interaction of its own auto iteration."""
    with capture() as logs:
        agentlog.log_interaction("my_agent", "Hello, world!", "Echo: Hello, world!")
        agentlog.log_interaction("my_agent", "again", "Echo: again")
    first, second = logs.interactions
    assert first["it"] != second["it"]
    assert second["it_number"] == first["it_number"] + 1
    doc = saved(tmp_path)
    for event in (first, second):
        it, ix = by_id(doc)[event["ix"]]
        assert it["auto"] is True
        assert it["status"] == "completed"
        assert it["iteration_number"] == event["it_number"]
        assert [i["interaction_id"] for i in it["interactions"]] == [event["ix"]]
        assert ix["agent_name"] == "my_agent"
        assert ix["input_data"] == event["input"]
        assert ix["output_data"] == event["output"]
        assert ix["status"] == "completed"


def test_log_interaction_inside_scopes_joins_them(tmp_path: Path) -> None:
    """Inside an iteration it joins that iteration; inside an interaction it is a child."""
    with capture() as logs, agentlog.iteration(number=7):
        agentlog.log_interaction("a", 1, 2)
        with agentlog.interaction("outer", 0):
            agentlog.log_interaction("b", 3, 4)
    (it_start,) = logs.of("iteration_start")
    outer = next(e for e in logs.interactions if e["agent"] == "outer")
    a, b = (e for e in logs.of("interaction"))
    assert a["it"] == b["it"] == it_start["it"]
    assert "it_number" not in a and "it_number" not in b
    assert "parent" not in a
    assert b["parent"] == outer["ix"]
    doc = saved(tmp_path)
    it, ix_b = by_id(doc)[b["ix"]]
    assert it["iteration_number"] == 7
    assert ix_b["parent_interaction_id"] == outer["ix"]
    assert {i["agent_name"] for i in it["interactions"]} == {"a", "outer", "b"}


def test_add_resource_merges_repeats_into_one_entry_with_a_count(tmp_path: Path) -> None:
    """The same resource added three times is one entry with ``count`` 3 and its kind."""
    name = f"{tmp_path}/corpus.txt"
    with capture() as logs:
        for _ in range(3):
            agentlog.add_resource(name)
        agentlog.add_resource(Path(tmp_path, "model.bin"))
        agentlog.add_resource("https://example.invalid/data.json")
        agentlog.add_resource("squad-v2", kind="dataset")
    assert len(logs.resources) == 6
    doc = saved(tmp_path)
    entries = {r["resource"]: r for r in doc["resources_used"]}
    assert entries[name]["count"] == 3
    assert entries[name]["first_time"] <= entries[name]["last_time"]
    assert entries[str(tmp_path / "model.bin")]["kind"] == "file"
    assert entries["https://example.invalid/data.json"]["kind"] == "url"
    assert entries["squad-v2"]["kind"] == "dataset"
    assert [r["resource"] for r in doc["resources_used"]].count(name) == 1


def test_log_error_with_a_string_has_no_traceback(tmp_path: Path) -> None:
    """``log_error("msg")`` records the message, no traceback, and no place outside scopes."""
    message = f"tool quota exceeded {time.time_ns()}"
    with capture() as logs:
        agentlog.log_error(message)
    (event,) = logs.errors
    assert event["error"] == message
    assert event["traceback"] is None
    assert event["where"]["iteration_number"] is None
    assert event["where"]["agent_name"] is None
    doc = saved(tmp_path)
    (entry,) = [e for e in doc["error_log"] if e["error"] == message]
    assert entry["traceback"] is None
    assert entry["type"] == "Error"


def _fail_deep() -> None:
    raise ZeroDivisionError("the divisor was zero")


def test_log_error_with_a_caught_exception_keeps_type_traceback_and_place(
    tmp_path: Path,
) -> None:
    """A caught exception is logged with its type, traceback, and the iteration/agent."""
    with capture() as logs, agentlog.iteration(number=41), agentlog.interaction("solver", 1):
        try:
            _fail_deep()
        except ZeroDivisionError as exc:
            agentlog.log_error(exc)
    (event,) = logs.errors
    ix = logs.interactions[0]["ix"]
    assert event["type"] == "ZeroDivisionError"
    assert event["error"] == "the divisor was zero"
    assert "_fail_deep" in event["traceback"]
    assert "ZeroDivisionError: the divisor was zero" in event["traceback"]
    assert event["where"] == {"iteration_number": 41, "agent_name": "solver", "interaction_id": ix}
    doc = saved(tmp_path)
    (entry,) = [e for e in doc["error_log"] if e["where"].get("interaction_id") == ix]
    assert entry["traceback"] == event["traceback"]


def test_distinct_exceptions_from_a_retry_loop_are_each_logged() -> None:
    """Five failures of a retry loop are five error_log entries, not one (ids get reused)."""
    with capture() as logs:
        for attempt in range(5):
            try:
                with agentlog.interaction("flaky", attempt):
                    raise ValueError("rate limited")
            except ValueError:
                pass
        for _ in range(5):
            try:
                _fail_deep()
            except ZeroDivisionError as exc:
                agentlog.log_error(exc)
    assert len([e for e in logs.errors if e["type"] == "ValueError"]) == 5
    assert len([e for e in logs.errors if e["type"] == "ZeroDivisionError"]) == 5


def test_start_workflow_renames_the_run(tmp_path: Path) -> None:
    """``start_workflow(name)`` names the running run's document."""
    agentlog.start_workflow("renamed_flow")
    assert api.RECORDER.current().workflow_name == "renamed_flow"
    assert saved(tmp_path)["metadata"]["workflow_name"] == "renamed_flow"


def test_seed_design_1_usage_example(run: Any) -> None:
    """The seed's invisible-logger example runs and gives a document with its records."""
    result = run(
        """
        from agentlog import set_logging, log_interaction, finalize_workflow, save_log

        def some_llm_call(input_text):
            output = f"Echo: {input_text}"
            log_interaction(agent_name="my_agent", input_data=input_text, output_data=output)
            return output

        def run_workflow():
            set_logging(True, verbosity=2)
            result = some_llm_call("Hello, world!")
            print("LLM result:", result)
            finalize_workflow("success")
            save_log("my_invisible_log.json")

        run_workflow()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "LLM result: Echo: Hello, world!\n"
    assert result.host_stderr() == ""
    doc = result.doc()
    assert doc["final_status"] == "success"
    assert doc["metadata"]["verbosity"] == 2
    (it,) = doc["iterations"]
    (ix,) = it["interactions"]
    assert (ix["agent_name"], ix["input_data"], ix["output_data"]) == (
        "my_agent", "Hello, world!", "Echo: Hello, world!",
    )
    copy = load_document(result.logs.parent / "my_invisible_log.json")
    assert copy == doc


def test_set_logging_false_after_recording_still_writes_the_document(run: Any) -> None:
    """Records made before ``set_logging(False)`` reach a document at exit, not a journal."""
    result = run(
        """
        import agentlog
        agentlog.log_interaction("before", 1, 2)
        agentlog.set_logging(False)
        agentlog.log_interaction("after", 3, 4)
        """
    )
    assert result.returncode == 0, result.stderr
    assert list(result.logs.glob("*.jsonl")) == []
    doc = result.doc()
    assert doc["final_status"] == "completed"
    agents = [ix["agent_name"] for it in doc["iterations"] for ix in it["interactions"]]
    assert agents == ["before"]


# -- design 2: AutoIterationLogger --------------------------------------------------------
def test_auto_iteration_logger_makes_each_agent_run_an_iteration(tmp_path: Path) -> None:
    """Each ``log_agent_run`` is one completed iteration holding that run."""
    with capture() as logs:
        logger = agentlog.AutoIterationLogger("my_auto_workflow")
        for text in ("Hello 1", "Hello 2", "Hello 3"):
            logger.log_agent_run("test_agent", text, f"Processed: {text}")
        logger.add_resource("prompts.yaml")
        logger.log_error("one soft failure")
    assert api.RECORDER.current().workflow_name == "my_auto_workflow"
    runs = logs.interactions
    assert len({e["it"] for e in runs}) == 3
    numbers = [e["it_number"] for e in runs]
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]
    doc = saved(tmp_path)
    for event in runs:
        it, ix = by_id(doc)[event["ix"]]
        assert len(it["interactions"]) == 1
        assert it["status"] == "completed"
        assert ix["output_data"] == f"Processed: {ix['input_data']}"
    assert any(r["resource"] == "prompts.yaml" for r in doc["resources_used"])
    assert [e["error"] for e in logs.errors] == ["one soft failure"]


def test_auto_iteration_logger_finalize_sets_final_status(run: Any) -> None:
    """The seed's usage example: ``finalize("success")`` ends the run with that status."""
    result = run(
        """
        from agentlog import AutoIterationLogger

        class MyAgent:
            def __init__(self, name, logger):
                self.name = name
                self.logger = logger

            def run(self, input_data):
                output = f"Processed: {input_data}"
                self.logger.log_agent_run(
                    agent_name=self.name, input_data=input_data, output_data=output
                )
                return output

        logger = AutoIterationLogger("my_auto_workflow", logs_dir="my_logs")
        agent = MyAgent(name="test_agent", logger=logger)
        agent.run("Hello 1")
        agent.run("Hello 2")
        logger.finalize("success")
        """
    )
    assert result.returncode == 0, result.stderr
    folder = result.logs.parent / "my_logs"
    (path,) = folder.glob("*.json")
    assert path.name.startswith("my_auto_workflow_")
    assert list(result.logs.glob("*.json*")) == []  # the journal went once folded
    doc = load_document(path)
    assert doc["final_status"] == "success"
    assert doc["metadata"]["workflow_name"] == "my_auto_workflow"
    assert [it["iteration_number"] for it in doc["iterations"]] == [1, 2]
    assert [it["interactions"][0]["input_data"] for it in doc["iterations"]] == [
        "Hello 1", "Hello 2",
    ]
    lines = [line for line in result.stderr.splitlines() if line.startswith("agentlog: ")]
    assert len(lines) == 1 and path.name in lines[0]


def test_auto_iteration_logger_finalises_at_exit_without_finalize(run: Any) -> None:
    """Without ``finalize`` the run is finalised at exit as completed, once."""
    result = run(
        """
        from agentlog import AutoIterationLogger
        logger = AutoIterationLogger("forgot_to_finalize")
        logger.log_agent_run("a", "in", "out")
        logger.add_resource("notes.md")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.host_stderr() == ""
    doc = result.doc()
    assert doc["final_status"] == "completed"
    assert doc["metadata"]["workflow_name"] == "forgot_to_finalize"
    assert doc["metadata"]["end_time"] is not None
    assert len(doc["iterations"]) == 1
    assert doc["resources_used"][0]["resource"] == "notes.md"
    assert list(result.logs.glob("*.jsonl")) == []


# -- design 3: AdvancedWorkflowLogger -----------------------------------------------------
def _seed_advanced_example(logger: agentlog.AdvancedWorkflowLogger) -> None:
    try:
        logger.start_iteration(iteration_number=1)
        logger.start_interaction("AgentAlpha", {"message": "Hello from user"})
        logger.log_action(
            action_name="thinking",
            input_obj={"thought": "User says hello"},
            output_obj={"response": "We are about to greet"},
        )
        logger.end_interaction({"message": "Greetings, user!"})
        logger.end_iteration("completed")
    except Exception as e:  # noqa: BLE001 - the seed's own example, as written
        logger.log_error(str(e))
        logger.end_iteration("failed")


def _check_seed_advanced(doc: Doc) -> None:
    (it,) = doc["iterations"]
    assert it["iteration_number"] == 1
    assert it["status"] == "completed"
    assert it["auto"] is False
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


def test_advanced_logger_seed_example_in_process() -> None:
    """The seed's manual example makes iteration 1 > AgentAlpha > the ``thinking`` action."""
    logger = agentlog.AdvancedWorkflowLogger("my_advanced_workflow")
    with capture() as logs:
        _seed_advanced_example(logger)
    assert [e["ev"] for e in logs] == [
        "iteration_start", "interaction_start", "action", "interaction_end", "iteration_end",
    ]
    _check_seed_advanced(logs.document())


def test_advanced_logger_seed_example_as_a_program(run: Any) -> None:
    """The seed's manual example, finalize included, as a whole program: one document."""
    result = run(
        """
        from agentlog import AdvancedWorkflowLogger

        def main():
            logger = AdvancedWorkflowLogger("my_advanced_workflow")
            try:
                logger.start_iteration(iteration_number=1)
                logger.start_interaction("AgentAlpha", {"message": "Hello from user"})
                logger.log_action(
                    action_name="thinking",
                    input_obj={"thought": "User says hello"},
                    output_obj={"response": "We are about to greet"},
                )
                logger.end_interaction({"message": "Greetings, user!"})
                logger.end_iteration("completed")
            except Exception as e:
                logger.log_error(str(e))
                logger.end_iteration("failed")
            logger.finalize("completed")
            print(logger.save())

        main()
        """
    )
    assert result.returncode == 0, result.stderr
    doc = result.doc()
    assert doc["final_status"] == "completed"
    assert doc["metadata"]["workflow_name"] == "my_advanced_workflow"
    _check_seed_advanced(doc)
    assert Path(result.stdout.strip()).name.startswith("my_advanced_workflow_")


def _misuse_end_iteration(logger: agentlog.AdvancedWorkflowLogger) -> None:
    logger.end_iteration()


def _misuse_end_interaction(logger: agentlog.AdvancedWorkflowLogger) -> None:
    logger.start_iteration(1)
    logger.end_interaction("out")


def _misuse_log_action(logger: agentlog.AdvancedWorkflowLogger) -> None:
    logger.start_iteration(1)
    logger.log_action("think", 1, 2)


def _misuse_start_interaction(logger: agentlog.AdvancedWorkflowLogger) -> None:
    logger.start_interaction("AgentAlpha", 1)


def _misuse_start_iteration_twice(logger: agentlog.AdvancedWorkflowLogger) -> None:
    logger.start_iteration(1)
    logger.start_iteration(2)


def _misuse_end_iteration_in_interaction(logger: agentlog.AdvancedWorkflowLogger) -> None:
    logger.start_iteration(1)
    logger.start_interaction("AgentAlpha", 1)
    logger.end_iteration()


@pytest.mark.parametrize(
    ("misuse", "names"),
    [
        (_misuse_end_iteration, "start_iteration()"),
        (_misuse_end_interaction, "start_interaction()"),
        (_misuse_log_action, "start_interaction()"),
        (_misuse_start_interaction, "start_iteration()"),
        (_misuse_start_iteration_twice, "end_iteration()"),
        (_misuse_end_iteration_in_interaction, "end_interaction()"),
    ],
    ids=[
        "end_iteration-without-start",
        "end_interaction-without-start",
        "log_action-without-interaction",
        "start_interaction-without-iteration",
        "start_iteration-twice",
        "end_iteration-inside-interaction",
    ],
)
def test_advanced_logger_misuse_raises_usage_error_naming_the_call(
    misuse: Callable[[agentlog.AdvancedWorkflowLogger], None], names: str
) -> None:
    """Calls out of order raise ``UsageError`` naming what to call first; state survives."""
    logger = agentlog.AdvancedWorkflowLogger("misuse")
    with capture() as logs, pytest.raises(agentlog.UsageError) as excinfo:
        misuse(logger)
    assert names in str(excinfo.value)
    assert isinstance(excinfo.value, Exception)
    assert logs.errors == []  # the user's mistake is theirs to see, not an error_log entry
    # The logger is still usable: close whatever the misuse left open, in order.
    for close in (logger.end_interaction, logger.end_iteration):
        try:
            close()
        except agentlog.UsageError:
            pass  # nothing of that kind was open
    with capture() as logs:
        logger.start_iteration()
        logger.start_interaction("after", 1)
        logger.end_interaction(2)
        logger.end_iteration()
    assert [e["ev"] for e in logs] == [
        "iteration_start", "interaction_start", "interaction_end", "iteration_end",
    ]


# -- the Pythonic forms ------------------------------------------------------------------
def test_with_iteration_and_interaction_record_input_and_output(tmp_path: Path) -> None:
    """``with iteration()`` / ``with interaction(name, input) as ix`` nest as written."""
    with capture() as logs, agentlog.iteration() as it_scope:
        assert isinstance(it_scope, agentlog.iteration)
        with agentlog.interaction("planner", {"q": "capital?"}) as ix:
            ix.output = "Paris"
        with agentlog.interaction("critic", "Paris") as ix2:
            ix2.set_output("fine")
    (start,) = logs.of("iteration_start")
    assert start["auto"] is False
    ids = [e["ix"] for e in logs.interactions]
    doc = saved(tmp_path)
    it, planner = by_id(doc)[ids[0]]
    assert planner["input_data"] == {"q": "capital?"}
    assert planner["output_data"] == "Paris"
    assert planner["parent_interaction_id"] is None
    assert [i["agent_name"] for i in it["interactions"]] == ["planner", "critic"]
    assert it["interactions"][1]["output_data"] == "fine"
    assert it["status"] == "completed" and it["end_time"] is not None


def test_agent_decorator_returns_the_same_object_and_records_arguments() -> None:
    """``@agent`` returns the function's own result and records arguments by name."""
    result = {"answer": [1, 2, 3]}

    @agentlog.agent("planner")
    def plan(question: str, depth: int = 2) -> dict[str, Any]:
        """Plan."""
        return result

    assert plan.__name__ == "plan" and plan.__doc__ == "Plan."
    with capture() as logs:
        assert plan("capital?", depth=3) is result
    (start,) = logs.interactions
    assert start["agent"] == "planner"
    assert start["input"] == {"question": "capital?", "depth": 3}
    assert ended(logs, start["ix"])["output"] == result


def test_tool_decorator_bare_and_named() -> None:
    """``@tool`` names the action after the function, ``@tool("x")`` after ``x``."""

    @agentlog.tool
    def search(q: str) -> str:
        return f"results for {q}"

    @agentlog.tool("lookup")
    def fetch(key: str, default: str = "") -> str:
        return key.upper()

    assert search.__name__ == "search" and fetch.__name__ == "fetch"
    with capture() as logs, agentlog.interaction("planner", None):
        assert search("paris") == "results for paris"
        assert fetch("k") == "K"
    names = [a["name"] for a in logs.actions]
    assert names == ["tool:search", "tool:lookup"]
    first, second = logs.actions
    assert first["input"] == "paris" and first["output"] == "results for paris"
    assert second["input"] == "k" and second["output"] == "K"
    assert first["t"] <= first["t_end"]
    owner = logs.interactions[0]["ix"]
    assert first["ix"] == second["ix"] == owner


def test_nested_agents_record_their_parent(tmp_path: Path) -> None:
    """An agent called by an agent is its child (``parent_interaction_id``)."""

    @agentlog.tool
    def search(q: str) -> str:
        return q

    @agentlog.agent("researcher")
    def research(q: str) -> str:
        return search(q)

    @agentlog.agent("planner")
    def plan(q: str) -> str:
        return research(q) + "!"

    with capture() as logs:
        assert plan("x") == "x!"
    outer, inner = logs.interactions
    assert (outer["agent"], inner["agent"]) == ("planner", "researcher")
    assert inner["parent"] == outer["ix"]
    assert outer["parent"] is None
    (action,) = logs.actions
    assert action["ix"] == inner["ix"]
    doc = saved(tmp_path)
    assert by_id(doc)[inner["ix"]][1]["parent_interaction_id"] == outer["ix"]
    assert by_id(doc)[inner["ix"]][1]["actions"][0]["action_name"] == "tool:search"


def test_async_forms_record_like_the_sync_ones() -> None:
    """``async with``, async ``@agent`` and async ``@tool`` record, and return awaited values."""
    sentinel = object()

    @agentlog.tool
    async def search(q: str) -> object:
        await asyncio.sleep(0)
        return sentinel

    @agentlog.agent("planner")
    async def plan(q: str) -> object:
        await asyncio.sleep(0)
        return await search(q)

    async def main() -> object:
        async with agentlog.iteration(), agentlog.interaction("boss", "go") as ix:
            found = await plan("q")
            ix.output = "done"
        return found

    with capture() as logs:
        assert asyncio.run(main()) is sentinel
    boss, planner = logs.interactions
    assert planner["parent"] == boss["ix"]
    assert planner["it"] == boss["it"] == logs.of("iteration_start")[0]["it"]
    (action,) = logs.actions
    assert action["name"] == "tool:search" and action["ix"] == planner["ix"]
    assert ended(logs, boss["ix"])["output"] == "done"
    assert [e["status"] for e in logs.of("interaction_end")] == ["completed"] * 2


# -- exceptions pass through unchanged, recorded once -------------------------------------
class Boom(Exception):
    pass


def _raise(exc: BaseException) -> None:
    raise exc


def _via_with(exc: BaseException) -> None:
    with agentlog.interaction("agent", 1):
        _raise(exc)


def _via_agent(exc: BaseException) -> None:
    agentlog.agent("agent")(_raise)(exc)


def _via_tool(exc: BaseException) -> None:
    agentlog.tool(_raise)(exc)


def _via_tool_in_agent(exc: BaseException) -> None:
    tool = agentlog.tool("t")(_raise)
    agentlog.agent("agent")(tool)(exc)


def _via_nested_agents(exc: BaseException) -> None:
    inner = agentlog.agent("inner")(agentlog.tool(_raise))
    with agentlog.iteration():
        agentlog.agent("agent")(inner)(exc)


def _via_async_agent(exc: BaseException) -> None:
    async def body(e: BaseException) -> None:
        await asyncio.sleep(0)
        raise e

    asyncio.run(agentlog.agent("agent")(body)(exc))


def _via_async_tool_in_async_with(exc: BaseException) -> None:
    async def body(e: BaseException) -> None:
        await asyncio.sleep(0)
        raise e

    async def main() -> None:
        async with agentlog.interaction("agent", 1):
            await agentlog.tool(body)(exc)

    asyncio.run(main())


FORMS = {
    "with-interaction": _via_with,
    "agent": _via_agent,
    "tool": _via_tool,
    "tool-in-agent": _via_tool_in_agent,
    "nested-agents-in-iteration": _via_nested_agents,
    "async-agent": _via_async_agent,
    "async-tool-in-async-with": _via_async_tool_in_async_with,
}


@pytest.mark.parametrize("form", list(FORMS), ids=list(FORMS))
def test_exception_propagates_unchanged_and_is_logged_once(form: str) -> None:
    """The very same exception object escapes; error_log has it once; the scope failed."""
    exc = Boom("no luck")
    with capture() as logs, pytest.raises(Boom) as excinfo:
        FORMS[form](exc)
    assert excinfo.value is exc
    assert exc.args == ("no luck",) and exc.__cause__ is None
    frames = traceback.extract_tb(exc.__traceback__)
    assert frames[-1].name in ("_raise", "body")  # the user's raise is still innermost
    (entry,) = errors_of(logs, exc)
    assert entry["error"] == "no luck"
    assert "Boom: no luck" in entry["traceback"]
    statuses = {e["ix"]: e["status"] for e in logs.of("interaction_end")}
    assert statuses and set(statuses.values()) == {"failed"}
    assert entry["where"]["interaction_id"] in statuses
    if "tool" in form:
        (action,) = logs.actions
        assert action["error"]["type"].endswith("Boom")
    for it_end in logs.of("iteration_end"):
        assert it_end["status"] == "failed"


# BaseException passing through (TESTPLAN A2): status per kind.
BASE_EXCEPTIONS: dict[str, tuple[Callable[[], BaseException], str]] = {
    "KeyboardInterrupt": (KeyboardInterrupt, "interrupted"),
    "SystemExit": (lambda: SystemExit(3), "exited"),
    "CancelledError": (asyncio.CancelledError, "cancelled"),
    "GeneratorExit": (GeneratorExit, "cancelled"),
}


@pytest.mark.parametrize("kind", list(BASE_EXCEPTIONS))
@pytest.mark.parametrize("form", ["tool", "agent", "with-interaction", "tool-in-agent"])
def test_base_exceptions_pass_through_unchanged(form: str, kind: str) -> None:
    """KeyboardInterrupt/SystemExit/CancelledError/GeneratorExit escape as the same object."""
    make, status = BASE_EXCEPTIONS[kind]
    exc = make()
    with capture() as logs:
        try:
            FORMS[form](exc)
        except BaseException as caught:  # noqa: BLE001 - exactly what is under test
            assert caught is exc
        else:
            pytest.fail("the exception was swallowed")
    statuses = [e["status"] for e in logs.of("interaction_end")]
    assert statuses and set(statuses) == {status}
    assert {e["status"] for e in logs.of("iteration_end")} == {status}


def test_cancelling_a_task_marks_its_open_scopes_cancelled() -> None:
    """A task cancelled inside ``async with`` scopes re-raises CancelledError; scopes say so."""
    entered = asyncio.Event()

    @agentlog.agent("waiter")
    async def wait_forever() -> None:
        entered.set()
        await asyncio.sleep(60)

    async def body() -> None:
        async with agentlog.iteration(), agentlog.interaction("outer", 1):
            await wait_forever()

    async def main() -> None:
        task = asyncio.create_task(body())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    with capture() as logs:
        asyncio.run(main())
    assert [e["status"] for e in logs.of("interaction_end")] == ["cancelled", "cancelled"]
    assert [e["status"] for e in logs.of("iteration_end")] == ["cancelled"]


def test_generator_closed_inside_interaction_is_cancelled_not_failed() -> None:
    """Closing a generator early (GeneratorExit) inside ``with interaction`` is a cancel."""

    def stream() -> Iterator[int]:
        with agentlog.interaction("streamer", None):
            yield 1
            yield 2

    gen = stream()
    with capture() as logs:
        assert next(gen) == 1
        gen.close()
    assert [e["status"] for e in logs.of("interaction_end")] == ["cancelled"]


def test_keyboard_interrupt_through_agent_and_tool_ends_the_run_interrupted(run: Any) -> None:
    """Ctrl-C raised inside a tool inside an agent exits -2 with everything interrupted."""
    result = run(
        """
        import agentlog

        @agentlog.tool
        def slow():
            raise KeyboardInterrupt

        @agentlog.agent("planner")
        def plan():
            return slow()

        plan()
        """
    )
    assert result.returncode == -2
    assert "KeyboardInterrupt" in result.host_stderr()
    doc = result.doc()
    assert doc["final_status"] == "interrupted"
    (it,) = doc["iterations"]
    assert it["status"] == "interrupted"
    (ix,) = it["interactions"]
    assert ix["status"] == "interrupted"
    assert ix["actions"][0]["error"]["type"] == "KeyboardInterrupt"
    assert [e["type"] for e in doc["error_log"]] == ["KeyboardInterrupt"]


# -- auto mode ---------------------------------------------------------------------------
def test_auto_iteration_per_outermost_agent_run(tmp_path: Path) -> None:
    """Outside any iteration each outermost agent run gets one auto iteration; nested stay."""

    @agentlog.agent("inner")
    def inner(x: int) -> int:
        return x + 1

    @agentlog.agent("outer")
    def outer(x: int) -> int:
        return inner(x) + inner(x)

    with capture() as logs:
        outer(1)
        outer(2)
    starts = logs.of("iteration_start")
    assert len(starts) == 2 and all(s["auto"] for s in starts)
    first, second = (s["it"] for s in starts)
    assert [e["it"] for e in logs.interactions] == [first] * 3 + [second] * 3
    ends = logs.of("iteration_end")
    assert [e["it"] for e in ends] == [first, second]
    # Each auto iteration closes when its outermost agent returns.
    order = [e["ev"] for e in logs]
    assert order.index("iteration_end") < order.index("iteration_start", 1)
    doc = saved(tmp_path)
    it, _ = by_id(doc)[logs.interactions[0]["ix"]]
    assert it["auto"] is True
    assert [i["agent_name"] for i in it["interactions"]] == ["outer", "inner", "inner"]


def test_no_auto_iteration_inside_an_iteration() -> None:
    """Agents and tools inside ``with iteration()`` join it; no automatic one is opened."""

    @agentlog.tool
    def search(q: str) -> str:
        return q

    @agentlog.agent("a")
    def act() -> str:
        return search("q")

    with capture() as logs, agentlog.iteration():
        act()
        search("bare")
    (start,) = logs.of("iteration_start")
    assert start["auto"] is False
    assert {e["it"] for e in logs.interactions} == {start["it"]}


def test_bare_tool_call_is_an_interaction_in_its_own_auto_iteration() -> None:
    """A tool called outside everything is a one-action interaction in its own iteration."""

    @agentlog.tool("search")
    def find(q: str) -> str:
        return q * 2

    with capture() as logs:
        find("a")
        find("b")
    assert len(logs.of("iteration_start")) == 2
    assert [e["agent"] for e in logs.interactions] == ["tool:search", "tool:search"]
    assert [a["ix"] for a in logs.actions] == [e["ix"] for e in logs.interactions]
    assert [ended(logs, e["ix"])["output"] for e in logs.interactions] == ["aa", "bb"]


# -- all three designs and the Pythonic forms in one program ------------------------------
def test_mixing_every_api_gives_one_consistent_document(run: Any) -> None:
    """All three designs and the Pythonic forms in one program make ONE valid document."""
    result = run(
        """
        import asyncio
        import agentlog
        from agentlog import AdvancedWorkflowLogger, AutoIterationLogger

        manual = AdvancedWorkflowLogger("mixed")
        manual.start_iteration(iteration_number=1)
        manual.start_interaction("AgentAlpha", {"message": "hi"})
        manual.log_action("thinking", {"t": 1}, {"r": 2})
        manual.end_interaction({"message": "hello"})
        manual.end_iteration("completed")

        auto = AutoIterationLogger("mixed")
        auto.log_agent_run("auto_agent", "in", "out")
        auto.add_resource("shared.txt")

        agentlog.log_interaction("bare", 1, 2)
        agentlog.add_resource("shared.txt")
        agentlog.log_error("soft")

        @agentlog.tool
        def search(q):
            return q

        @agentlog.agent("planner")
        async def plan(q):
            return search(q)

        async def main():
            async with agentlog.iteration():
                await plan("x")

        asyncio.run(main())
        with agentlog.iteration():
            with agentlog.interaction("boss", 0) as ix:
                ix.output = search("y")
                manual.add_resource("other.txt")
                try:
                    raise ValueError("caught")
                except ValueError as e:
                    auto.log_error(e)
        """
    )
    assert result.returncode == 0, result.stderr
    assert list(result.logs.glob("*.jsonl")) == []
    doc = result.doc()
    assert doc["final_status"] == "completed"
    assert doc["metadata"]["workflow_name"] == "mixed"
    numbers = [it["iteration_number"] for it in doc["iterations"]]
    assert numbers == [1, 2, 3, 4, 5]
    agents = [[ix["agent_name"] for ix in it["interactions"]] for it in doc["iterations"]]
    assert agents == [["AgentAlpha"], ["auto_agent"], ["bare"], ["planner"], ["boss"]]
    actions = [
        a["action_name"] for it in doc["iterations"] for ix in it["interactions"]
        for a in ix["actions"]
    ]
    assert actions == ["thinking", "tool:search", "tool:search"]
    resources = {r["resource"]: r["count"] for r in doc["resources_used"]}
    assert resources == {"shared.txt": 2, "other.txt": 1}
    assert [e["error"] for e in doc["error_log"]] == ["soft", "caught"]
    assert doc["error_log"][1]["where"]["agent_name"] == "boss"
    totals = doc["metadata"]["totals"]
    assert (totals["iterations"], totals["interactions"], totals["errors"]) == (5, 5, 2)
    assert all(it["status"] == "completed" for it in doc["iterations"])
    ids = [ix["interaction_id"] for it in doc["iterations"] for ix in it["interactions"]]
    assert len(ids) == len(set(ids))


# -- agentlog.testing --------------------------------------------------------------------
def test_capture_collects_only_the_block_and_sorts_by_kind() -> None:
    """``capture()`` sees exactly the events of its block, with the documented views."""
    agentlog.log_interaction("before", 1, 2)
    sinks = list(api.RECORDER.sinks)
    with capture() as logs:
        with capture() as inner:
            agentlog.add_resource("r.txt")
        with agentlog.interaction("a", 1):
            agentlog.tool(lambda: 1)()
        agentlog.log_error("e")
    agentlog.log_interaction("after", 1, 2)
    assert api.RECORDER.sinks == sinks
    assert [e["ev"] for e in inner] == ["resource"]
    assert [e["resource"] for e in logs.resources] == ["r.txt"]
    assert [e["agent"] for e in logs.interactions] == ["a"]
    assert len(logs.actions) == 1 and len(logs.errors) == 1
    assert logs.of("resource") == logs.resources
    assert all(e["agent"] not in ("before", "after") for e in logs.interactions)
    doc = logs.document()
    assert doc["final_status"] == "in_progress"
    assert [ix["agent_name"] for it in doc["iterations"] for ix in it["interactions"]] == ["a"]
    assert doc["resources_used"][0]["resource"] == "r.txt"
    json.dumps(doc)


def test_capture_sees_events_of_a_failing_block_and_removes_its_sink() -> None:
    """A block that raises still leaves its events captured and its sink removed."""
    sinks = list(api.RECORDER.sinks)
    with pytest.raises(Boom), capture() as logs:
        agentlog.log_interaction("x", 1, 2)
        raise Boom
    assert api.RECORDER.sinks == sinks
    assert len(logs.interactions) == 1


def test_fixed_clock_makes_timestamps_deterministic() -> None:
    """``fixed_clock(start, step)`` stamps events start, start+step, ...; then restores."""
    start, step = 1_800_000_000_000_000_000, 1_000_000
    with fixed_clock(start, step), capture() as logs:
        with agentlog.iteration(), agentlog.interaction("a", 1):
            pass
        agentlog.log_interaction("b", 1, 2)
    stamps = [e["t"] for e in logs]
    assert stamps[0] == start
    assert stamps == sorted(set(stamps))  # strictly increasing
    assert all((t - start) % step == 0 for t in stamps)
    assert _recorder.now_ns is time.time_ns
    doc = logs.document()
    it = doc["iterations"][0]
    assert it["duration_ms"] == (stamps[3] - stamps[0]) / 1e6  # whole ticks of 1 ms
    assert it["interactions"][0]["duration_ms"] == (stamps[2] - stamps[1]) / 1e6
    assert it["start_time"] == _document.iso(start)
    with capture() as later:
        agentlog.log_interaction("c", 1, 2)
    assert abs(later.interactions[0]["t"] - time.time_ns()) < 60 * 10**9


def test_fixed_clock_defaults_and_nesting_restore() -> None:
    """The defaults tick 1 ms from a fixed start; nested clocks restore the outer one."""
    with fixed_clock(), capture() as logs:
        agentlog.log_interaction("a", 1, 2)
        with fixed_clock(5, 1):
            agentlog.log_interaction("b", 1, 2)
        agentlog.log_interaction("c", 1, 2)
    a, b, c = (e["t"] for e in logs.interactions)
    assert (a, b, c) == (1_800_000_000_000_000_000, 5, 1_800_000_000_001_000_000)


def test_decorated_functions_keep_their_identity_markers() -> None:
    """Decorators keep ``__wrapped__``, name and qualname (functools.wraps), sync and async."""

    async def afn() -> None:
        return None

    def fn() -> None:
        return None

    for deco in (agentlog.agent("x"), agentlog.tool, agentlog.tool("y")):
        for f in (fn, afn):
            wrapped = deco(f)
            assert wrapped.__wrapped__ is f  # type: ignore[attr-defined]
            assert wrapped.__qualname__ == f.__qualname__
            assert asyncio.iscoroutinefunction(wrapped) == asyncio.iscoroutinefunction(f)
