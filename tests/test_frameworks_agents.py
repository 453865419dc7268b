"""OpenAI Agents SDK: traces, agents, tools and handoffs as agentlog records it.

Real ``openai-agents`` Runner on the real ``openai`` SDK (Chat Completions and Responses
models), over loopback HTTP to ``tests/fake_llm.py``. A trace is an iteration, each agent
an interaction named after it, each tool a ``tool:<name>`` action and each handoff a
``handoff:<agent>`` action; every request the server received is exactly one LLM record
(made by the openai adapter) in the agent that made it. The SDK's own trace exporter
has no key here, so it sends nothing; a subprocess test checks that no connection other
than loopback is attempted.

Covers A1: a fault in the tracing processor is swallowed; same result, error in error_log.
Covers A7: Agents SDK imported before or after agentlog: same structure (subprocess).
Covers A8: Runner over the openai SDK: LLM records equal the requests the server got.
Covers A13: uninstall turns the processor off (nothing recorded); install turns it on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("agents")

import agents
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
)
from openai import AsyncOpenAI

import agentlog
from agentlog.integrations import openai_agents as adapter
from agentlog.testing import capture
from fake_llm import OPENAI_KEY, FakeLLM, Reply
from helpers import REPO, validate_document
from llm_testing import llm_records

APIS = pytest.mark.parametrize("api", ["chat", "responses"])
PATHS = {"chat": "/chat/completions", "responses": "/responses"}


@function_tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@function_tool
def explode(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"tool failed: {reason}")


@pytest.fixture(scope="module", autouse=True)
def _sdk_tracing_started() -> Iterator[None]:
    """The SDK's exporter thread starts with its first trace and lives on (a daemon):
    start it before the per-test thread-leak check takes its baseline."""
    with agents.trace("warm-up"):
        pass
    yield


def run_sync(agent: Agent[Any], text: str, **kw: Any) -> Any:
    """``Runner.run`` in a fresh loop. ``Runner.run_sync`` keeps one loop per thread, with
    its executor thread, for the process (and warns on its second use under ``-W error``),
    so it is used in the subprocess test only."""
    return asyncio.run(Runner.run(agent, text, **kw))


@pytest.fixture(autouse=True)
def _no_tracing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def model_for(srv: FakeLLM, api: str) -> Any:
    client = AsyncOpenAI(base_url=srv.openai_base_url, api_key=OPENAI_KEY, max_retries=0,
                         http_client=httpx.AsyncClient(
                             limits=httpx.Limits(max_keepalive_connections=0)))
    if api == "chat":
        return OpenAIChatCompletionsModel("gpt-4o-mini", client)
    return OpenAIResponsesModel("gpt-4o-mini", client)


def triage_and_math(srv: FakeLLM, api: str) -> Agent[Any]:
    model = model_for(srv, api)
    math = Agent(name="math", instructions="Do math.", tools=[add], model=model)
    return Agent(name="triage", instructions="Route.", handoffs=[math], model=model)


def script_handoff_tool_answer(srv: FakeLLM) -> None:
    # Call ids unique across the conversation: the SDK refuses a reused one.
    srv.script(Reply(tool_calls=[("transfer_to_math", "{}")], tool_call_ids=["c_handoff"]),
               Reply(tool_calls=[("add", '{"a": 2, "b": 3}')], tool_call_ids=["c_add"]),
               Reply(text="5"))


def shape(doc: dict[str, Any]) -> list[tuple[str, str | None, list[str]]]:
    """(agent, parent agent, action names) per interaction, in document order."""
    names: dict[int, str] = {}
    out = []
    for it in doc["iterations"]:
        for ix in it["interactions"]:
            names[ix["interaction_id"]] = ix["agent_name"]
            parent = ix.get("parent_interaction_id")
            out.append((ix["agent_name"], names.get(parent) if parent is not None else None,
                        sorted(a["action_name"] for a in ix["actions"])))
    return out


EXPECTED = {
    "chat": [("triage", None, ["handoff:math", "llm:openai.chat"]),
             ("math", None, ["llm:openai.chat", "llm:openai.chat", "tool:add"])],
    "responses": [("triage", None, ["handoff:math", "llm:openai.responses"]),
                  ("math", None, ["llm:openai.responses", "llm:openai.responses", "tool:add"])],
}


# --------------------------------------------------------------------------- runs


@APIS
@pytest.mark.parametrize("mode", ["run", "streamed"])
def test_handoff_and_tool(srv: FakeLLM, api: str, mode: str) -> None:
    """One run: one iteration; each agent an interaction; the handoff and the tool are
    actions; one LLM record per request, in the agent that sent it."""
    script_handoff_tool_answer(srv)
    triage = triage_and_math(srv, api)

    async def streamed() -> Any:
        result = Runner.run_streamed(triage, "2+3?")
        async for _ in result.stream_events():
            pass
        return result

    with capture() as cap:
        result = run_sync(triage, "2+3?") if mode == "run" else asyncio.run(streamed())
    assert result.final_output == "5"
    doc = validate_document(cap.document())
    assert srv.count() == srv.count(PATHS[api]) == 3
    assert len(llm_records(doc)) == 3
    assert shape(doc) == EXPECTED[api]
    (iteration,) = doc["iterations"]
    assert iteration["status"] == "completed"
    triage_ix, math_ix = iteration["interactions"]
    handoff = next(a for a in triage_ix["actions"] if a["action_name"] == "handoff:math")
    assert handoff["input_data"] == {"from_agent": "triage", "to_agent": "math"}
    tool = next(a for a in math_ix["actions"] if a["action_name"] == "tool:add")
    assert tool["input_data"] == {"a": 2, "b": 3} and tool["output_data"] == 5
    assert all(ix["status"] == "completed" for ix in (triage_ix, math_ix))
    assert doc["error_log"] == []


def test_tool_error_is_the_action_error(srv: FakeLLM) -> None:
    """A failing tool (the SDK tells the model and goes on): the action carries the error."""
    srv.script(Reply(tool_calls=[("explode", '{"reason": "x"}')], tool_call_ids=["c_x"]),
               Reply(text="sorry"))
    agent = Agent(name="fragile", tools=[explode], model=model_for(srv, "chat"))
    with capture() as cap:
        assert run_sync(agent, "go").final_output == "sorry"
    doc = validate_document(cap.document())
    (ix,) = doc["iterations"][0]["interactions"]
    (action,) = [a for a in ix["actions"] if a["action_name"] == "tool:explode"]
    assert action["error"]["type"].endswith("ToolError")
    assert action["error"]["error"].startswith("Error running tool")  # details: SDK-redacted
    assert len(doc["error_log"]) == 1
    assert len(llm_records(doc)) == srv.count() == 2


def test_failed_run_fails_its_agent(srv: FakeLLM) -> None:
    """Max turns exceeded: the SDK's exception reaches the caller unchanged; the agent's
    interaction and the iteration are failed."""
    srv.script(*[Reply(tool_calls=[("add", '{"a": 1, "b": 1}')], tool_call_ids=[f"c{i}"])
                 for i in range(2)])
    agent = Agent(name="looper", tools=[add], model=model_for(srv, "chat"))
    with capture() as cap, pytest.raises(agents.MaxTurnsExceeded):
        run_sync(agent, "loop", max_turns=1)
    doc = validate_document(cap.document())
    (iteration,) = doc["iterations"]
    assert [(ix["agent_name"], ix["status"]) for ix in iteration["interactions"]] == [
        ("looper", "failed")]
    assert iteration["status"] == "failed"
    assert len(llm_records(doc)) == srv.count() == 1


def test_inside_a_user_interaction(srv: FakeLLM) -> None:
    """Inside the user's own interaction the agents nest in it, in its iteration."""
    script_handoff_tool_answer(srv)
    triage = triage_and_math(srv, "chat")
    with capture() as cap, agentlog.interaction("orchestrator"):
        run_sync(triage, "2+3?")
    doc = validate_document(cap.document())
    assert [(a, p) for a, p, _ in shape(doc)] == [
        ("orchestrator", None), ("triage", "orchestrator"), ("math", "orchestrator")]
    assert len(doc["iterations"]) == 1
    assert len(llm_records(doc)) == srv.count() == 3


