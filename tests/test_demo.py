"""``agentlog demo``: the real openai SDK against the embedded fake server, one document.

Every run is a fresh interpreter, as a user would start it: the demo is a whole run
(import, recording resumed by the CLI, exit line), which no in-process test can show.
"""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from agentlog import _demo
from helpers import SHARED, documents, load_document, script_env

KEY = _demo.API_KEY


@dataclass
class Demo:
    returncode: int
    stdout: str
    stderr: str
    logs: Path
    """AGENTLOG_DIR of the run."""


def _run_demo(args: list[str], cwd: Path) -> Demo:
    logs = cwd / "logs"
    proc = subprocess.run(
        args, env=script_env(logs), cwd=cwd, capture_output=True, text=True, timeout=60
    )
    return Demo(proc.returncode, proc.stdout, proc.stderr, logs)


def _printed_path(stdout: str) -> Path:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("document: ")]
    assert len(lines) == 1, stdout
    return Path(lines[0].removeprefix("document: "))


def _interactions(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [ix for it in doc["iterations"] for ix in it["interactions"]]


def _llm_records(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        holder["llm"]
        for ix in _interactions(doc)
        for holder in (ix, *ix["actions"])
        if holder.get("llm") is not None
    ]


def _check_completed_run(result: Demo, folder: Path) -> tuple[Path, dict[str, Any]]:
    """What every successful demo shows: its story on stdout, one document, no key."""
    assert result.returncode == 0, result.stderr
    path = _printed_path(result.stdout)
    assert path.is_absolute() and path.is_file()
    assert sorted(folder.glob("*.json")) == [path], "the printed path is the one document"
    assert not list(result.logs.glob("*.jsonl")), "the journal outlived its document"
    # stderr holds agentlog's exit line and nothing else.
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"agentlog: {path} ("), result.stderr
    assert f"writer:  {_demo.FACT}\n" in result.stdout, "the streamed answer, as it arrived"
    assert f"title:   {_demo.TITLE}\n" in result.stdout
    assert "final_status completed" in result.stdout

    doc = load_document(path)
    assert doc["final_status"] == "completed"
    assert doc["metadata"]["workflow_name"] == _demo.WORKFLOW
    assert doc["error_log"] == []
    (iteration,) = doc["iterations"]
    assert iteration["status"] == "completed"
    by_agent = {ix["agent_name"]: ix for ix in _interactions(doc)}
    planner, writer = by_agent["planner"], by_agent["writer"]
    assert planner["input_data"] == _demo.QUESTION
    tools = [a for a in planner["actions"] if a["action_name"] == "tool:lookup"]
    assert len(tools) == 1 and tools[0]["output_data"] == _demo.FACT
    assert writer["output_data"] == _demo.FACT
    assert all(ix["status"] == "completed" for ix in _interactions(doc))
    totals = doc["metadata"]["totals"]
    assert f"{totals['interactions']} interactions" in result.stdout

    for text in (path.read_text(), result.stdout, result.stderr):
        assert KEY not in text
    return path, doc


@pytest.fixture(scope="module")
def module_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Demo, Path]:
    """One ``python -m agentlog demo --dir``, shared: each run costs an SDK import."""
    cwd = tmp_path_factory.mktemp("demo")
    out = cwd / "out"
    result = _run_demo([sys.executable, "-m", "agentlog", "demo", "--dir", str(out)], cwd)
    return result, out


def test_python_m_demo_with_dir(module_demo: tuple[Demo, Path]) -> None:
    """``--dir`` sends the document there; the log folder keeps nothing."""
    result, out = module_demo
    _check_completed_run(result, out)
    assert documents(result.logs) == []


