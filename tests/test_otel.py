"""OpenTelemetry export: the mapping, live export, ``agentlog export otlp`` (fast tests).

The backend here is a small OTLP/HTTP receiver on loopback (``otlp_receiver.py``) that
decodes what the real exporter sends, or the SDK's ``InMemorySpanExporter``; the tests
against a real backend (Arize Phoenix) are in ``test_otel_phoenix.py``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the agentlog[otel] extra is not installed")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentlog import _read, _settings
from agentlog._otel import replay, sdk
from agentlog._otel.mapping import describe
from fake_llm import OPENAI_KEY, FakeLLM
from helpers import Result, run_script, script_env
from otlp_receiver import OTLPReceiver, Span

_ERROR = 2  # OTLP Status.STATUS_CODE_ERROR
_CLIENT = 3  # OTLP Span.SPAN_KIND_CLIENT


@pytest.fixture
def srv() -> Any:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def rx() -> Any:
    with OTLPReceiver() as receiver:
        yield receiver


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# A small agent on the real openai SDK: a manual iteration with a planner (an LLM call,
# a tool, a nested critic interaction with a streamed call), then a bare embeddings call
# (its own automatic iteration), and optionally a forked child making one call.
AGENT = """
import os, sys
import agentlog
import openai

client = openai.OpenAI(api_key=os.environ["KEY"], base_url=os.environ["BASE"], max_retries=0)

@agentlog.tool
def lookup(q):
    return "Paris is the capital of France."

@agentlog.agent("planner")
def plan(q):
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": q}], temperature=0.2)
    lookup(q)
    with agentlog.interaction("critic", q) as ix:
        s = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "check it"}],
            stream=True, stream_options={"include_usage": True})
        ix.output = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
    return r.choices[0].message.content

with agentlog.iteration():
    print(plan("What is the capital of France?"))
client.embeddings.create(model="text-embedding-3-small", input="hello")
if os.environ.get("FORK"):
    pid = os.fork()
    if pid == 0:
        with agentlog.iteration():
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "child"}])
        sys.exit(0)
    os.waitpid(pid, 0)
print("done")
"""
PARENT_SPANS = 9
"""run, iteration 1, planner, its chat, lookup, critic, its chat, iteration 2, embeddings."""


def run_agent(tmp_path: Path, srv: FakeLLM, **env: str) -> Result:
    base = script_env(tmp_path / "logs", KEY=OPENAI_KEY, BASE=srv.openai_base_url, **env)
    result = run_script(tmp_path, AGENT, env=base)
    assert result.returncode == 0, result.stderr
    return result


def by_name(spans: list[Span]) -> dict[str, list[Span]]:
    out: dict[str, list[Span]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def one(spans: list[Span], name: str, parent: Span | None = None) -> Span:
    found = [s for s in spans if s.name == name
             and (parent is None or s.parent_id == parent.span_id)]
    assert len(found) == 1, (name, [(s.name, s.parent_id) for s in spans])
    return found[0]


def assert_times(span: Span, start: Any, end: Any) -> None:
    """The span carries the document's recorded times (which keep microseconds)."""
    assert abs(span.start_ns - replay.ns(start)) < 1_000, (span.name, span.start_ns, start)
    assert abs(span.end_ns - replay.ns(end)) < 1_000, (span.name, span.end_ns, end)