def test_agent_as_tool_nests(srv: FakeLLM) -> None:
    """An agent used as a tool: a ``tool:`` action of the outer agent, and an interaction
    of its own inside the outer one, holding its own LLM call."""
    model = model_for(srv, "chat")
    translator = Agent(name="translator", instructions="Translate.", model=model)
    boss = Agent(name="boss", model=model, tools=[translator.as_tool(
        tool_name="translate", tool_description="Translate text.")])
    srv.script(Reply(tool_calls=[("translate", '{"input": "hello"}')], tool_call_ids=["c_t"]),
               Reply(text="bonjour"), Reply(text="done"))
    with capture() as cap:
        assert run_sync(boss, "translate hello").final_output == "done"
    doc = validate_document(cap.document())
    assert shape(doc) == [("boss", None, ["llm:openai.chat", "llm:openai.chat", "tool:translate"]),
                          ("translator", "boss", ["llm:openai.chat"])]
    assert len(llm_records(doc)) == srv.count() == 3
    assert adapter.TRACKER.open == {}


def test_one_trace_is_one_iteration(srv: FakeLLM) -> None:
    """Two runs inside one ``agents.trace``: one iteration holding both."""
    agent = Agent(name="echo", model=model_for(srv, "chat"))

    async def main() -> None:
        with agents.trace("two turns"):
            await Runner.run(agent, "one")
            await Runner.run(agent, "two")

    with capture() as cap:
        asyncio.run(main())
    doc = validate_document(cap.document())
    (iteration,) = doc["iterations"]
    assert [ix["agent_name"] for ix in iteration["interactions"]] == ["echo", "echo"]
    assert len(llm_records(doc)) == srv.count() == 2


