"""LangChain / LangGraph: the structure agentlog records with no user code.

Real ``langchain-openai`` chat models on the real ``openai`` SDK, over loopback HTTP to
``tests/fake_llm.py``. Chains, agents and graph nodes are interactions named after the
run, tools are ``tool:<name>`` actions, and every request the server received is exactly
one LLM record (made by the openai adapter), in the interaction that made it.

Covers A1: a fault in the callback handler or scope hook is swallowed; same result, logged.
Covers A7: LangChain/LangGraph imported before or after agentlog: same structure (subprocess).
Covers A8: LangChain chat model over openai: LLM records equal the requests the server got.
Covers A13: uninstall drops the handler and restores the patched function; install re-adds.
"""

from __future__ import annotations

import asyncio
import operator
import warnings
from typing import Annotated, Any, TypedDict

import httpx
import pytest
from langchain_core.callbacks.manager import CallbackManager
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

import agentlog
from agentlog.integrations import langchain as lc_adapter
from agentlog.testing import capture
from fake_llm import OPENAI_KEY, FakeLLM, Reply
from helpers import REPO, validate_document
from llm_testing import llm_records

MODES = pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
ADD_CALL = Reply(tool_calls=[("add", '{"a": 2, "b": 3}')], tool_call_ids=["call_add"])


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"tool failed: {reason}")