def check_agent_trace(spans: list[Span], doc: dict[str, Any], live: bool) -> None:
    """The parent run's spans: names, parents, attributes and times against ``doc``."""
    meta = doc["metadata"]
    root = one(spans, "invoke_workflow host")
    assert root.attributes["agentlog.run_id"] == meta["run_id"]
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["agentlog.final_status"] == "completed"
    assert root.span_id == f"{sdk.span_id_for(meta['run_id']):016x}"
    assert root.trace_id == f"{sdk.trace_id_for(meta['run_id']):032x}"
    assert {s.trace_id for s in spans} == {root.trace_id}
    assert abs(root.start_ns - replay.ns(meta["start_time"])) < 1_000
    it1_doc, it2_doc = doc["iterations"]
    it1 = one(spans, "iteration 1", root)
    it2 = one(spans, "iteration 2", root)
    assert_times(it1, it1_doc["start_time"], it1_doc["end_time"])
    assert_times(it2, it2_doc["start_time"], it2_doc["end_time"])
    assert it2.attributes["agentlog.iteration.auto"] is True

    planner_doc, critic_doc = it1_doc["interactions"]
    planner = one(spans, "invoke_agent planner", it1)
    assert planner.attributes["gen_ai.agent.name"] == "planner"
    assert planner.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert_times(planner, planner_doc["start_time"], planner_doc["end_time"])
    critic = one(spans, "invoke_agent critic", planner)
    assert_times(critic, critic_doc["start_time"], critic_doc["end_time"])

    llm_doc = next(a for a in planner_doc["actions"] if "llm" in a)
    chat = one(spans, "chat gpt-4o-mini", planner)
    assert chat.kind == _CLIENT
    assert_times(chat, llm_doc["timestamp"], llm_doc["end_time"])
    llm = llm_doc["llm"]
    a = chat.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == llm["response_model"]
    assert a["gen_ai.response.id"] == llm["response_id"]
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.usage.input_tokens"] == llm["usage"]["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == llm["usage"]["output_tokens"]
    assert a["gen_ai.response.finish_reasons"] == llm["finish_reasons"]
    assert a["agentlog.cost_usd"] == pytest.approx(llm["cost_usd"])
    assert a["server.address"] == "127.0.0.1"
    messages = json.loads(a["gen_ai.input.messages"])
    assert messages == [{"role": "user", "parts": [
        {"type": "text", "content": "What is the capital of France?"}]}]
    out = json.loads(a["gen_ai.output.messages"])
    assert out[0]["role"] == "assistant" and out[0]["finish_reason"] == "stop"
    assert out[0]["parts"][0]["content"] == llm_doc["output_data"]["content"]

    tool_doc = next(a for a in planner_doc["actions"] if a["action_name"] == "tool:lookup")
    tool = one(spans, "execute_tool lookup", planner)
    assert tool.attributes["gen_ai.tool.name"] == "lookup"
    assert tool.attributes["gen_ai.tool.call.result"] == "Paris is the capital of France."
    assert_times(tool, tool_doc["timestamp"], tool_doc["end_time"])

    stream_doc = critic_doc["actions"][0]
    streamed = one(spans, "chat gpt-4o-mini", critic)
    assert streamed.attributes["gen_ai.request.stream"] is True
    ttft = streamed.attributes["gen_ai.response.time_to_first_chunk"]
    assert ttft == pytest.approx(stream_doc["llm"]["ttft_ms"] / 1e3)
    assert 0 < ttft * 1e9 <= streamed.end_ns - streamed.start_ns

    emb_doc = it2_doc["interactions"][0]
    emb = one(spans, "embeddings text-embedding-3-small", it2)
    assert emb.attributes["gen_ai.operation.name"] == "embeddings"
    assert "gen_ai.output.messages" not in emb.attributes
    assert_times(emb, emb_doc["start_time"], emb_doc["end_time"])
    assert len([s for s in spans if s.trace_id == root.trace_id]) >= PARENT_SPANS


# -- the mapping ---------------------------------------------------------------------------------
LLM_NODE: dict[str, Any] = {
    "action_name": "llm:anthropic.chat",
    "timestamp": 1_000_000_000,
    "end_time": 3_000_000_000,
    "input_data": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    "output_data": {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm"},
        {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "x"}}]},
    "llm": {
        "provider": "anthropic", "operation": "chat", "request_model": "claude-sonnet-4-5",
        "response_model": "claude-sonnet-4-5-20250929", "params": {
            "max_tokens": 200, "top_k": 5, "stop_sequences": ["END"], "temperature": 1},
        "streamed": True, "ttft_ms": 250.0, "finish_reasons": ["tool_use"],
        "usage": {"input_tokens": 30, "output_tokens": 12, "cache_read_input_tokens": 10,
                  "cache_write_input_tokens": 5, "reasoning_output_tokens": None},
        "cost_usd": 0.0012, "server_address": "api.anthropic.com", "incomplete": False,
    },
}


