"""API keys handed to the LLM SDKs never reach a file or a stream (TESTPLAN D1; issue 3
"Canary API keys, passed by argument, by environment and in headers").

Canary keys are planted where users put them: ``api_key=`` (a string, or a key provider
callable), Anthropic's ``auth_token=``, ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY`` in the
environment, ``default_headers={"Authorization": ...}``, ``extra_headers={"x-api-key":
...}`` and Azure's ``{"api-key": ...}``. The keys passed by argument or environment are
also pasted into prompts (the fake server echoes them back, and returns one in a tool
call's arguments), and 401 errors quote them as real providers do. Then every byte
agentlog wrote (documents and journals, a killed run's journal and its recovered
document) plus the host's stdout and stderr must hold 0 canaries, while the document
shows the redaction marker where a key was and keeps the ordinary text around it.

The canaries are opaque (no ``sk-`` or other recognisable shape), so only agentlog's
knowledge of the key values can hide them, not its shape patterns.

Covers D1: openai/anthropic keys by argument, key provider, env, Authorization/x-api-key/api-key
    headers, echoed in prompts, tool arguments and 401 errors: 0 canaries, killed runs too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import llm_scenarios as ls
from agentlog._redact import REDACTED
from helpers import Result, documents, script_env

ENV_CANARIES = ("env_openai", "env_anthropic")
HEADER_CANARIES = ("hdr_authorization", "hdr_x_api_key", "hdr_azure_api_key")
ARG_CANARIES = ("arg_openai", "arg_provider", "arg_anthropic", "arg_auth_token", "arg_azure")

HOST = """\
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
import agentlog
import anthropic
import openai
from fake_llm import FakeLLM, Reply
import llm_scenarios as ls

C = {canaries!r}
agentlog.set_logging(True, verbosity={verbosity})


def ask(text):
    return [{{"role": "user", "content": text}}]


def unauthorized(key, anthropic_shape=False):
    message = "Incorrect API key provided: " + key + ". Authorization: Bearer " + key
    if anthropic_shape:
        error = {{"type": "error", "error": {{"type": "authentication_error", "message": message}}}}
    else:
        error = {{"error": {{"message": message, "type": "invalid_request_error", "param": None,
                            "code": "invalid_api_key"}}}}
    return Reply(status=401, error=error)


def failing(label, fn):
    try:
        fn()
    except Exception as exc:  # only the type: the host never prints a key itself
        print(label, type(exc).__name__)