def chat_model(srv: FakeLLM, **kw: Any) -> ChatOpenAI:
    """A real ChatOpenAI on the fake; its HTTP clients keep no connection open afterwards
    (langchain-openai would otherwise share cached, pooled clients across tests)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return ChatOpenAI(model="gpt-4o-mini", base_url=srv.openai_base_url, api_key=OPENAI_KEY,
                      max_retries=0, http_client=httpx.Client(limits=limits),
                      http_async_client=httpx.AsyncClient(limits=limits), **kw)


def tool_graph(srv: FakeLLM, name: str = "math_agent") -> Any:
    """The classic agent loop, built by hand: model node, tool node, back to the model."""
    model = chat_model(srv).bind_tools([add])

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    async def acall_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", RunnableLambda(call_model, afunc=acall_model))
    graph.add_node("tools", ToolNode([add]))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    return graph.compile(name=name)


def run(graph: Any, data: Any, async_: bool) -> Any:
    """``ainvoke`` in a fresh loop, or ``invoke``."""
    return asyncio.run(graph.ainvoke(data)) if async_ else graph.invoke(data)


def shape(doc: dict[str, Any]) -> list[tuple[str, str | None, list[str]]]:
    """(agent, parent agent, action names) per interaction, in document order."""
    names: dict[int, str] = {}
    out = []
    for it in doc["iterations"]:
        for ix in it["interactions"]:
            names[ix["interaction_id"]] = ix["agent_name"]
            parent = ix.get("parent_interaction_id")
            out.append((ix["agent_name"], names.get(parent) if parent is not None else None,
                        [a["action_name"] for a in ix["actions"]]))
    return out


def interactions(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [ix for it in doc["iterations"] for ix in it["interactions"]]


# --------------------------------------------------------------------------- graphs


async def _drain(stream: Any) -> list[Any]:
    return [item async for item in stream]


CALL_FORMS = {
    "invoke": lambda g, data: g.invoke(data),
    "ainvoke": lambda g, data: asyncio.run(g.ainvoke(data)),
    "stream": lambda g, data: list(g.stream(data)),
    "stream-messages": lambda g, data: list(g.stream(data, stream_mode="messages")),
    "astream": lambda g, data: asyncio.run(_drain(g.astream(data))),
    "astream_events": lambda g, data: asyncio.run(_drain(g.astream_events(data))),
}


@pytest.mark.parametrize("form", list(CALL_FORMS))
def test_tool_agent_graph(srv: FakeLLM, form: str) -> None:
    """Graph run and nodes are interactions; the tool is an action of the tool node; each
    request (streamed ones too) is one LLM record in the node that made it."""
    srv.script(ADD_CALL, Reply(text="The answer is 5"))
    graph = tool_graph(srv)
    with capture() as cap:
        CALL_FORMS[form](graph, {"messages": [HumanMessage("what is 2+3?")]})
    doc = validate_document(cap.document())
    assert srv.count("/chat/completions") == srv.count() == 2
    assert len(llm_records(doc)) == 2
    assert shape(doc) == [
        ("math_agent", None, []),
        ("model", "math_agent", ["llm:openai.chat"]),
        ("tools", "math_agent", ["tool:add"]),
        ("model", "math_agent", ["llm:openai.chat"]),
    ]
    assert lc_adapter.TRACKER.runs == {}  # every run closed, nothing kept
    (iteration,) = doc["iterations"]
    assert iteration["status"] == "completed"
    top, first, tools, second = iteration["interactions"]
    assert top["status"] == "completed" and top["input_data"]["messages"]
    assert top["output_data"]["messages"][-1]["content"] == "The answer is 5"
    (action,) = tools["actions"]
    assert action["input_data"] == {"a": 2, "b": 3} and action["output_data"] == "5"
    assert action["end_time"] >= action["timestamp"]
    assert first["actions"][0]["llm"]["finish_reasons"] == ["tool_calls"]
    assert second["actions"][0]["llm"]["finish_reasons"] == ["stop"]
    assert doc["error_log"] == []


def test_prebuilt_react_agent(srv: FakeLLM) -> None:
    """LangGraph's prebuilt agent: its name, its nodes, the tool, one record per request."""
    from langgraph.prebuilt import create_react_agent

    srv.script(ADD_CALL, Reply(text="5"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in LangGraph 1.0, still widely used
        agent = create_react_agent(chat_model(srv), [add], name="calculator")
    with capture() as cap:
        agent.invoke({"messages": [HumanMessage("2+3?")]})
    doc = validate_document(cap.document())
    assert [(a, p) for a, p, _ in shape(doc)] == [
        ("calculator", None), ("agent", "calculator"), ("tools", "calculator"),
        ("agent", "calculator"),
    ]
    assert [acts for _, _, acts in shape(doc)][1:] == [
        ["llm:openai.chat"], ["tool:add"], ["llm:openai.chat"]]
    assert len(llm_records(doc)) == srv.count() == 2


class Fanout(TypedDict):
    topic: str
    notes: Annotated[list[str], operator.add]


@MODES
def test_parallel_nodes_keep_their_calls(srv: FakeLLM, async_: bool) -> None:
    """Two nodes of one step (threads in sync graphs, tasks in async ones): each LLM call
    stays in the node that made it."""
    model = chat_model(srv)

    def node(name: str) -> Any:
        def sync(state: Fanout) -> dict[str, Any]:
            reply = model.invoke(f"{name} on {state['topic']}")
            return {"notes": [f"{name}:{reply.content}"]}

        async def asynchronous(state: Fanout) -> dict[str, Any]:
            reply = await model.ainvoke(f"{name} on {state['topic']}")
            return {"notes": [f"{name}:{reply.content}"]}

        return RunnableLambda(sync, afunc=asynchronous)

    graph = StateGraph(Fanout)
    for name in ("writer", "critic"):
        graph.add_node(name, node(name))
        graph.add_edge(START, name)
        graph.add_edge(name, END)
    compiled = graph.compile(name="review")
    with capture() as cap:
        out = run(compiled, {"topic": "owls", "notes": []}, async_)
    assert sorted(out["notes"]) == ["critic:echo: critic on owls", "writer:echo: writer on owls"]
    doc = validate_document(cap.document())
    assert len(llm_records(doc)) == srv.count() == 2
    for ix in interactions(doc)[1:]:
        (call,) = ix["actions"]
        assert call["input_data"] == [{"role": "user", "content": f"{ix['agent_name']} on owls"}]
    assert sorted(a for a, _, _ in shape(doc)) == ["critic", "review", "writer"]


def test_subgraph_nodes_nest(srv: FakeLLM) -> None:
    """A compiled graph used as a node: its own nodes are interactions inside it."""
    model = chat_model(srv)
    inner = StateGraph(MessagesState)
    inner.add_node("draft", lambda s: {"messages": [model.invoke(s["messages"])]})
    inner.add_edge(START, "draft")
    outer = StateGraph(MessagesState)
    outer.add_node("research", inner.compile())
    outer.add_edge(START, "research")
    with capture() as cap:
        outer.compile().invoke({"messages": [HumanMessage("owls")]})
    doc = validate_document(cap.document())
    assert shape(doc) == [
        ("LangGraph", None, []),
        ("research", "LangGraph", []),
        ("draft", "research", ["llm:openai.chat"]),
    ]
    assert srv.count() == 1


# --------------------------------------------------------------------------- chains


@MODES
def test_chain_is_one_interaction(srv: FakeLLM, async_: bool) -> None:
    """A prompt | model | parser chain: one interaction named by ``run_name``; its prompt
    and parser are no interactions of their own."""
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("user", "{q}")])
    chain = (prompt | chat_model(srv) | StrOutputParser()).with_config(run_name="summarizer")
    with capture() as cap:
        out = asyncio.run(chain.ainvoke({"q": "owls?"})) if async_ else chain.invoke(
            {"q": "owls?"})
    assert out == "echo: owls?"
    doc = validate_document(cap.document())
    (ix,) = interactions(doc)
    assert ix["agent_name"] == "summarizer" and ix["input_data"] == {"q": "owls?"}
    assert ix["output_data"] == "echo: owls?"
    (call,) = ix["actions"]
    assert call["llm"]["provider"] == "openai" and srv.count() == 1


