"""Canary secrets in every place TESTPLAN D1 lists, for every integration there is now.

``sk-CANARY-<uuid>`` canaries (the shape real keys have, so both of agentlog's defences
are exercised: known values and key patterns) are planted, one per placement, in a host
that drives the real ``openai`` and ``anthropic`` SDKs against ``tests/fake_llm.py`` and
fetches URLs with ``requests``, ``httpx`` and ``urllib`` from a loopback server:

- ``api_key=`` as a ``Secret(str)`` subclass (both SDKs) and a pydantic ``SecretStr``'s
  value; keys from ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY`` and a custom env var;
- ``Authorization`` and ``x-api-key`` headers (client defaults and per call);
- URLs: ``?key=`` / ``api_key=`` query parameters on SDK calls and on fetched resources,
  and ``user:password@`` userinfo;
- prompts (user, system and tool messages, a ``Secret(str)`` as message content) and
  tool-call arguments the model returns, for both SDKs; ``@agentlog.tool`` arguments,
  including a pydantic ``SecretStr``;
- exception messages: provider 401 bodies that quote a key, and httpx / requests
  ``HTTPStatusError``/``HTTPError`` messages that carry the URL with its ``?key=``.

The host copies the journal before exit, and every temp file agentlog renames into
place (by wrapping ``os.replace``, never an agentlog function). Then every one of those
bytes, the log folder, and the host's stdout and stderr are scanned: 0 canaries. The
document must still hold the ordinary text around each canary, so blanking all content
could not pass.

Covers D1: sk-CANARY keys in kwargs, clients, headers, env, URLs, prompts, tool args,
    errors, Secret(str) and SecretStr, for openai, anthropic and http resources: 0 hits.
Covers D2: a 0644 file planted at the journal's path is never appended to (see also
    test_secrets for umask 000/022 and symlinks).
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

import llm_scenarios as ls
from agentlog._redact import REDACTED
from helpers import Result, documents, load_document, run_script, script_env

PLACES = (
    # openai
    "oa_secret_subclass_key", "oa_env_key", "oa_default_authorization", "oa_call_x_api_key",
    "oa_extra_query_key", "oa_default_query_api_key", "oa_user_prompt", "oa_system_prompt",
    "oa_tool_message", "oa_secret_content", "oa_tool_call_args", "oa_error_body",
    "oa_secretstr_key",
    # anthropic
    "an_secret_subclass_key", "an_env_key", "an_default_x_api_key", "an_user_prompt",
    "an_system_prompt", "an_tool_use_input", "an_error_body",
    # resources and manual tools
    "res_requests_query", "res_httpx_query", "res_urllib_query", "res_requests_userinfo",
    "res_httpx_error_url", "res_requests_error_url", "tool_kwarg", "tool_secretstr",
    "env_custom_token",
)

HOST = """\
import json, os, sys, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, {tests!r})

# Keep a copy of every temp file agentlog renames into place, before it is renamed.
_real_replace = os.replace
_copies = Path({copies!r})
_copies.mkdir(exist_ok=True)


def _replace(src, dst, *args, **kwargs):
    try:
        data = Path(src).read_bytes()
        (_copies / (Path(os.fsdecode(src)).name + ".copy")).write_bytes(data)
    except OSError:
        pass
    return _real_replace(src, dst, *args, **kwargs)


os.replace = _replace

import agentlog
import anthropic
import httpx
import openai
import pydantic
import requests

from fake_llm import FakeLLM, Reply
import llm_scenarios as ls

C = {canaries!r}
agentlog.set_logging(True, verbosity={verbosity})


class Secret(str):
    pass


