"""OpenTelemetry export against a real OTLP backend: Arize Phoenix on loopback.

Its own CI step: ``AGENTLOG_PHOENIX=$(bash .ci/phoenix.sh) python -m pytest -q
tests/test_otel_phoenix.py``; without ``AGENTLOG_PHOENIX`` every test here skips, saying
why. Each test sends to a Phoenix project of its own and reads the spans back through
Phoenix's REST API: names, parent links, attributes and times against the document.
(The endpoint-down test needs no backend: it is in ``test_otel.py``.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the agentlog[otel] extra is not installed")

from agentlog._otel import replay, sdk
from fake_llm import OPENAI_KEY, FakeLLM
from helpers import load_document, run_script, script_env
from otlp_phoenix import Phoenix, phoenix

__all__ = ["phoenix"]  # the fixture, imported to be found

Spans = list[dict[str, Any]]


@pytest.fixture
def srv() -> Any:
    with FakeLLM() as server:
        yield server


def project_env(logs: Path, project: str, **extra: str) -> dict[str, str]:
    env = script_env(logs, **extra)
    env["OTEL_RESOURCE_ATTRIBUTES"] = f"openinference.project.name={project}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    return env


def one(spans: Spans, name: str, parent: dict[str, Any] | None = None) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name
             and (parent is None or s["parent_id"] == parent["context"]["span_id"])]
    assert len(found) == 1, (name, [(s["name"], s["parent_id"]) for s in spans])
    return found[0]


def assert_times(span: dict[str, Any], start: Any, end: Any) -> None:
    """Phoenix keeps microseconds; so does the document."""
    for got, want in ((span["start_time"], start), (span["end_time"], end)):
        got_ns, want_ns = replay.ns(got), replay.ns(want)
        assert got_ns is not None and want_ns is not None
        assert abs(got_ns - want_ns) <= 1_000, (span["name"], got, want)


def assert_llm(span: dict[str, Any], holder: dict[str, Any]) -> None:
    """An LLM call's span says what the document's ``llm`` block says."""
    llm = holder["llm"]
    a = span["attributes"]
    assert span["span_kind"] == "LLM"  # Phoenix read our GenAI attributes as an LLM call
    assert a["gen_ai.operation.name"] == llm["operation"]
    assert a["gen_ai.provider.name"] == llm["provider"]
    assert a["gen_ai.request.model"] == llm["request_model"]
    assert a["gen_ai.response.model"] == llm["response_model"]
    assert a["gen_ai.response.finish_reasons"] == llm["finish_reasons"]
    usage = llm["usage"]
    assert a["gen_ai.usage.input_tokens"] == usage["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    assert a["gen_ai.usage.cache_read.input_tokens"] == usage["cache_read_input_tokens"]
    assert a["agentlog.cost_usd"] == pytest.approx(llm["cost_usd"])
    if llm["streamed"]:
        assert a["gen_ai.response.time_to_first_chunk"] == pytest.approx(llm["ttft_ms"] / 1e3)
    assert "gen_ai.input.messages" in a


def test_the_demo_exported_live_arrives_in_phoenix(phoenix: Phoenix, tmp_path: Path) -> None:
    """``agentlog demo`` with ``AGENTLOG_OTLP_ENDPOINT`` at Phoenix: the workflow, its
    iteration, the planner and writer agents, their calls and the tool, and the bare call
    arrive as one trace with the document's structure, attributes and times."""
    logs = tmp_path / "logs"
    env = project_env(logs, "demo-live", AGENTLOG_OTLP_ENDPOINT=phoenix.url)
    out = subprocess.run([sys.executable, "-m", "agentlog", "demo", "--dir", str(logs)],
                         env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    (path,) = logs.glob("*.json")
    doc = load_document(path)
    meta = doc["metadata"]
    assert meta["export"]["otlp"]["exported"] == meta["export"]["otlp"]["spans"] == 8
    spans = phoenix.wait_for_spans("demo-live", 8)
    assert len(spans) == 8

    root = one(spans, "invoke_workflow agentlog-demo")
    assert root["parent_id"] is None
    assert root["context"]["trace_id"] == f"{sdk.trace_id_for(meta['run_id']):032x}"
    assert {s["context"]["trace_id"] for s in spans} == {root["context"]["trace_id"]}
    assert root["attributes"]["agentlog.run_id"] == meta["run_id"]
    assert root["attributes"]["gen_ai.operation.name"] == "invoke_workflow"
    assert_times(root, meta["start_time"], root["end_time"])
    assert replay.ns(root["end_time"]) <= replay.ns(meta["end_time"])  # type: ignore[operator]

    (it_doc,) = doc["iterations"]
    it = one(spans, "iteration 1", root)
    assert_times(it, it_doc["start_time"], it_doc["end_time"])
    planner_doc, writer_doc, bare_doc = it_doc["interactions"]
    planner = one(spans, "invoke_agent planner", it)
    writer = one(spans, "invoke_agent writer", it)
    for span, ix in ((planner, planner_doc), (writer, writer_doc)):
        assert span["span_kind"] == "AGENT"
        assert span["attributes"]["gen_ai.agent.name"] == ix["agent_name"]
        assert_times(span, ix["start_time"], ix["end_time"])

    plan_call = next(a for a in planner_doc["actions"] if "llm" in a)
    chat = one(spans, "chat gpt-4o-mini", planner)
    assert_llm(chat, plan_call)
    assert_times(chat, plan_call["timestamp"], plan_call["end_time"])
    tool_doc = next(a for a in planner_doc["actions"] if a["action_name"] == "tool:lookup")
    tool = one(spans, "execute_tool lookup", planner)
    assert tool["span_kind"] == "TOOL"
    assert tool["attributes"]["gen_ai.tool.name"] == "lookup"
    assert_times(tool, tool_doc["timestamp"], tool_doc["end_time"])

    (write_call,) = writer_doc["actions"]
    streamed = one(spans, "chat gpt-4o-mini", writer)
    assert streamed["attributes"]["gen_ai.request.stream"] is True
    assert_llm(streamed, write_call)
    assert_times(streamed, write_call["timestamp"], write_call["end_time"])

    bare = one(spans, "chat gpt-4o-mini", it)  # the bare call: its own interaction
    assert_llm(bare, bare_doc)
    assert_times(bare, bare_doc["start_time"], bare_doc["end_time"])


CRASHING = """
import os, signal, sys, time
import agentlog, openai

client = openai.OpenAI(api_key=os.environ["KEY"], base_url=os.environ["BASE"], max_retries=0)

@agentlog.tool
def lookup(q):
    return "Paris"

agentlog.start_workflow("crashy")
pid = os.fork()
if pid == 0:  # a worker process: its run is a child of ours
    with agentlog.iteration():
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "child"}])
    sys.exit(0)
os.waitpid(pid, 0)
with agentlog.iteration():
    with agentlog.interaction("planner", "What is the capital of France?"):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "capital?"}],
            stream=True, stream_options={"include_usage": True}).close()
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "capital?"}])
        lookup("France")
        time.sleep(0.5)  # the journal is flushed within AGENTLOG_FLUSH_INTERVAL
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_recovered_crashed_run_exported_after_the_fact(
    phoenix: Phoenix, tmp_path: Path, srv: FakeLLM
) -> None:
    """A run killed with SIGKILL, recovered by ``agentlog recover``, then sent by
    ``agentlog export otlp``: with the worker process it forked, one trace; the crash and
    the scopes it left open show as errors; the calls carry the recovered document's
    attributes and times."""
    logs = tmp_path / "logs"
    env = project_env(logs, "crashed", KEY=OPENAI_KEY, BASE=srv.openai_base_url)
    result = run_script(tmp_path, CRASHING, env=env)
    assert result.returncode == -9, result.stderr
    recover = subprocess.run([sys.executable, "-m", "agentlog", "recover", "--dir", str(logs)],
                             env=env, capture_output=True, text=True, timeout=60)
    assert recover.returncode == 0, recover.stderr
    docs = [load_document(p) for p in logs.glob("*.json")]
    parent = next(d for d in docs if d["metadata"]["parent_run_id"] is None)
    child = next(d for d in docs if d["metadata"]["parent_run_id"] is not None)
    assert parent["final_status"] == "crashed"
    assert child["metadata"]["parent_run_id"] == parent["metadata"]["run_id"]

    out = subprocess.run(
        [sys.executable, "-m", "agentlog", "export", "otlp", parent["metadata"]["run_id"],
         "--dir", str(logs), "--endpoint", phoenix.url],
        env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == [f"run {parent['metadata']['run_id']}",
                                           f"run {child['metadata']['run_id']}"]
    # parent: run, iteration, planner, 2 calls, tool; child: run, iteration, call
    spans = phoenix.wait_for_spans("crashed", 9)
    assert len(spans) == 9
    trace = f"{sdk.trace_id_for(parent['metadata']['run_id']):032x}"
    assert {s["context"]["trace_id"] for s in spans} == {trace}
    assert f"trace {trace}: 9 spans of 9 sent" in out.stdout

    roots = [s for s in spans if s["name"] == "invoke_workflow crashy"]
    proot = next(s for s in roots if s["parent_id"] is None)
    croot = next(s for s in roots if s["parent_id"] is not None)
    assert croot["parent_id"] == proot["context"]["span_id"]
    assert croot["attributes"]["agentlog.parent_run_id"] == parent["metadata"]["run_id"]
    assert proot["status_code"] == "ERROR"
    assert proot["attributes"]["error.type"] == "crashed"
    assert proot["attributes"]["agentlog.final_status"] == "crashed"
    assert_times(proot, parent["metadata"]["start_time"], parent["metadata"]["end_time"])
    assert croot["status_code"] != "ERROR"

    (it_doc,) = parent["iterations"]
    (ix_doc,) = it_doc["interactions"]
    assert it_doc["end_time"] is None and ix_doc["end_time"] is None
    it = one(spans, "iteration 1", proot)
    planner = one(spans, "invoke_agent planner", it)
    for span in (it, planner):
        assert span["status_code"] == "ERROR"
        assert span["attributes"]["agentlog.status"] == "incomplete"
        assert span["end_time"] == proot["end_time"]  # open scopes end with the run
    assert_times(it, it_doc["start_time"], parent["metadata"]["end_time"])
    calls = [s for s in spans if s["parent_id"] == planner["context"]["span_id"]
             and s["name"] == "chat gpt-4o-mini"]
    llm_docs = sorted((a for a in ix_doc["actions"] if "llm" in a),
                      key=lambda a: str(a["timestamp"]))
    assert len(calls) == len(llm_docs) == 2
    for span, action in zip(sorted(calls, key=lambda s: str(s["start_time"])), llm_docs,
                            strict=True):
        assert_times(span, action["timestamp"], action["end_time"])
        assert span["attributes"]["gen_ai.request.model"] == "gpt-4o-mini"
        if action["llm"]["incomplete"]:  # the stream closed before its end
            assert span["attributes"]["agentlog.incomplete"] is True
        else:
            assert_llm(span, action)
    one(spans, "execute_tool lookup", planner)

    (cit_doc,) = child["iterations"]
    cit = one(spans, "iteration 1", croot)
    assert_times(cit, cit_doc["start_time"], cit_doc["end_time"])
    (cix_doc,) = cit_doc["interactions"]
    assert_llm(one(spans, "chat gpt-4o-mini", cit), cix_doc)