def test_bare_chat_model_is_the_sdk_record(srv: FakeLLM) -> None:
    """A chat model invoked on its own opens no chain run: the openai record stands alone."""
    with capture() as cap:
        reply = chat_model(srv).invoke("hello")
    assert isinstance(reply, AIMessage)
    doc = validate_document(cap.document())
    (record,) = llm_records(doc)
    assert record["agent_name"] == "openai:gpt-4o-mini" and len(interactions(doc)) == 1


def test_inside_a_user_agent(srv: FakeLLM) -> None:
    """Under ``@agentlog.agent`` the chain nests in the user's interaction and iteration."""
    chain = (ChatPromptTemplate.from_messages([("user", "{q}")]) | chat_model(srv)).with_config(
        run_name="inner")

    @agentlog.agent("planner")
    def plan(q: str) -> str:
        return str(chain.invoke({"q": q}).content)

    with capture() as cap:
        assert plan("owls") == "echo: owls"
    doc = validate_document(cap.document())
    assert shape(doc) == [("planner", None, []), ("inner", "planner", ["llm:openai.chat"])]
    assert len(doc["iterations"]) == 1


# --------------------------------------------------------------------------- errors


def test_tool_error_is_the_action_error(srv: FakeLLM) -> None:
    """A failing tool: the action carries the error; ToolNode turns it into a message and
    the graph goes on."""
    srv.script(Reply(tool_calls=[("explode", '{"reason": "x"}')], tool_call_ids=["c_x"]),
               Reply(text="sorry"))
    model = chat_model(srv).bind_tools([explode])
    graph = StateGraph(MessagesState)
    graph.add_node("model", lambda s: {"messages": [model.invoke(s["messages"])]})
    graph.add_node("tools", ToolNode([explode], handle_tool_errors=True))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    with capture() as cap:
        out = graph.compile().invoke({"messages": [HumanMessage("go")]})
    assert out["messages"][-1].content == "sorry"
    doc = validate_document(cap.document())
    tools = next(ix for ix in interactions(doc) if ix["agent_name"] == "tools")
    (action,) = tools["actions"]
    assert action["action_name"] == "tool:explode"
    assert action["error"] == {"type": "ValueError", "error": "tool failed: x"}
    assert [e["type"] for e in doc["error_log"]] == ["ValueError"]
    assert len(llm_records(doc)) == srv.count() == 2


@MODES
def test_node_error_propagates_unchanged(srv: FakeLLM, async_: bool) -> None:
    """A node that raises: the very exception reaches the caller, the node and graph
    interactions fail, and error_log holds it once."""
    boom = RuntimeError("node broke")

    def fail(state: MessagesState) -> dict[str, Any]:
        raise boom

    graph = StateGraph(MessagesState)
    graph.add_node("fail", fail)
    graph.add_edge(START, "fail")
    with capture() as cap, pytest.raises(RuntimeError) as caught:
        run(graph.compile(name="fragile"), {"messages": [HumanMessage("x")]}, async_)
    assert caught.value is boom
    doc = validate_document(cap.document())
    assert [(ix["agent_name"], ix["status"]) for ix in interactions(doc)] == [
        ("fragile", "failed"), ("fail", "failed")]
    assert [e["error"] for e in doc["error_log"]] == ["node broke"]
    assert doc["iterations"][0]["status"] == "failed"