with FakeLLM() as srv:
    common = dict(base_url=srv.openai_base_url, max_retries=0)
    # By argument, with an Authorization header on top.
    with openai.OpenAI(api_key=C["arg_openai"], **common,
                       default_headers={{"Authorization": "Bearer " + C["hdr_authorization"]}}
                       ) as oa:
        oa.chat.completions.create(model=ls.MODEL, messages=ask(
            "VISIBLE-arg my key is " + C["arg_openai"] + " ok"))
        for _ in oa.chat.completions.create(model=ls.MODEL, stream=True, messages=ask(
                "VISIBLE-stream " + C["arg_openai"])):
            pass
        oa.chat.completions.create(model=ls.MODEL, messages=ask("VISIBLE-header"),
                                   extra_headers={{"x-api-key": C["hdr_x_api_key"]}})
        srv.script(Reply(tool_calls=[("lookup", '{{"token": "' + C["arg_openai"] + '"}}')]))
        oa.chat.completions.create(model=ls.MODEL, messages=ask("VISIBLE-tool"),
                                   tools=ls.TOOLS)
        srv.script(unauthorized(C["arg_openai"]))
        failing("openai 401", lambda: oa.chat.completions.create(
            model=ls.MODEL, messages=ask("VISIBLE-401")))
    # A key provider (callable) instead of a string.
    with openai.OpenAI(api_key=lambda: C["arg_provider"], **common) as op:
        op.chat.completions.create(model=ls.MODEL, messages=ask(
            "VISIBLE-provider " + C["arg_provider"]))
    # From the environment (OPENAI_API_KEY).
    with openai.OpenAI(**common) as oe:
        oe.responses.create(model=ls.MODEL, input="VISIBLE-env " + C["env_openai"],
                            instructions="VISIBLE-instructions")
        srv.script(unauthorized(C["env_openai"]))
        failing("openai env 401", lambda: oe.embeddings.create(
            model="text-embedding-3-small", input="VISIBLE-embed"))
    # Azure: api_key by argument, and an api-key header.
    with openai.AzureOpenAI(api_key=C["arg_azure"], api_version="2024-10-21",
                            azure_endpoint=srv.url, max_retries=0) as az:
        az.chat.completions.create(model=ls.MODEL, messages=ask(
            "VISIBLE-azure " + C["arg_azure"]), extra_headers={{"api-key": C["hdr_azure_api_key"]}})
    # Anthropic: by argument, by auth token, and from the environment (ANTHROPIC_API_KEY).
    with anthropic.Anthropic(api_key=C["arg_anthropic"], base_url=srv.anthropic_base_url,
                             max_retries=0) as an:
        an.messages.create(model=ls.A_MODEL, max_tokens=64, system="VISIBLE-system",
                           messages=ask("VISIBLE-anthropic " + C["arg_anthropic"]))
        with an.messages.stream(model=ls.A_MODEL, max_tokens=64,
                                messages=ask("VISIBLE-astream " + C["arg_anthropic"])) as s:
            s.get_final_message()
        srv.script(unauthorized(C["arg_anthropic"], anthropic_shape=True))
        failing("anthropic 401", lambda: an.messages.create(
            model=ls.A_MODEL, max_tokens=64, messages=ask("VISIBLE-a401")))
    with anthropic.Anthropic(auth_token=C["arg_auth_token"], base_url=srv.anthropic_base_url,
                             max_retries=0) as at:
        at.messages.create(model=ls.A_MODEL, max_tokens=64, messages=ask(
            "VISIBLE-token " + C["arg_auth_token"]))
    with anthropic.Anthropic(base_url=srv.anthropic_base_url, max_retries=0) as ae:
        ae.messages.create(model=ls.A_MODEL, max_tokens=64, messages=ask(
            "VISIBLE-aenv " + C["env_anthropic"]))
        ae.messages.create(model=ls.A_MODEL, max_tokens=64, messages=ask("VISIBLE-last"))
    print("requests", srv.count())
    sys.stdout.flush()
    if {killed}:
        # Wait until the journal holds the last call, then die without any cleanup.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = list(Path(os.environ["AGENTLOG_DIR"]).glob("*.jsonl"))
            if found and b"VISIBLE-last" in found[0].read_bytes():
                break
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGKILL)
"""

REQUESTS = 15  # what the host sends; 3 of them fail with 401
STDOUT = f"openai 401 AuthenticationError\nopenai env 401 AuthenticationError\n" \
         f"anthropic 401 AuthenticationError\nrequests {REQUESTS}\n"


def _canaries() -> dict[str, str]:
    names = ARG_CANARIES + ENV_CANARIES + HEADER_CANARIES
    return {name: f"cnry{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}" for name in names}


def _job(
    folder: Path, verbosity: int, killed: bool
) -> tuple[Path, str, dict[str, str], dict[str, str]]:
    canaries = _canaries()
    source = HOST.format(tests=str(ls.TESTS), canaries=canaries, verbosity=verbosity,
                         killed=killed)
    env = script_env(
        folder / "logs",
        OPENAI_API_KEY=canaries["env_openai"],
        ANTHROPIC_API_KEY=canaries["env_anthropic"],
    )
    return folder, source, env, canaries


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Result, dict[str, str]]]:
    root = tmp_path_factory.mktemp("llm_secrets")
    jobs = {
        "v1": _job(root / "v1", 1, killed=False),
        "v3": _job(root / "v3", 3, killed=False),
        "killed": _job(root / "killed", 3, killed=True),
    }
    results = ls.run_hosts(job[:3] for job in jobs.values())
    return {name: (result, job[3]) for (name, job), result in zip(jobs.items(), results,
                                                                  strict=True)}


def _needles(canaries: dict[str, str]) -> dict[str, bytes]:
    """Each canary whole, and its first 16 random characters on their own."""
    found: dict[str, bytes] = {}
    for name, value in canaries.items():
        found[name] = value.encode()
        found[f"{name} (prefix)"] = value[4:20].encode()
    return found


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _assert_no_canary(blobs: dict[str, bytes], canaries: dict[str, str]) -> None:
    leaks = [
        f"{what} in {where}"
        for where, blob in blobs.items()
        for what, needle in _needles(canaries).items()
        if needle in blob
    ]
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)


def _interactions(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each LLM interaction by the last ``VISIBLE-`` marker of its input (the user's)."""
    found = {}
    for it in doc["iterations"]:
        for ix in it["interactions"]:
            markers = re.findall(r"VISIBLE-[a-z0-9]+", json.dumps(ix["input_data"]))
            found[markers[-1]] = ix
    return found