def test_an_llm_call_maps_to_an_inference_span_of_the_genai_conventions() -> None:
    """Name ``{operation} {model}``, kind client, provider, models, usage by kind (None
    left out), finish reasons, time to first chunk in seconds, request params, cost."""
    spec = describe("action", LLM_NODE, content=True)
    assert spec.name == "chat claude-sonnet-4-5"
    assert spec.client
    assert (spec.start_ns, spec.end_ns) == (1_000_000_000, 3_000_000_000)
    a = spec.attributes
    assert {k: v for k, v in a.items() if "messages" not in k} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.request.stream": True,
        "gen_ai.response.finish_reasons": ["tool_use"],
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 12,
        "gen_ai.usage.cache_read.input_tokens": 10,
        "gen_ai.usage.cache_creation.input_tokens": 5,
        "gen_ai.response.time_to_first_chunk": 0.25,
        "agentlog.cost_usd": 0.0012,
        "server.address": "api.anthropic.com",
        "gen_ai.request.max_tokens": 200,
        "gen_ai.request.top_k": 5,
        "gen_ai.request.temperature": 1.0,
        "gen_ai.request.stop_sequences": ["END"],
    }
    assert json.loads(str(a["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    assert json.loads(str(a["gen_ai.output.messages"])) == [{
        "role": "assistant", "finish_reason": "tool_use", "parts": [
            {"type": "reasoning", "content": "hmm"},
            {"type": "tool_call", "id": "toolu_1", "name": "search", "arguments": {"q": "x"}},
        ]}]
    assert spec.error_type is None


def test_content_goes_out_only_when_capture_is_on() -> None:
    """Content capture off (or the recorder's not-captured placeholder): no messages,
    no tool arguments or results; everything structural stays."""
    off = describe("action", LLM_NODE, content=False).attributes
    assert not [k for k in off if "messages" in k]
    assert off["gen_ai.usage.input_tokens"] == 30
    placeholder = "<content not captured: AGENTLOG_CAPTURE_CONTENT=0>"
    node = {**LLM_NODE, "input_data": placeholder, "output_data": placeholder}
    assert not [k for k in describe("action", node, content=True).attributes if "messages" in k]
    tool = {"action_name": "tool:search", "timestamp": 1, "input_data": {"q": "x"},
            "output_data": "found"}
    assert describe("action", tool, content=True).attributes["gen_ai.tool.call.arguments"] \
        == '{"q":"x"}'
    assert "gen_ai.tool.call.arguments" not in describe("action", tool, False).attributes


def test_scopes_map_to_workflow_iteration_agent_and_tool_spans() -> None:
    """Run, iteration, interaction and tool: names, operations, and failures as errors
    (``error.type`` is the exception type, or the status for a crashed run)."""
    run = describe("run", {"workflow_name": "research", "run_id": "R1", "start_time": 5,
                           "end_time": 9, "final_status": "crashed"}, True)
    assert run.name == "invoke_workflow research"
    assert run.attributes["gen_ai.workflow.name"] == "research"
    assert run.error_type == "crashed"
    it = describe("iteration", {"iteration_number": 3, "start_time": 5, "end_time": None,
                                "status": "completed"}, True)
    assert (it.name, it.end_ns, it.error_type) == ("iteration 3", None, None)
    ix = describe("interaction", {
        "agent_name": "planner", "start_time": 5, "end_time": 7, "status": "failed",
        "input_data": "question", "error": {"type": "ValueError", "error": "bad"}}, True)
    assert ix.name == "invoke_agent planner"
    assert ix.attributes["gen_ai.agent.name"] == "planner"
    assert (ix.error_type, ix.error_message) == ("ValueError", "bad")
    assert json.loads(str(ix.attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "question"}]}]
    tool = describe("action", {"action_name": "tool:search", "timestamp": 6}, True)
    assert tool.name == "execute_tool search"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    other = describe("action", {"action_name": "rerank", "timestamp": 6}, True)
    assert other.name == "rerank" and "gen_ai.operation.name" not in other.attributes
    bare = describe("interaction", {**LLM_NODE, "agent_name": "anthropic:claude-sonnet-4-5",
                                    "start_time": 1}, True)
    assert bare.name == "chat claude-sonnet-4-5"  # a bare call: the call is the span
    assert "gen_ai.agent.name" not in bare.attributes