class Files(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 401 if "/private" in self.path else 200
        body = b"VISIBLE-body"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def ask(text, system="VISIBLE-system"):
    return [{{"role": "system", "content": system}}, {{"role": "user", "content": text}}]


def failing(label, fn):
    try:
        fn()
    except Exception as exc:
        print(label, type(exc).__name__)


def error_body(key, anthropic_shape=False):
    message = "Incorrect API key provided: " + key + " (VISIBLE-401)"
    if anthropic_shape:
        return {{"type": "error", "error": {{"type": "authentication_error", "message": message}}}}
    return {{"error": {{"message": message, "type": "invalid_request_error", "param": None,
                        "code": "invalid_api_key"}}}}


files = ThreadingHTTPServer(("127.0.0.1", 0), Files)
threading.Thread(target=files.serve_forever, daemon=True).start()
base = "http://127.0.0.1:%d" % files.server_address[1]

with FakeLLM() as srv:
    common = dict(base_url=srv.openai_base_url, max_retries=0)
    with openai.OpenAI(api_key=Secret(C["oa_secret_subclass_key"]), **common,
                       default_query={{"api_key": C["oa_default_query_api_key"]}}) as oa:
        oa.chat.completions.create(
            model=ls.MODEL, messages=ask("VISIBLE-oa-user " + C["oa_user_prompt"],
                                         "VISIBLE-oa-system " + C["oa_system_prompt"]),
            extra_headers={{"x-api-key": C["oa_call_x_api_key"]}},
            extra_query={{"key": C["oa_extra_query_key"]}})
        oa.chat.completions.create(model=ls.MODEL, messages=[
            {{"role": "user", "content": "VISIBLE-oa-toolmsg"}},
            {{"role": "assistant", "tool_calls": [{{"id": "call_0", "type": "function",
              "function": {{"name": "lookup", "arguments": "{{}}"}}}}]}},
            {{"role": "tool", "tool_call_id": "call_0",
              "content": "VISIBLE-tool-output " + C["oa_tool_message"]}},
        ])
        oa.chat.completions.create(model=ls.MODEL, messages=[
            {{"role": "user", "content": Secret(C["oa_secret_content"])}},
            {{"role": "user", "content": "VISIBLE-oa-secret-content"}}])
        srv.script(Reply(tool_calls=[("lookup", json.dumps(
            {{"note": "use " + C["oa_tool_call_args"], "q": "VISIBLE-args"}}))]))
        oa.chat.completions.create(model=ls.MODEL, messages=ask("VISIBLE-oa-tools"),
                                   tools=ls.TOOLS)
        srv.script(Reply(status=401, error=error_body(C["oa_error_body"])))
        failing("openai 401", lambda: oa.chat.completions.create(
            model=ls.MODEL, messages=ask("VISIBLE-oa-401")))
    with openai.OpenAI(**common) as oe:
        for _ in oe.chat.completions.create(model=ls.MODEL, stream=True, messages=ask(
                "VISIBLE-oa-env " + C["oa_env_key"] + " and " + os.environ["MY_SERVICE_TOKEN"])):
            pass
    with openai.OpenAI(api_key=pydantic.SecretStr(C["oa_secretstr_key"]).get_secret_value(),
                       **common) as op:
        op.chat.completions.create(model=ls.MODEL, messages=ask("VISIBLE-oa-secretstr"))
    auth = "Bearer " + C["oa_default_authorization"]
    with openai.OpenAI(api_key="harmless", default_headers={{"Authorization": auth}},
                       **common) as oh:
        oh.chat.completions.create(model=ls.MODEL, messages=ask("VISIBLE-oa-header"))

    an_common = dict(base_url=srv.anthropic_base_url, max_retries=0)
    with anthropic.Anthropic(api_key=Secret(C["an_secret_subclass_key"]), **an_common,
                             default_headers={{"x-api-key": C["an_default_x_api_key"]}}) as an:
        an.messages.create(model=ls.A_MODEL, max_tokens=64,
                           system="VISIBLE-an-system " + C["an_system_prompt"],
                           messages=[{{"role": "user",
                                      "content": "VISIBLE-an-user " + C["an_user_prompt"]}}])
        srv.script(Reply(tool_calls=[("lookup", json.dumps(
            {{"note": "use " + C["an_tool_use_input"], "q": "VISIBLE-an-args"}}))]))
        an.messages.create(model=ls.A_MODEL, max_tokens=64, messages=[
            {{"role": "user", "content": "VISIBLE-an-tools"}}])
        srv.script(Reply(status=401, error=error_body(C["an_error_body"], True)))
        failing("anthropic 401", lambda: an.messages.create(model=ls.A_MODEL, max_tokens=64,
                messages=[{{"role": "user", "content": "VISIBLE-a401"}}]))
    with anthropic.Anthropic(**an_common) as ae:
        with ae.messages.stream(model=ls.A_MODEL, max_tokens=64, messages=[
                {{"role": "user", "content": "VISIBLE-an-env " + C["an_env_key"]}}]) as s:
            s.get_final_message()
    # The control (outside the log folder, never scanned): what the provider really got.
    Path({control!r}).write_text(json.dumps([[r.path, r.query, r.headers, r.body]
                                             for r in srv.requests]))

requests.get(base + "/data.csv?key=" + C["res_requests_query"] + "&q=VISIBLE-requests")
httpx.get(base + "/data.json?api_key=" + C["res_httpx_query"] + "&q=VISIBLE-httpx")
with urllib.request.urlopen(base + "/VISIBLE-urllib.txt?api_key=" + C["res_urllib_query"]) as r:
    r.read()
port = files.server_address[1]
requests.get("http://user:" + C["res_requests_userinfo"] + "@127.0.0.1:%d/VISIBLE-userinfo" % port)
try:
    with agentlog.interaction("httpx-agent", "VISIBLE-httpx-agent"):
        httpx.get(base + "/private?token=" + C["res_httpx_error_url"]).raise_for_status()
except httpx.HTTPStatusError as exc:
    print("httpx", type(exc).__name__)
try:
    requests.get(base + "/private?key=" + C["res_requests_error_url"]).raise_for_status()
except requests.HTTPError as exc:
    agentlog.log_error(exc)
    print("requests", type(exc).__name__)
print("requests", srv.count())


@agentlog.tool
def lookup(query, api_key=None, secret=None):
    return "VISIBLE-tool-result for " + query


lookup("VISIBLE-tool-q " + C["tool_kwarg"], api_key=C["tool_kwarg"])
lookup("VISIBLE-tool-q2", secret=pydantic.SecretStr(C["tool_secretstr"]))
agentlog.log_interaction("last", "VISIBLE-last", None)

deadline = time.monotonic() + 10
journal = None
while time.monotonic() < deadline:
    found = list(Path(os.environ["AGENTLOG_DIR"]).glob("*.jsonl"))
    if found and b"VISIBLE-last" in found[0].read_bytes():
        journal = found[0]
        break
    time.sleep(0.02)
Path({copies!r}, "journal.jsonl.copy").write_bytes(journal.read_bytes())
files.shutdown()
print("done")
"""

LLM_REQUESTS = 12
RESPONSE_SIDE = ("oa_tool_call_args", "oa_error_body", "an_tool_use_input", "an_error_body",
                 "oa_secret_content")  # sent by the provider, or echoed only if last
STDOUT = ("openai 401 AuthenticationError\nanthropic 401 AuthenticationError\n"
          f"httpx HTTPStatusError\nrequests HTTPError\nrequests {LLM_REQUESTS}\ndone\n")


def _canaries() -> dict[str, str]:
    return {name: f"sk-CANARY-{uuid.uuid4()}" for name in PLACES}


def _needles(canaries: dict[str, str]) -> dict[str, bytes]:
    """Each canary whole, and 16 characters of its random part on their own."""
    found: dict[str, bytes] = {}
    for name, value in canaries.items():
        found[name] = value.encode()
        found[f"{name} (random part)"] = value[10:26].encode()
    return found


def _blobs(result: Result, copies: Path) -> dict[str, bytes]:
    blobs = {str(p): p.read_bytes() for p in result.logs.rglob("*") if p.is_file()}
    blobs.update({str(p): p.read_bytes() for p in copies.iterdir()})
    blobs["stdout"] = result.stdout.encode()
    blobs["stderr"] = result.stderr.encode()
    return blobs


def scan(blobs: dict[str, bytes], canaries: dict[str, str]) -> list[str]:
    return [f"{what} in {where}" for where, blob in blobs.items()
            for what, needle in _needles(canaries).items() if needle in blob]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Result, dict[str, str],
                                                                        Path]]:
    root = tmp_path_factory.mktemp("canaries")
    jobs, meta = [], {}
    for verbosity in (1, 3):
        folder = root / f"v{verbosity}"
        folder.mkdir()
        canaries = _canaries()
        copies = folder / "copies"
        source = HOST.format(tests=str(ls.TESTS), canaries=canaries, verbosity=verbosity,
                             copies=str(copies), control=str(folder / "control.json"))
        env = script_env(folder / "logs", OPENAI_API_KEY=canaries["oa_env_key"],
                         ANTHROPIC_API_KEY=canaries["an_env_key"],
                         MY_SERVICE_TOKEN=canaries["env_custom_token"])
        jobs.append((folder, source, env))
        meta[verbosity] = (canaries, copies)
    results = ls.run_hosts(jobs, timeout=120)
    return {v: (r, meta[v][0], meta[v][1]) for v, r in zip(meta, results, strict=True)}


def _interaction_with(doc: dict[str, Any], marker: str) -> str:
    """The JSON text of the one interaction that holds ``marker``."""
    (text,) = [t for it in doc["iterations"] for ix in it["interactions"]
               if marker in (t := json.dumps(ix))]
    return text


@pytest.mark.parametrize("verbosity", [1, 3])
def test_no_canary_reaches_any_file_or_stream(
    hosts: dict[int, tuple[Result, dict[str, str], Path]], verbosity: int
) -> None:
    """Every file agentlog wrote (document, journal copy, temp files) plus stdout and
    stderr: 0 canaries, while the text around each one is recorded."""
    result, canaries, copies = hosts[verbosity]
    assert result.returncode == 0, result.stderr
    assert result.stdout == STDOUT
    # The control: every SDK-side canary really went over the wire to the provider.
    sent = (result.logs.parent / "control.json").read_text()
    unsent = [k for k, v in canaries.items() if k.startswith(("oa_", "an_")) and v not in sent
              and k not in RESPONSE_SIDE]
    assert not unsent, f"placements that never reached the provider: {unsent}"
    assert result.host_stderr() == "", result.stderr
    blobs = _blobs(result, copies)
    assert any(".tmp." in name for name in blobs), "no temp file was seen"
    assert any(name.endswith("journal.jsonl.copy") for name in blobs)
    hits = scan(blobs, canaries)
    print(f"\ncanary placements: {len(canaries)}; files and streams scanned: {len(blobs)}; "
          f"canary hits: {len(hits)}")
    assert not hits, "secrets leaked:\n" + "\n".join(hits)

    doc = result.doc()
    assert doc["metadata"]["verbosity"] == verbosity
    assert len(ls.records(doc)) == LLM_REQUESTS  # every SDK request is recorded
    text = json.dumps(doc)
    assert REDACTED in text
    for marker in ("oa-user", "oa-system", "oa-toolmsg", "tool-output", "oa-secret-content",
                   "oa-tools", "oa-401", "oa-env", "oa-secretstr", "oa-header", "an-system",
                   "an-user", "an-tools", "a401", "an-env", "httpx-agent", "tool-result", "tool-q2",
                   "last"):
        assert f"VISIBLE-{marker}" in text, f"VISIBLE-{marker} was not recorded"
    urls = [r["resource"] for r in doc["resources_used"]]
    assert any("VISIBLE-requests" in u and "key=" in u for u in urls), urls
    assert any("VISIBLE-httpx" in u and "api_key=" in u for u in urls), urls
    assert any("VISIBLE-urllib" in u and "api_key=" in u for u in urls), urls
    assert any("VISIBLE-userinfo" in u for u in urls), urls
    for marker in ("VISIBLE-args", "VISIBLE-an-args", "VISIBLE-oa-user", "VISIBLE-an-user",
                   "VISIBLE-tool-output", "VISIBLE-oa-env", "VISIBLE-an-env"):
        assert REDACTED in _interaction_with(doc, marker), marker
    errors = " ".join(e["error"] for e in doc["error_log"])
    assert "Incorrect API key provided: " + REDACTED in errors
    assert "/private?token=" + REDACTED in errors and "/private?key=" + REDACTED in errors


def test_journal_and_documents_parse(hosts: dict[int, tuple[Result, dict[str, str], Path]]
                                     ) -> None:
    """The copies scanned above are real agentlog output: the journal parses line by line
    and every temp file was a valid document."""
    for result, _, copies in hosts.values():
        for line in (copies / "journal.jsonl.copy").read_bytes().splitlines():
            json.loads(line)
        temps = [p for p in copies.iterdir() if ".tmp." in p.name]
        assert temps
        for p in temps:
            load_document(p)
        assert documents(result.logs)


# -- D2: a file already at the journal's path ------------------------------------------
def test_existing_0644_file_at_the_journal_path_is_not_appended_to(tmp_path: Path) -> None:
    """A regular 0644 file planted where the run's journal goes keeps its bytes and mode;
    the run's events still reach a private document."""
    victim = "someone else's data\n"
    source = f"""\
        import os
        from pathlib import Path
        import agentlog
        from agentlog import api

        run = api.RECORDER.current()
        folder = Path(os.environ["AGENTLOG_DIR"])
        folder.mkdir(mode=0o700, exist_ok=True)
        planted = folder / (run.name() + ".jsonl")
        planted.write_text({victim!r})
        planted.chmod(0o644)
        print(planted)
        for i in range(3):
            agentlog.log_interaction("agent", f"VISIBLE-in-{{i}}", "VISIBLE-out")
        """
    # Recovery on import would take the planted file for a dead run's journal (reported
    # separately); this test is about the writer.
    result = run_script(tmp_path, source, AGENTLOG_RECOVER="0")
    assert result.returncode == 0, result.stderr
    planted = Path(result.stdout.strip())
    assert planted.read_text() == victim
    assert stat.S_IMODE(os.lstat(planted).st_mode) == 0o644
    (doc_path,) = result.logs.glob("*.json")
    assert stat.S_IMODE(os.lstat(doc_path).st_mode) == 0o600
    doc = load_document(doc_path)
    assert doc["metadata"]["totals"]["interactions"] == 3

