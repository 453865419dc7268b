"""pydantic-ai: agent runs as interactions, tools as actions, through its capabilities.

A real pydantic-ai ``Agent`` with ``OpenAIChatModel`` on the real ``openai`` SDK, over
loopback HTTP to ``tests/fake_llm.py``: each run is one interaction named after the agent,
each tool call a ``tool:<name>`` action, and every request the server received exactly
one LLM record (made by the openai adapter) inside that interaction.

Covers A7: pydantic-ai imported before or after agentlog: same structure (subprocess).
Covers A8: pydantic-ai over the openai SDK: LLM records equal the requests the server got.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

pydantic_ai = pytest.importorskip("pydantic_ai")

from openai import AsyncOpenAI  # noqa: E402
from pydantic_ai import Agent, ModelRetry  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402

import agentlog  # noqa: E402
from agentlog.integrations import pydantic_ai as adapter  # noqa: E402
from agentlog.testing import capture  # noqa: E402
from fake_llm import OPENAI_KEY, FakeLLM, Reply  # noqa: E402
from helpers import REPO, validate_document  # noqa: E402
from llm_testing import llm_records  # noqa: E402


def model_for(srv: FakeLLM) -> OpenAIChatModel:
    client = AsyncOpenAI(base_url=srv.openai_base_url, api_key=OPENAI_KEY, max_retries=0,
                         http_client=httpx.AsyncClient(
                             limits=httpx.Limits(max_keepalive_connections=0)))
    return OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))


def calculator(srv: FakeLLM) -> Agent[None, str]:
    agent = Agent(model_for(srv), name="calc", instructions="Do math.")

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @agent.tool_plain(retries=0)
    def explode(reason: str) -> str:
        """Always fails."""
        raise ValueError(f"tool failed: {reason}")

    return agent


def actions(ix: dict[str, Any]) -> list[str]:
    return sorted(a["action_name"] for a in ix["actions"])


def interactions(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [ix for it in doc["iterations"] for ix in it["interactions"]]


@pytest.mark.parametrize("async_", [False, True], ids=["run", "run_stream"])
def test_run_with_tool(srv: FakeLLM, async_: bool) -> None:
    """One run: one interaction named after the agent, with its prompt and output; the
    tool an action; one LLM record per request."""
    srv.script(Reply(tool_calls=[("add", '{"a": 2, "b": 3}')], tool_call_ids=["c_add"]),
               Reply(text="5"))
    agent = calculator(srv)

    async def streamed() -> str:
        async with agent.run_stream("2+3?") as result:
            return await result.get_output()

    with capture() as cap:
        output = asyncio.run(streamed()) if async_ else asyncio.run(agent.run("2+3?")).output
    assert output == "5"
    doc = validate_document(cap.document())
    (ix,) = interactions(doc)
    assert ix["agent_name"] == "calc" and ix["input_data"] == "2+3?"
    assert actions(ix) == ["llm:openai.chat", "llm:openai.chat", "tool:add"]
    tool = next(a for a in ix["actions"] if a["action_name"] == "tool:add")
    assert tool["input_data"] == {"a": 2, "b": 3} and tool["output_data"] == 5
    assert len(llm_records(doc)) == srv.count() == 2
    if not async_:
        assert ix["output_data"] == "5" and ix["status"] == "completed"


def test_tool_error_then_failed_run(srv: FakeLLM) -> None:
    """A tool that raises a plain exception: its action carries it, the very exception
    reaches the caller, the interaction fails, and error_log holds it once."""
    srv.script(Reply(tool_calls=[("explode", '{"reason": "x"}')], tool_call_ids=["c_x"]))
    agent = calculator(srv)
    with capture() as cap, pytest.raises(ValueError, match="tool failed: x") as caught:
        asyncio.run(agent.run("go"))
    doc = validate_document(cap.document())
    (ix,) = interactions(doc)
    assert ix["status"] == "failed"
    tool = next(a for a in ix["actions"] if a["action_name"] == "tool:explode")
    assert tool["error"] == {"type": "ValueError", "error": "tool failed: x"}
    assert [(e["type"], e["error"]) for e in doc["error_log"]] == [
        ("ValueError", str(caught.value))]
    assert len(llm_records(doc)) == srv.count() == 1


def test_model_retry_is_two_calls_one_tool_each(srv: FakeLLM) -> None:
    """``ModelRetry`` from a tool: each attempt an action, the run completes."""
    agent = Agent(model_for(srv), name="retrier")
    attempts: list[int] = []

    @agent.tool_plain(retries=2)
    def flaky(n: int) -> int:
        """Fails once."""
        attempts.append(n)
        if len(attempts) == 1:
            raise ModelRetry("try again")
        return n

    srv.script(Reply(tool_calls=[("flaky", '{"n": 1}')], tool_call_ids=["c1"]),
               Reply(tool_calls=[("flaky", '{"n": 2}')], tool_call_ids=["c2"]),
               Reply(text="ok"))
    with capture() as cap:
        assert asyncio.run(agent.run("go")).output == "ok"
    doc = validate_document(cap.document())
    (ix,) = interactions(doc)
    assert actions(ix).count("tool:flaky") == 2 and ix["status"] == "completed"
    assert len(llm_records(doc)) == srv.count() == 3


def test_inside_a_user_agent(srv: FakeLLM) -> None:
    """Under ``@agentlog.agent`` the run nests in the user's interaction."""
    agent = Agent(model_for(srv), name="helper")

    @agentlog.agent("planner")
    async def plan() -> str:
        return (await agent.run("hi")).output

    with capture() as cap:
        assert asyncio.run(plan()) == "echo: hi"
    doc = validate_document(cap.document())
    planner, helper = interactions(doc)
    assert (planner["agent_name"], helper["agent_name"]) == ("planner", "helper")
    assert helper["parent_interaction_id"] == planner["interaction_id"]
    assert actions(helper) == ["llm:openai.chat"] and actions(planner) == []