def test_provider_names_follow_the_conventions_well_known_values() -> None:
    """agentlog's provider names become ``gen_ai.provider.name`` values."""
    def provider(name: str) -> Any:
        node = {**LLM_NODE, "llm": {**LLM_NODE["llm"], "provider": name}}
        return describe("action", node, False).attributes["gen_ai.provider.name"]

    assert provider("mistral") == "mistral_ai"
    assert provider("aws-bedrock") == "aws.bedrock"
    assert provider("azure") == "azure.ai.openai"
    assert provider("groq") == "groq"


# -- switching it on -------------------------------------------------------------------------------
def test_settings_turn_live_export_on_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """``AGENTLOG_OTLP_ENDPOINT``, or the standard endpoint with ``AGENTLOG_EXPORT=otlp``;
    the standard endpoint alone (another tool's) does not."""
    for name in ("AGENTLOG_OTLP_ENDPOINT", "AGENTLOG_EXPORT", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert _settings.read().otlp is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert _settings.read().otlp is None
    monkeypatch.setenv("AGENTLOG_EXPORT", "otlp")
    assert _settings.read().otlp == ""
    monkeypatch.setenv("AGENTLOG_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert _settings.read().otlp == "http://127.0.0.1:4318"


IMPORTS = "import sys, agentlog; print(sorted({m.split('.')[0] for m in sys.modules} & " \
    "{'opentelemetry', 'requests', 'google'}))"


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_import_agentlog_loads_opentelemetry_only_when_export_is_on(
    tmp_path: Path, on: bool
) -> None:
    """The import-time budget: with export off, no OpenTelemetry module is imported."""
    env = script_env(tmp_path / "logs")
    if on:
        env["AGENTLOG_OTLP_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    out = subprocess.run([sys.executable, "-c", IMPORTS], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert ("opentelemetry" in out) is on, out


# -- live export -------------------------------------------------------------------------------
def test_live_export_sends_the_run_as_it_goes(tmp_path: Path, srv: FakeLLM, rx: Any) -> None:
    """Live export to a loopback OTLP receiver: the spans' names, parents, attributes and
    times match the document, which is still written and counts what was exported."""
    result = run_agent(tmp_path, srv, AGENTLOG_OTLP_ENDPOINT=rx.endpoint)
    doc = result.doc()
    spans = rx.wait_for(PARENT_SPANS)
    check_agent_trace(spans, doc, live=True)
    assert len(spans) == PARENT_SPANS
    assert doc["metadata"]["export"]["otlp"] == {
        "endpoint": rx.endpoint + "/v1/traces", "tracer_provider": "agentlog",
        "spans": PARENT_SPANS, "exported": PARENT_SPANS, "failed": 0, "failures": 0,
        "unsent": 0}
    assert spans[0].resource["service.name"] == "host"


def test_live_and_after_the_fact_export_say_the_same(
    tmp_path: Path, srv: FakeLLM, rx: Any
) -> None:
    """One mapping: the live spans and those ``agentlog export`` sends for the same
    document have the same names, parents, times and attributes (the root span adds the
    run's total cost, known only once the document is folded)."""
    result = run_agent(tmp_path, srv, AGENTLOG_OTLP_ENDPOINT=rx.endpoint)
    live = rx.wait_for(PARENT_SPANS)
    got = _read.read(next(result.logs.glob("*.json")))
    reads, root = replay.family(got)
    with OTLPReceiver() as rx2:
        sent = replay.send(reads, root, rx2.endpoint, True, 10)
        after = rx2.wait_for(sent.spans)
    assert sent.exported == sent.spans == PARENT_SPANS
    check_agent_trace(after, got.doc, live=False)

    def shape(spans: list[Span]) -> list[tuple[Any, ...]]:
        names = {s.span_id: s.name for s in spans}
        return sorted(
            (s.name, names.get(s.parent_id or ""), s.start_ns // 1000, s.end_ns // 1000,
             sorted((k, json.dumps(v)) for k, v in s.attributes.items()
                    if k != "agentlog.cost_usd" or s.parent_id))
            for s in spans)

    live_shape, after_shape = shape(live), shape(after)
    # The root's end: live ends it when the run ends, the document one instant later.
    assert [x[:3] + x[4:] for x in live_shape] == [x[:3] + x[4:] for x in after_shape]


def test_forked_children_join_their_parents_trace(
    tmp_path: Path, srv: FakeLLM, rx: Any
) -> None:
    """A forked child's run (``parent_run_id``) is exported into its parent's trace,
    under the parent's root span; live and after the fact alike."""
    result = run_agent(tmp_path, srv, AGENTLOG_OTLP_ENDPOINT=rx.endpoint, FORK="1")
    docs = result.docs()
    parent = next(d for d in docs if d["metadata"]["parent_run_id"] is None)
    child = next(d for d in docs if d["metadata"]["parent_run_id"] is not None)
    assert child["metadata"]["parent_run_id"] == parent["metadata"]["run_id"]
    spans = rx.wait_for(PARENT_SPANS + 3)
    time.sleep(0.5)  # a duplicate would come late: let it
    spans = rx.wait_for(PARENT_SPANS + 3)
    assert len(spans) == len({s.span_id for s in spans}) == PARENT_SPANS + 3  # none twice
    roots = by_name(spans)["invoke_workflow host"]
    assert len(roots) == 2
    proot = next(s for s in roots if s.parent_id is None)
    croot = next(s for s in roots if s.parent_id is not None)
    assert croot.parent_id == proot.span_id
    assert croot.attributes["agentlog.parent_run_id"] == parent["metadata"]["run_id"]
    assert {s.trace_id for s in spans} == {proot.trace_id}
    assert child["metadata"]["export"]["otlp"]["exported"] == 3

    with OTLPReceiver() as rx2:
        got = _read.read(next(p for p in result.logs.glob("*.json")
                              if child["metadata"]["run_id"][-8:] in p.name))
        reads, root = replay.family(got)  # asked for the child: the whole family goes
        sent = replay.send(reads, root, rx2.endpoint, True, 10)
        after = rx2.wait_for(sent.spans)
    assert sent.runs == [parent["metadata"]["run_id"], child["metadata"]["run_id"]]
    assert {s.trace_id for s in after} == {proot.trace_id}
    assert {(s.span_id, s.parent_id) for s in after if s.name.startswith("invoke_workflow")} \
        == {(proot.span_id, None), (croot.span_id, proot.span_id)}


def test_content_capture_off_keeps_content_out_of_live_spans(
    tmp_path: Path, srv: FakeLLM, rx: Any
) -> None:
    """``AGENTLOG_CAPTURE_CONTENT=0``: the spans carry no prompt, output or tool text."""
    run_agent(tmp_path, srv, AGENTLOG_OTLP_ENDPOINT=rx.endpoint, AGENTLOG_CAPTURE_CONTENT="0")
    spans = rx.wait_for(PARENT_SPANS)
    assert len(spans) == PARENT_SPANS
    keys = {k for s in spans for k in s.attributes}
    assert not {k for k in keys if "messages" in k or "tool.call" in k}
    assert "gen_ai.usage.input_tokens" in keys


def test_a_failed_run_is_an_error_span_naming_its_exception(tmp_path: Path, rx: Any) -> None:
    """An uncaught exception ends the run: the root span's status is ERROR and its
    ``error.type`` is the exception's type, live and after the fact; the host's
    traceback and exit status are its own."""
    source = """
    import agentlog
    with agentlog.interaction("planner", "q"):
        pass
    raise KeyError("missing")
    """
    env = script_env(tmp_path / "logs", AGENTLOG_OTLP_ENDPOINT=rx.endpoint)
    result = run_script(tmp_path, source, env=env)
    assert result.returncode == 1
    assert "KeyError: 'missing'" in result.host_stderr()
    doc = result.doc()
    assert doc["final_status"] == "failed"
    for spans in (rx.wait_for(3), None):
        if spans is None:
            with OTLPReceiver() as rx2:
                got = _read.read(next(result.logs.glob("*.json")))
                replay.send([got], doc["metadata"]["run_id"], rx2.endpoint, True, 10)
                spans = rx2.wait_for(3)
        root = one(spans, "invoke_workflow host")
        assert root.status_code == _ERROR
        assert root.attributes["error.type"] == "KeyError"
        assert root.attributes["agentlog.final_status"] == "failed"
        assert one(spans, "invoke_agent planner").status_code != _ERROR


USER_PROVIDER = """
import json, os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
if os.environ["ORDER"] == "before":
    trace.set_tracer_provider(provider)
import agentlog
if os.environ["ORDER"] == "after":
    trace.set_tracer_provider(provider)

with agentlog.interaction("planner", "q") as ix:
    agentlog.log_interaction("helper", "a", "b")
    ix.output = "done"
agentlog.finalize_workflow()
print(json.dumps({"same": trace.get_tracer_provider() is provider,
                  "spans": [[s.name, s.parent.span_id if s.parent else None,
                             s.context.span_id] for s in memory.get_finished_spans()]}))
"""


@pytest.mark.parametrize("order", ["before", "after"])
def test_an_applications_own_tracer_provider_is_used_never_replaced(
    tmp_path: Path, order: str
) -> None:
    """The application set a global TracerProvider (before or after ``import agentlog``):
    agentlog's spans go through it, it stays the global one, and no OTLP exporter of
    ours is made (the endpoint is a closed port: no failures are counted)."""
    env = script_env(tmp_path / "logs", ORDER=order,
                     AGENTLOG_OTLP_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    result = run_script(tmp_path, USER_PROVIDER, env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["same"] is True
    names = {name: (parent, sid) for name, parent, sid in out["spans"]}
    assert set(names) == {"invoke_workflow host", "iteration 1", "invoke_agent planner",
                          "invoke_agent helper"}
    assert names["invoke_agent helper"][0] == names["invoke_agent planner"][1]
    assert names["invoke_agent planner"][0] == names["iteration 1"][1]
    assert result.doc()["metadata"]["export"]["otlp"] == {
        "tracer_provider": "application", "spans": 4}


# -- the endpoint is down ----------------------------------------------------------------------
def test_an_unreachable_endpoint_leaves_the_host_unaffected(tmp_path: Path, srv: FakeLLM) -> None:
    """Collector down (a closed port): same exit code, stdout and stderr (agentlog's own
    line aside) as without export, no OpenTelemetry warning on stderr, the failures
    counted in the document, which is complete and valid; the exit waits a bounded time."""
    (tmp_path / "off").mkdir()
    (tmp_path / "down").mkdir()
    off = run_agent(tmp_path / "off", srv)
    started = time.monotonic()
    down = run_agent(tmp_path / "down", srv, OTEL_EXPORTER_OTLP_TIMEOUT="1",
                     AGENTLOG_OTLP_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    elapsed = time.monotonic() - started
    assert (down.returncode, down.stdout, down.host_stderr()) == \
        (off.returncode, off.stdout, off.host_stderr())
    assert "opentelemetry" not in down.stderr.lower() and "Traceback" not in down.stderr
    doc_off, doc = off.doc(), down.doc()
    export = doc["metadata"]["export"]["otlp"]
    assert export["spans"] == PARENT_SPANS
    assert export["exported"] == 0
    assert export["failed"] + export["unsent"] == PARENT_SPANS
    assert export["failed"] == PARENT_SPANS and export["failures"] >= 1
    assert doc["final_status"] == "completed"
    assert doc["metadata"]["totals"] == doc_off["metadata"]["totals"]
    assert [len(it["interactions"]) for it in doc["iterations"]] == [2, 1]
    assert elapsed < 20


def test_a_collector_that_never_answers_delays_the_exit_by_a_bounded_time(
    tmp_path: Path, srv: FakeLLM
) -> None:
    """A collector that accepts the connection and never answers: the run's end waits
    ``AGENTLOG_SHUTDOWN_TIMEOUT`` for the flush, then writes the document with what was
    not sent counted, and the process exits."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        port = hole.getsockname()[1]
        started = time.monotonic()
        result = run_agent(tmp_path, srv, AGENTLOG_SHUTDOWN_TIMEOUT="1",
                           AGENTLOG_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
        elapsed = time.monotonic() - started
    export = result.doc()["metadata"]["export"]["otlp"]
    assert export["exported"] == 0 and export["unsent"] == PARENT_SPANS
    assert elapsed < 15


# -- agentlog export -----------------------------------------------------------------------------
def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentlog", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_export_command_sends_a_finished_run(tmp_path: Path, srv: FakeLLM, rx: Any) -> None:
    """``agentlog export otlp last --endpoint URL``: every span sent, the trace id said."""
    result = run_agent(tmp_path, srv)
    doc = result.doc()
    env = script_env(result.logs)
    out = cli("export", "otlp", "last", "--endpoint", rx.endpoint, env=env)
    assert out.returncode == 0, out.stderr
    trace_id = f"{sdk.trace_id_for(doc['metadata']['run_id']):032x}"
    assert f"trace {trace_id}: {PARENT_SPANS} spans of {PARENT_SPANS} sent" in out.stdout
    check_agent_trace(rx.wait_for(PARENT_SPANS), doc, live=False)

    no_content = cli("export", "otlp", doc["metadata"]["run_id"], "--no-content",
                     "--endpoint", rx.endpoint + "/v1/traces", env=env)
    assert no_content.returncode == 0, no_content.stderr
    second = rx.wait_for(2 * PARENT_SPANS)[PARENT_SPANS:]
    assert not [k for s in second for k in s.attributes if "messages" in k]


def test_export_command_says_what_is_wrong(tmp_path: Path, srv: FakeLLM) -> None:
    """No endpoint, or a collector that is down: one line on stderr, exit status 1."""
    result = run_agent(tmp_path, srv)
    env = {k: v for k, v in script_env(result.logs).items() if not k.startswith("OTEL_")}
    missing = cli("export", "otlp", "last", env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("agentlog: no endpoint")
    down = cli("export", "otlp", "last", "--timeout", "1", "--endpoint",
               f"http://127.0.0.1:{closed_port()}", env=env)
    assert down.returncode == 1
    assert f"0 spans of {PARENT_SPANS} sent" in down.stdout
    assert "Traceback" not in down.stderr


# -- in memory: the walk of a document -------------------------------------------------------------
def test_a_crashed_runs_open_scopes_end_at_the_runs_end(tmp_path: Path) -> None:
    """A recovered run's document has iterations and interactions that never ended: their
    spans end with the run and say so (status ERROR, ``incomplete``); the root says
    ``crashed``."""
    source = """
    import os, signal, time, agentlog
    agentlog.start_workflow("crashy")
    with agentlog.iteration():
        with agentlog.interaction("planner", "q"):
            agentlog.log_interaction("helper", "a", "b")
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGKILL)
    """
    result = run_script(tmp_path, source)
    assert result.returncode == -9
    journal = next(result.logs.glob("*.jsonl"))
    got = _read.read(journal)
    assert got.doc["final_status"] == "crashed"
    memory = InMemorySpanExporter()
    sent = replay.send([got], got.doc["metadata"]["run_id"], None, True, 5, exporter=memory)
    spans = {s.name: s for s in memory.get_finished_spans()}
    assert sent.spans == sent.exported == len(spans) == 4
    root = spans["invoke_workflow crashy"]
    assert root.attributes is not None and root.attributes["error.type"] == "crashed"
    end = root.end_time
    for name in ("iteration 1", "invoke_agent planner"):
        span = spans[name]
        assert span.end_time == end, name
        assert span.status.status_code.name == "ERROR"
        assert span.attributes is not None and span.attributes["agentlog.status"] == "incomplete"
    helper = spans["invoke_agent helper"]
    assert helper.status.status_code.name == "UNSET"
    assert helper.parent is not None
    assert helper.parent.span_id == spans["invoke_agent planner"].context.span_id


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast tests never depend on a collector configured in the environment."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