def test_concurrent_runs_keep_their_calls(srv: FakeLLM) -> None:
    """Two runs at once (asyncio.gather): each LLM call stays with its own agent."""
    alpha = Agent(name="alpha", model=model_for(srv, "chat"))
    beta = Agent(name="beta", model=model_for(srv, "chat"))

    async def main() -> None:
        await asyncio.gather(Runner.run(alpha, "for alpha"), Runner.run(beta, "for beta"))

    with capture() as cap:
        asyncio.run(main())
    doc = validate_document(cap.document())
    assert len(doc["iterations"]) == 2
    for it in doc["iterations"]:
        (ix,) = it["interactions"]
        (call,) = ix["actions"]
        assert call["input_data"][-1]["content"] == f"for {ix['agent_name']}"
    assert srv.count() == 2


# --------------------------------------------------------------------------- the hooks


def test_processor_is_registered_once() -> None:
    """The SDK's provider carries our processor, once, beside its own exporter."""
    multi = agents.tracing.get_trace_provider()._multi_processor  # type: ignore[attr-defined]
    ours = [p for p in multi._processors if type(p).__name__ == "AgentlogTracingProcessor"]
    assert ours == [adapter.PROCESSOR]
    adapter.install(agents)
    assert [p for p in multi._processors if p is adapter.PROCESSOR] == [adapter.PROCESSOR]


def test_uninstall_and_install_mirror(srv: FakeLLM) -> None:
    """Uninstalled: the run works and only the LLM call is recorded. Installed: all back."""
    agent = Agent(name="echo", model=model_for(srv, "chat"))
    adapter.uninstall()
    try:
        with capture() as cap:
            run_sync(agent, "hi")
        assert [ix["agent_name"] for it in validate_document(cap.document())["iterations"]
                for ix in it["interactions"]] == ["openai:gpt-4o-mini"]
    finally:
        adapter.install(agents)
    with capture() as cap:
        run_sync(agent, "hi")
    assert shape(validate_document(cap.document())) == [("echo", None, ["llm:openai.chat"])]


def test_verbosity_zero_records_nothing(srv: FakeLLM, verbosity: Any) -> None:
    script_handoff_tool_answer(srv)
    verbosity(0)
    with capture() as cap:
        assert run_sync(triage_and_math(srv, "chat"), "2+3?").final_output == "5"
    assert list(cap) == [] and adapter.TRACKER.open == {}


@pytest.mark.allows_internal_errors
def test_fault_in_processor_never_reaches_the_host(srv: FakeLLM,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in our bookkeeping (injected) is swallowed: same result, the error is in
    error_log, and the LLM calls are still recorded."""
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(adapter.api, "_open_interaction", broken)
    script_handoff_tool_answer(srv)
    with capture() as cap:
        assert run_sync(triage_and_math(srv, "chat"), "2+3?").final_output == "5"
    doc = validate_document(cap.document())
    assert len(llm_records(doc)) == srv.count() == 3
    assert any("injected" in e["error"] for e in doc["error_log"])
    monkeypatch.undo()
    adapter.G_TRACE.failures = 0


# --------------------------------------------------------------------------- process level


SCRIPT = """
import socket, sys
outbound = []

def audit(event, args):
    if event == "socket.connect":
        address = args[1]
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            outbound.append(repr(address))
    elif event == "socket.getaddrinfo" and args[0] not in ("127.0.0.1", "localhost", "::1"):
        outbound.append(f"dns:{{args[0]}}")

sys.addaudithook(audit)
import atexit
atexit.register(lambda: print("outbound", outbound, flush=True))  # first in, so runs last
sys.path.insert(0, {tests!r})
{first}
{second}
import httpx
from fake_llm import FakeLLM, Reply, OPENAI_KEY
from agents import Agent, Runner, function_tool, OpenAIChatCompletionsModel
from openai import AsyncOpenAI

@function_tool
def add(a: int, b: int) -> int:
    \"\"\"Add two numbers.\"\"\"
    return a + b

with FakeLLM() as srv:
    srv.script(Reply(tool_calls=[("add", '{{"a": 2, "b": 3}}')], tool_call_ids=["c1"]),
               Reply(text="5"))
    client = AsyncOpenAI(base_url=srv.openai_base_url, api_key=OPENAI_KEY, max_retries=0)
    agent = Agent(name="calc", tools=[add], model=OpenAIChatCompletionsModel("gpt-4o-mini", client))
    print(Runner.run_sync(agent, "2+3?").final_output)
    print("requests", srv.count())
"""


@pytest.mark.parametrize("agentlog_first", [True, False], ids=["agentlog-first", "sdk-first"])
def test_import_order_and_no_outbound_connection(run: Any, agentlog_first: bool) -> None:
    """Either import order gives the same structure, and no connection leaves loopback
    (not ours, not the SDK's exporter, which has no key), even at exit."""
    sdk = "import agents"
    first, second = ("import agentlog", sdk) if agentlog_first else (sdk, "import agentlog")
    result = run(SCRIPT.format(tests=str(REPO / "tests"), first=first, second=second))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["5", "requests 2", "outbound []"]
    doc = result.doc()
    assert shape(doc) == [("calc", None, ["llm:openai.chat", "llm:openai.chat", "tool:add"])]
    assert len(llm_records(doc)) == 2