def test_verbosity_zero_records_nothing(srv: FakeLLM, verbosity: Any) -> None:
    verbosity(0)
    with capture() as cap:
        assert asyncio.run(Agent(model_for(srv), name="q").run("hi")).output == "echo: hi"
    assert list(cap) == []


def test_uninstall_leaves_agents_inert(srv: FakeLLM) -> None:
    """After uninstall a new agent has no capability of ours and an old one records only
    its LLM call; install again joins new agents."""
    old = Agent(model_for(srv), name="old")
    adapter.uninstall()
    try:
        with capture() as cap:
            asyncio.run(old.run("hi"))
        assert [ix["agent_name"] for ix in interactions(validate_document(cap.document()))] == [
            "openai:gpt-4o-mini"]
    finally:
        adapter.install(pydantic_ai)
    with capture() as cap:
        asyncio.run(Agent(model_for(srv), name="new").run("hi"))
    assert [ix["agent_name"] for ix in interactions(validate_document(cap.document()))] == [
        "new"]


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
{first}
{second}
from fake_llm import FakeLLM, Reply, OPENAI_KEY
from openai import AsyncOpenAI
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

with FakeLLM() as srv:
    srv.script(Reply(tool_calls=[("add", '{{"a": 2, "b": 3}}')], tool_call_ids=["c1"]),
               Reply(text="5"))
    client = AsyncOpenAI(base_url=srv.openai_base_url, api_key=OPENAI_KEY, max_retries=0)
    agent = Agent(OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client)),
                  name="calc")

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        \"\"\"Add two numbers.\"\"\"
        return a + b

    print(agent.run_sync("2+3?").output)
    print("requests", srv.count())
"""


@pytest.mark.parametrize("agentlog_first", [True, False], ids=["agentlog-first", "sdk-first"])
def test_import_order(run: Any, agentlog_first: bool) -> None:
    sdk = "import pydantic_ai"
    first, second = ("import agentlog", sdk) if agentlog_first else (sdk, "import agentlog")
    result = run(SCRIPT.format(tests=str(REPO / "tests"), first=first, second=second))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["5", "requests 2"]
    (ix,) = interactions(result.doc())
    assert ix["agent_name"] == "calc"
    assert actions(ix) == ["llm:openai.chat", "llm:openai.chat", "tool:add"]