def test_interrupt_is_not_a_failure(srv: FakeLLM) -> None:
    """``interrupt()`` pauses a graph (control flow, not an error): nothing in error_log."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import interrupt

    def ask(state: MessagesState) -> dict[str, Any]:
        answer = interrupt("approve?")
        return {"messages": [AIMessage(str(answer))]}

    graph = StateGraph(MessagesState)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    app = graph.compile(checkpointer=InMemorySaver())
    with capture() as cap:
        out = app.invoke({"messages": [HumanMessage("x")]}, {"configurable": {"thread_id": "1"}})
    assert "__interrupt__" in out
    doc = validate_document(cap.document())
    assert doc["error_log"] == []
    assert all(ix["status"] == "completed" for ix in interactions(doc))


# --------------------------------------------------------------------------- the hooks


def test_handler_joins_every_manager_without_user_code() -> None:
    """A callback manager configured anywhere carries the handler, once."""
    manager = CallbackManager.configure()
    ours = [h for h in manager.handlers if type(h).__name__ == "AgentlogCallbackHandler"]
    assert len(ours) == 1 and ours[0].run_inline is True
    assert manager.inheritable_handlers.count(ours[0]) == 1


def test_uninstall_and_install_mirror(srv: FakeLLM) -> None:
    """Uninstall: no handler in new managers, original function back, nothing recorded.
    Install again: all back."""
    import langchain_core
    from langchain_core.runnables import config as lc_config

    patched = lc_config._set_config_context
    lc_adapter.uninstall()
    try:
        assert lc_config._set_config_context is not patched
        assert not any(type(h).__name__ == "AgentlogCallbackHandler"
                       for h in CallbackManager.configure().handlers)
        with capture() as cap:
            tool_graph(srv).invoke({"messages": [HumanMessage("hi")]})
        assert [ix["agent_name"] for ix in interactions(validate_document(cap.document()))] == [
            "openai:gpt-4o-mini"]
    finally:
        lc_adapter.install(langchain_core)
    assert getattr(lc_config._set_config_context, "__agentlog_patched__", False)
    test_handler_joins_every_manager_without_user_code()


def test_verbosity_zero_records_nothing(srv: FakeLLM, verbosity: Any) -> None:
    """At verbosity 0 the graph runs as usual and nothing is recorded or kept."""
    srv.script(ADD_CALL, Reply(text="5"))
    verbosity(0)
    with capture() as cap:
        out = tool_graph(srv).invoke({"messages": [HumanMessage("2+3?")]})
    assert out["messages"][-1].content == "5" and list(cap) == []
    assert lc_adapter.TRACKER.runs == {}


@pytest.mark.allows_internal_errors
def test_fault_in_handler_never_reaches_the_host(srv: FakeLLM,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in our bookkeeping (injected) is swallowed: same result, error in error_log,
    and the LLM calls are still recorded by the SDK adapter."""
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(lc_adapter.api, "_open_interaction", broken)
    monkeypatch.setattr(lc_adapter.TRACKER, "scope_for", broken)
    srv.script(ADD_CALL, Reply(text="5"))
    with capture() as cap:
        out = tool_graph(srv).invoke({"messages": [HumanMessage("2+3?")]})
    assert out["messages"][-1].content == "5"
    doc = validate_document(cap.document())
    assert len(llm_records(doc)) == srv.count() == 2
    assert any("injected" in e["error"] for e in doc["error_log"])
    monkeypatch.undo()
    lc_adapter.TRACKER.runs.clear()
    lc_adapter.G_CALLBACK.failures = lc_adapter.G_SCOPE.failures = 0


# --------------------------------------------------------------------------- import order


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
{first}
{second}
from fake_llm import FakeLLM, Reply, OPENAI_KEY
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import MessagesState, START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

@tool
def add(a: int, b: int) -> int:
    \"\"\"Add two numbers.\"\"\"
    return a + b

with FakeLLM() as srv:
    srv.script(Reply(tool_calls=[("add", '{{"a": 2, "b": 3}}')]), Reply(text="5"))
    model = ChatOpenAI(model="gpt-4o-mini", base_url=srv.openai_base_url, api_key=OPENAI_KEY,
                       max_retries=0).bind_tools([add])
    g = StateGraph(MessagesState)
    g.add_node("model", lambda s: {{"messages": [model.invoke(s["messages"])]}})
    g.add_node("tools", ToolNode([add]))
    g.add_edge(START, "model")
    g.add_conditional_edges("model", tools_condition)
    g.add_edge("tools", "model")
    out = g.compile(name="calc").invoke({{"messages": [HumanMessage("2+3?")]}})
    print(out["messages"][-1].content)
    print("requests", srv.count())
"""


@pytest.mark.parametrize("agentlog_first", [True, False], ids=["agentlog-first", "sdk-first"])
def test_import_order(run: Any, agentlog_first: bool) -> None:
    """Either import order gives the same document structure."""
    sdk = "import langgraph.graph, langchain_openai, langchain_core.callbacks.manager"
    first, second = ("import agentlog", sdk) if agentlog_first else (sdk, "import agentlog")
    result = run(SCRIPT.format(tests=str(REPO / "tests"), first=first, second=second))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["5", "requests 2"]
    assert result.host_stderr() == ""
    doc = result.doc()
    assert shape(doc) == [("calc", None, []), ("model", "calc", ["llm:openai.chat"]),
                          ("tools", "calc", ["tool:add"]), ("model", "calc", ["llm:openai.chat"])]
    assert len(llm_records(doc)) == 2