def test_demo_records_every_llm_call(module_demo: tuple[Demo, Path]) -> None:
    """The openai integration sees every chat call the demo makes, the stream included."""
    result, out = module_demo
    _, doc = _check_completed_run(result, out)
    totals = doc["metadata"]["totals"]
    assert totals["llm_calls"] == _demo.CHAT_CALLS
    llms = _llm_records(doc)
    assert len(llms) == _demo.CHAT_CALLS
    assert {llm["response_model"] for llm in llms} == {"gpt-4o-mini-2024-07-18"}
    (streamed,) = [llm for llm in llms if llm["streamed"]]
    assert not streamed["incomplete"]
    assert streamed["usage"]["output_tokens"] == len(_demo.FACT.split())
    assert totals["input_tokens"] > 0 and totals["cache_read_input_tokens"] > 0
    assert any(
        call["name"] == "lookup" for llm in llms for call in llm.get("tool_calls") or []
    )
    assert f"{_demo.CHAT_CALLS} LLM calls" in result.stdout


def test_console_script_demo(tmp_path: Path) -> None:
    """``agentlog demo``, the installed command: the document goes to AGENTLOG_DIR."""
    script = Path(sysconfig.get_path("scripts")) / "agentlog"
    assert script.is_file(), f"the console script is not installed at {script}"
    result = _run_demo([str(script), "demo"], tmp_path)
    path, _ = _check_completed_run(result, result.logs)
    assert path.parent == result.logs


_HIDE_OPENAI = """
import sys

class NoOpenAI:
    def find_spec(self, name, path=None, target=None):
        if name == "openai" or name.startswith("openai."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoOpenAI())
from agentlog import cli
sys.exit(cli.main(["demo", "--dir", sys.argv[1]]))
"""


def test_demo_without_openai(tmp_path: Path) -> None:
    """No SDK: one line saying what to install, exit 1, and no document at all."""
    out = tmp_path / "out"
    result = _run_demo([sys.executable, "-c", _HIDE_OPENAI, str(out)], tmp_path)
    assert result.returncode == 1
    assert result.stderr == _demo.INSTALL_HINT + "\n"
    assert 'pip install "agentlog[demo]"' in result.stderr
    assert result.stdout == ""
    assert not out.exists()
    assert not result.logs.exists() or documents(result.logs) == []


_FAIL_MIDWAY = """
import sys
from agentlog import _demo, cli

plain = _demo._Model.reply

def reply(body):
    if body.get("stream"):
        raise RuntimeError("injected: the model is down")
    return plain(body)

_demo._Model.reply = staticmethod(reply)
sys.exit(cli.main(["demo", "--dir", sys.argv[1]]))
"""


def test_demo_failing_midway_still_writes_its_document(tmp_path: Path) -> None:
    """The writer's call gets a 500: a failed document anyway, exit 1, one line why."""
    out = tmp_path / "out"
    result = _run_demo([sys.executable, "-c", _FAIL_MIDWAY, str(out)], tmp_path)
    assert result.returncode == 1
    path = _printed_path(result.stdout)
    assert sorted(out.glob("*.json")) == [path]
    message, exit_line = result.stderr.splitlines()
    assert message.startswith("agentlog: the demo failed: InternalServerError: ")
    assert "injected: the model is down" in message and message.endswith(str(path))
    assert exit_line.startswith(f"agentlog: {path} (")

    doc = load_document(path)
    assert doc["final_status"] == "failed"
    assert doc["metadata"]["exit_code"] == 1
    (error,) = doc["error_log"]  # once, though it crossed the writer and the iteration
    assert error["type"] == "openai.InternalServerError"
    assert error["where"]["agent_name"] == "writer"
    (iteration,) = doc["iterations"]
    assert iteration["status"] == "failed"
    by_agent = {ix["agent_name"]: ix for ix in iteration["interactions"]}
    assert by_agent["planner"]["status"] == "completed"
    assert by_agent["writer"]["status"] == "failed"
    for text in (path.read_text(), result.stdout, result.stderr):
        assert KEY not in text


# -- the fake server, in process: its wire format is the real one ---------------------------
RECORDED = SHARED / "fixtures" / "recorded" / "openai"