def _check_document(doc: dict[str, Any]) -> None:
    """Ordinary text is recorded; where a key was pasted, the marker stands instead."""
    by_marker = _interactions(doc)
    assert len(ls.records(doc)) == REQUESTS
    redacted_in = {
        "VISIBLE-arg": ("input", "output"),
        "VISIBLE-stream": ("input", "output"),
        "VISIBLE-provider": ("input", "output"),
        "VISIBLE-env": ("input", "output"),
        "VISIBLE-azure": ("input", "output"),
        "VISIBLE-anthropic": ("input", "output"),
        "VISIBLE-astream": ("input", "output"),
        "VISIBLE-token": ("input", "output"),
        "VISIBLE-aenv": ("input", "output"),
        "VISIBLE-tool": ("output",),
    }
    for marker, where in redacted_in.items():
        ix = by_marker[marker]
        if "input" in where:
            assert REDACTED in json.dumps(ix["input_data"]), (marker, ix["input_data"])
        if "output" in where:
            assert REDACTED in json.dumps(ix["output_data"]), (marker, ix["output_data"])
    assert by_marker["VISIBLE-arg"]["input_data"] == [
        {"role": "user", "content": f"VISIBLE-arg my key is {REDACTED} ok"}
    ]
    assert by_marker["VISIBLE-env"]["input_data"][0] == {
        "role": "system", "content": "VISIBLE-instructions"
    }
    assert by_marker["VISIBLE-anthropic"]["input_data"][0] == {
        "role": "system", "content": "VISIBLE-system"
    }
    tool_calls = by_marker["VISIBLE-tool"]["llm"]["tool_calls"]
    assert tool_calls[0]["name"] == "lookup"
    assert REDACTED in json.dumps(tool_calls)
    # The three 401s: recorded, in error_log, with the quoted key hidden.
    errors = [e for e in doc["error_log"] if e["source"] == "llm"]
    assert [e["type"] for e in errors] == ["openai.AuthenticationError"] * 2 + [
        "anthropic.AuthenticationError"
    ]
    for entry in errors:
        assert "Incorrect API key provided: " + REDACTED in entry["error"], entry["error"]
    failed = [by_marker[m] for m in ("VISIBLE-401", "VISIBLE-embed", "VISIBLE-a401")]
    assert [ix["llm"]["http_status"] for ix in failed] == [401, 401, 401]
    assert all(REDACTED in ix["error"]["error"] for ix in failed)


@pytest.mark.parametrize("verbosity", ["v1", "v3"])
def test_canary_keys_never_reach_files_or_streams(
    hosts: dict[str, tuple[Result, dict[str, str]]], verbosity: str
) -> None:
    """Documents, journals, stdout and stderr hold 0 canaries at verbosity 1 and 3; the
    document shows the redaction marker where a key was pasted into a prompt."""
    result, canaries = hosts[verbosity]
    assert result.returncode == 0, result.stderr
    assert result.stdout == STDOUT
    assert result.host_stderr() == "", result.stderr
    blobs = _files(result.logs)
    assert any(name.endswith(".json") for name in blobs)
    blobs["stdout"] = result.stdout.encode()
    blobs["stderr"] = result.stderr.encode()
    _assert_no_canary(blobs, canaries)
    doc = result.doc()
    assert doc["metadata"]["verbosity"] == int(verbosity[1])
    _check_document(doc)


def test_killed_run_journal_and_recovered_document_hold_no_canary(
    hosts: dict[str, tuple[Result, dict[str, str]]], tmp_path: Path
) -> None:
    """SIGKILL after the last call: the journal left behind, and the document that
    ``agentlog recover`` makes of it, hold 0 canaries (and the recorded calls)."""
    result, canaries = hosts["killed"]
    assert result.returncode == -9, result.stderr
    assert result.stdout == STDOUT
    journals = list(result.logs.glob("*.jsonl"))
    assert len(journals) == 1
    journal = journals[0].read_bytes()
    assert b"VISIBLE-last" in journal and b"VISIBLE-arg" in journal
    blobs = _files(result.logs)
    blobs["stdout"], blobs["stderr"] = result.stdout.encode(), result.stderr.encode()
    _assert_no_canary(blobs, canaries)

    recover = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(result.logs)],
        env=script_env(result.logs), capture_output=True, timeout=60, cwd=tmp_path,
    )
    assert recover.returncode == 0, recover.stderr
    blobs = _files(result.logs)
    blobs["recover stdout"], blobs["recover stderr"] = recover.stdout, recover.stderr
    _assert_no_canary(blobs, canaries)
    (doc,) = documents(result.logs)
    assert doc["final_status"] == "crashed"
    _check_document(doc)