def _post(server: _demo.FakeOpenAI, body: dict[str, Any]) -> tuple[str, str]:
    """POST to the fake server with the standard library: (content type, body text)."""
    url = urlsplit(server.base_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        return resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


def _recorded(name: str) -> tuple[dict[str, Any], str]:
    """A recorded real exchange: (request body, response body text)."""
    path = RECORDED / name
    if not path.is_file():
        pytest.skip(f"no recorded traffic at {path}")
    (exchange,) = yaml.safe_load(path.read_text())["interactions"][:1]
    raw = exchange["response"]["body"]["string"]
    text = gzip.decompress(raw).decode() if isinstance(raw, bytes) else raw
    return json.loads(exchange["request"]["body"]), text


def _events(text: str) -> list[str]:
    assert text.endswith("data: [DONE]\n\n")
    return [part.removeprefix("data: ") for part in text.split("\n\n") if part]


def _shape(value: Any) -> Any:
    """Keys all the way down (lists by their first item); values left out."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k != "obfuscation"}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def test_fake_server_json_matches_recorded_traffic() -> None:
    """A plain completion: the same fields, nested, as the real service sent."""
    request, recorded = _recorded("test_sync_chat_completions_version_latest.yaml")
    with _demo.FakeOpenAI() as server:
        content_type, text = _post(server, request)
    assert content_type == "application/json"
    assert _shape(json.loads(text)) == _shape(json.loads(recorded))


def test_fake_server_stream_matches_recorded_traffic() -> None:
    """A stream with ``include_usage``: role chunk, words, finish, usage, ``[DONE]``."""
    request, recorded = _recorded("completion_stream.yaml")
    assert request["stream_options"] == {"include_usage": True}
    with _demo.FakeOpenAI() as server:
        content_type, text = _post(server, request)
    assert content_type == "text/event-stream; charset=utf-8"
    real = [json.loads(e) for e in _events(recorded)[:-1]]
    ours = [json.loads(e) for e in _events(text)[:-1]]
    assert [_shape(c) for c in (ours[0], ours[1], ours[-2], ours[-1])] == [
        _shape(c) for c in (real[0], real[1], real[-2], real[-1])
    ]
    assert ours[-2]["choices"][0]["finish_reason"] == "stop"
    assert ours[-1]["choices"] == [] and ours[-1]["usage"]["completion_tokens"] == len(ours) - 3
    words = "".join(c["choices"][0]["delta"]["content"] for c in ours[1:-2])
    assert len(words.split()) == len(ours) - 3, "one chunk per word"


def test_fake_server_through_the_sdk() -> None:
    """Tool calls, streams with and without usage, cached tokens, errors: as the SDK sees them."""
    import openai

    messages: list[Any] = [
        {"role": "system", "content": _demo.SYSTEM},
        {"role": "user", "content": _demo.QUESTION},
    ]
    with _demo.FakeOpenAI() as server, openai.OpenAI(
        base_url=server.base_url, api_key=KEY, max_retries=0
    ) as client:
        first = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, tools=[_demo.LOOKUP_TOOL]
        )
        (choice,) = first.choices
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.type == "function" and call.function.name == "lookup"
        assert json.loads(call.function.arguments) == {"topic": _demo.QUESTION}
        assert first.model == "gpt-4o-mini-2024-07-18" and first._request_id
        assert first.usage is not None and first.usage.prompt_tokens_details is not None
        assert first.usage.prompt_tokens_details.cached_tokens == 0

        with client.chat.completions.stream(
            model="gpt-4o-mini", messages=messages, tools=[_demo.LOOKUP_TOOL],
            stream_options={"include_usage": True},
        ) as stream:
            final = stream.get_final_completion()
        (streamed_call,) = final.choices[0].message.tool_calls or []
        assert streamed_call.function.arguments == call.function.arguments
        assert final.usage is not None and final.usage.prompt_tokens_details is not None
        assert final.usage.prompt_tokens_details.cached_tokens > 0, "the prefix was seen"
        assert final.usage.completion_tokens_details is not None
        assert final.usage.completion_tokens_details.reasoning_tokens == 0

        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": _demo.FACT},
        ]
        with client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True
        ) as chunks:
            got = list(chunks)
        assert all(c.usage is None and c.choices for c in got), "no usage unless asked"
        assert "".join(c.choices[0].delta.content or "" for c in got) == _demo.FACT

        with pytest.raises(openai.NotFoundError):
            client.models.list()
