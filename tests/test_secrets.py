"""No secret reaches a file or a stream, and files are private (TESTPLAN D1, D2).

D1 plants canary secrets everywhere a user can hand one to the manual APIs, then reads
every byte agentlog wrote (documents, journals, temp files) plus the child's stdout and
stderr: not one canary may appear. Each test also checks that ordinary values next to
the canaries were recorded, so blanking everything could not pass.

D2 checks modes under hostile umasks, and that a planted symlink is replaced, never
written through.

Covers D1: canaries given to the manual APIs (kwargs, headers, env, URLs, prompts, tool args,
    errors, Secret(str), SecretStr): 0 in documents, journals, stdout, stderr, and recovery.
Covers D2: umask 000 and 022 give 0600 files and 0700 folders; a 0644 save target becomes a
    0600 document; planted symlinks are replaced or refused, never written through.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers import Result, documents, load_document, run_script, script_env


def _canary() -> str:
    return f"sk-CANARY-{uuid.uuid4().hex}"


def _needles(canaries: dict[str, str], env_secret: str) -> dict[str, bytes]:
    """What must never appear: each canary whole, and the random part of it on its own."""
    found: dict[str, bytes] = {}
    for name, value in canaries.items():
        found[name] = value.encode()
        found[f"{name} (random part)"] = value.removeprefix("sk-CANARY-")[:16].encode()
    found["env"] = env_secret.encode()
    found["env (prefix)"] = env_secret[:16].encode()
    return found


def _written_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() or p.is_symlink()]


def _assert_no_canary(blobs: dict[str, bytes], needles: dict[str, bytes]) -> None:
    leaks = [
        f"{what} in {where}"
        for where, blob in blobs.items()
        for what, needle in needles.items()
        if needle in blob
    ]
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)


# -- D1 ------------------------------------------------------------------------------------
HOST = """\
import os, sys, time
from pathlib import Path

import pydantic

import agentlog

C = {canaries!r}
agentlog.set_logging(True, verbosity={verbosity})


class Secret(str):
    pass


# Inputs and outputs: secret-named keys, nested, and inside prose.
agentlog.log_interaction(
    "caller",
    {{
        "api_key": C["api_key"],
        "headers": {{"Authorization": "Bearer " + C["authorization"],
                     "x-api-key": C["x_api_key"], "Accept": "VISIBLE-accept"}},
        "q": "VISIBLE-question",
    }},
    {{"text": "the key is " + C["prose"] + " - keep it safe", "VISIBLE-key": "VISIBLE-answer"}},
)

# A known secret from the environment, quoted in prose and under an innocent key.
env_value = os.environ["MY_SERVICE_API_KEY"]
agentlog.log_interaction(
    "env-user", f"I will call the service with {{env_value}} now",
    {{"note": env_value, "detail": "VISIBLE-env-neighbour"}},
)

# URLs with credentials in the userinfo and in the query.
url = ("https://user:" + C["url_password"] + "@api.example.com/x?key=" + C["url_key"]
       + "&q=VISIBLE-url")
agentlog.log_interaction("fetcher", url, {{"fetched": url}})
agentlog.add_resource(url, kind="url")

# Secret(str) subclasses and pydantic SecretStr, as values and nested.
agentlog.log_interaction(
    "typed", Secret(C["secret_subclass"]),
    {{"token_holder": pydantic.SecretStr(C["secret_str"]), "plain": "VISIBLE-typed"}},
)
agentlog.log_interaction("typed-list", [Secret(C["secret_subclass_2"]), "VISIBLE-list"], None)


# Tool arguments, positional and keyword, and a secret inside an ordinary argument.
@agentlog.tool
def call(api_key, q):
    return "VISIBLE-tool-result for " + q


call(C["tool_positional"], "VISIBLE-tool-q1")
call(api_key=C["tool_keyword"], q="VISIBLE-tool-q2")
call("harmless-key-name", "please use sk-CANARY-{literal} for this")

# Pythonic interaction whose body fails with an httpx-style message.
try:
    with agentlog.interaction("http-agent", {{"Authorization": "Bearer " + C["ix_header"]}}) as ix:
        ix.output = "VISIBLE-partial"
        raise RuntimeError("401 Unauthorized: Authorization: Bearer sk-CANARY-{literal2}")
except RuntimeError:
    pass

# log_error with an exception and with a message.
try:
    raise ConnectionError("Client error for url " + url + " headers={{'Authorization': 'Bearer "
                          + C["log_error_exc"] + "'}}")
except ConnectionError as exc:
    agentlog.log_error(exc)
agentlog.log_error("request failed: x-api-key: " + C["log_error_str"] + " (VISIBLE-error)")

# A snapshot document inside the log folder, while the run is still going.
agentlog.save_log(Path(os.environ["AGENTLOG_DIR"]) / "snapshot.json")

# Wait until the flusher has put everything in the journal, and keep a copy of it.
agentlog.log_interaction("last", "VISIBLE-last", None)
deadline = time.monotonic() + 10
journal = None
while time.monotonic() < deadline:
    found = list(Path(os.environ["AGENTLOG_DIR"]).glob("*.jsonl"))
    if found and b"VISIBLE-last" in found[0].read_bytes():
        journal = found[0]
        break
    time.sleep(0.02)
Path("journal_copy.jsonl").write_bytes(journal.read_bytes())
print("done")
sys.stdout.flush()
if {killed}:
    os._exit(0)
"""


def _plant(verbosity: int, killed: bool) -> tuple[str, dict[str, str], str]:
    names = [
        "api_key", "authorization", "x_api_key", "prose", "url_password", "url_key",
        "secret_subclass", "secret_subclass_2", "secret_str", "tool_positional",
        "tool_keyword", "ix_header", "log_error_exc", "log_error_str",
    ]
    canaries = {name: _canary() for name in names}
    literal, literal2 = uuid.uuid4().hex, uuid.uuid4().hex
    # These two are written literally into the script, so they are in tracebacks too.
    canaries["literal"] = f"sk-CANARY-{literal}"
    canaries["literal2"] = f"sk-CANARY-{literal2}"
    named = {k: v for k, v in canaries.items() if not k.startswith("literal")}
    source = HOST.format(
        canaries=named, verbosity=verbosity, killed=killed, literal=literal, literal2=literal2
    )
    return source, canaries, uuid.uuid4().hex


def _all_output(result: Result, tmp_path: Path) -> dict[str, bytes]:
    blobs = {str(p): p.read_bytes() for p in _written_files(result.logs) if p.is_file()}
    blobs["stdout"] = result.stdout.encode()
    blobs["stderr"] = result.stderr.encode()
    return blobs


def _ordinary_values_kept(doc: dict[str, Any]) -> None:
    """The values next to the secrets are in the document, and the structure survived."""
    text = json.dumps(doc)
    for marker in (
        "VISIBLE-accept", "VISIBLE-question", "VISIBLE-answer", "VISIBLE-env-neighbour",
        "VISIBLE-url", "VISIBLE-typed", "VISIBLE-list", "VISIBLE-tool-result for VISIBLE-tool-q1",
        "VISIBLE-tool-q2", "VISIBLE-partial", "VISIBLE-error", "api.example.com",
    ):
        assert marker in text, f"{marker} was not recorded"
    by_agent = {ix["agent_name"]: ix for it in doc["iterations"] for ix in it["interactions"]}
    caller = by_agent["caller"]["input_data"]
    assert set(caller) == {"api_key", "headers", "q"}
    assert set(caller["headers"]) == {"Authorization", "x-api-key", "Accept"}
    assert caller["headers"]["Accept"] == "VISIBLE-accept"
    assert "[REDACTED]" in text
    errors = [(e["source"], e["type"], e["error"]) for e in doc["error_log"]]
    assert [e[:2] for e in errors] == [
        ("interaction", "RuntimeError"), ("user", "ConnectionError"), ("user", "Error"),
    ]
    assert "401 Unauthorized: Authorization: Bearer [REDACTED]" in errors[0][2]
    assert "api.example.com/x" in errors[1][2]
    assert [r["kind"] for r in doc["resources_used"]] == ["url"]


@pytest.mark.parametrize("verbosity", [1, 2])
def test_canaries_never_reach_documents_journals_or_streams(
    tmp_path: Path, verbosity: int
) -> None:
    """Secrets in inputs, outputs, tool args, errors, env, URLs and secret types: 0 canaries."""
    source, canaries, env_secret = _plant(verbosity, killed=False)
    result = run_script(tmp_path, source, MY_SERVICE_API_KEY=env_secret)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"

    blobs = _all_output(result, tmp_path)
    journal = (tmp_path / "journal_copy.jsonl").read_bytes()
    blobs["journal (copied before exit)"] = journal
    _assert_no_canary(blobs, _needles(canaries, env_secret))

    for line in journal.splitlines():
        json.loads(line)
    assert b"VISIBLE-question" in journal and b"VISIBLE-env-neighbour" in journal
    docs = result.docs()
    assert len(docs) == 2  # the snapshot and the final document
    final = next(d for d in docs if d["final_status"] == "completed")
    _ordinary_values_kept(final)


def test_killed_run_journal_and_its_recovery_hold_no_canaries(tmp_path: Path) -> None:
    """A run killed mid-way: its journal, and the document recovered from it, hold 0 canaries."""
    source, canaries, env_secret = _plant(2, killed=True)
    result = run_script(tmp_path, source, MY_SERVICE_API_KEY=env_secret)
    assert result.returncode == 0, result.stderr
    journals = list(result.logs.glob("*.jsonl"))
    assert len(journals) == 1, "os._exit leaves the journal behind"
    needles = _needles(canaries, env_secret)
    _assert_no_canary(_all_output(result, tmp_path), needles)

    recover = subprocess.run(
        [sys.executable, "-m", "agentlog", "recover", "--dir", str(result.logs)],
        env=script_env(result.logs, AGENTLOG="0"),
        capture_output=True, timeout=60,
    )
    assert recover.returncode == 0, recover.stderr
    blobs = {str(p): p.read_bytes() for p in _written_files(result.logs)}
    blobs["recover stdout"], blobs["recover stderr"] = recover.stdout, recover.stderr
    _assert_no_canary(blobs, needles)
    recovered = [d for d in documents(result.logs) if d["final_status"] == "crashed"]
    assert len(recovered) == 1
    _ordinary_values_kept(recovered[0])


def test_uncaught_exception_secret_stays_in_the_hosts_own_traceback(tmp_path: Path) -> None:
    """An uncaught httpx-style error: stderr is the host's own; agentlog's files hold 0 canaries."""
    canary = _canary()
    source = f"""\
        import agentlog
        agentlog.log_interaction("client", "VISIBLE-before", "VISIBLE-reply")
        token = {canary!r}
        raise RuntimeError("Client error '401 Unauthorized' for url 'https://api.example.com/v1'"
                           " (request headers: Authorization: Bearer " + token + ")")
        """
    off = run_script(tmp_path, source, AGENTLOG="0")  # same script path: same traceback
    on = run_script(tmp_path, source)
    assert (on.returncode, on.stdout, on.host_stderr()) == (off.returncode, "", off.stderr)
    assert on.returncode == 1
    assert canary in off.stderr  # the host prints its own secret; that is not ours to hide
    ours = [ln for ln in on.stderr.splitlines() if ln.startswith("agentlog: ")]
    assert len(ours) == 1
    needles = _needles({"uncaught": canary}, uuid.uuid4().hex)
    blobs = {str(p): p.read_bytes() for p in _written_files(on.logs)}
    blobs["agentlog's stderr lines"] = "\n".join(ours).encode()
    _assert_no_canary(blobs, needles)

    doc = on.doc()
    assert doc["final_status"] == "failed"
    (entry,) = doc["error_log"]
    assert entry["source"] == "uncaught"
    assert "Authorization: Bearer [REDACTED]" in entry["error"]
    assert "401 Unauthorized" in entry["error"]
    assert "raise RuntimeError" in entry["traceback"]
    assert doc["iterations"][0]["interactions"][0]["output_data"] == "VISIBLE-reply"


def test_content_capture_off_records_no_content(tmp_path: Path) -> None:
    """AGENTLOG_CAPTURE_CONTENT=0: not even a redacted form of the content is written."""
    canary = _canary()
    source = f"""\
        import agentlog
        agentlog.log_interaction("agent-VISIBLE", {{"prompt": "use {canary}"}}, "out {canary}")
        """
    result = run_script(tmp_path, source, AGENTLOG_CAPTURE_CONTENT="0")
    assert result.returncode == 0, result.stderr
    blobs = {str(p): p.read_bytes() for p in _written_files(result.logs)}
    _assert_no_canary(blobs, _needles({"c": canary}, uuid.uuid4().hex))
    (ix,) = result.doc()["iterations"][0]["interactions"]
    assert ix["agent_name"] == "agent-VISIBLE"
    assert "not captured" in ix["input_data"] and "not captured" in ix["output_data"]


# -- D2 ------------------------------------------------------------------------------------
MODES = """\
import json, os, sys, time
from pathlib import Path

os.umask({umask})
import agentlog

agentlog.log_interaction("agent", "VISIBLE-in", "VISIBLE-out")
folder = Path(os.environ["AGENTLOG_DIR"])
deadline = time.monotonic() + 10
journals = []
while not journals and time.monotonic() < deadline:
    journals = list(folder.glob("*.jsonl"))
    time.sleep(0.02)
saved = agentlog.save_log(Path("elsewhere") / "deeper" / "saved.json")
Path("modes.json").write_text(json.dumps({{
    "journal": oct(os.stat(journals[0]).st_mode & 0o777),
    "saved": oct(os.stat(saved).st_mode & 0o777),
}}))
"""


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(os.lstat(path).st_mode))


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_files_0600_and_folders_0700_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """Under umask 000 and 022 every file agentlog writes is 0600 and every folder it makes 0700."""
    logs = tmp_path / "logs" / "nested" / "deeper"
    result = run_script(
        tmp_path, MODES.format(umask=oct(umask)), env=script_env(logs)
    )
    assert result.returncode == 0, result.stderr
    modes = json.loads((tmp_path / "modes.json").read_text())
    assert modes == {"journal": "0o600", "saved": "0o600"}
    (doc_path,) = logs.glob("*.json")
    assert _mode(doc_path) == "0o600"
    load_document(doc_path)
    assert not list(logs.glob("*.jsonl"))
    for folder in (logs, logs.parent, logs.parent.parent,
                   tmp_path / "elsewhere", tmp_path / "elsewhere" / "deeper"):
        assert _mode(folder) == "0o700", f"{folder} was created {_mode(folder)}"
    assert load_document(tmp_path / "elsewhere" / "deeper" / "saved.json")["iterations"]


def test_existing_folder_modes_are_left_alone(tmp_path: Path) -> None:
    """A log folder the user made already keeps the mode the user gave it."""
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o755)
    result = run_script(tmp_path, 'import agentlog\nagentlog.log_interaction("a", 1, 2)\n')
    assert result.returncode == 0, result.stderr
    assert _mode(logs) == "0o755"
    (doc_path,) = logs.glob("*.json")
    assert _mode(doc_path) == "0o600"


def test_existing_0644_target_is_replaced_with_a_private_document(tmp_path: Path) -> None:
    """save_log onto an existing 0644 file: the file ends up 0600 with the new document only."""
    target = tmp_path / "report.json"
    target.write_text("old content that must go\n")
    target.chmod(0o644)
    source = f"""\
        import os
        os.umask(0o022)
        import agentlog
        agentlog.log_interaction("agent", "VISIBLE-in", "VISIBLE-out")
        agentlog.save_log({str(target)!r})
        """
    result = run_script(tmp_path, source)
    assert result.returncode == 0, result.stderr
    assert _mode(target) == "0o600"
    assert not target.is_symlink()
    doc = load_document(target)
    assert b"old content" not in target.read_bytes()
    assert doc["iterations"][0]["interactions"][0]["output_data"] == "VISIBLE-out"
    assert not [p for p in tmp_path.iterdir() if ".tmp." in p.name], "a temp file was left"


def test_symlink_at_the_save_target_is_replaced_not_followed(tmp_path: Path) -> None:
    """save_log onto a planted symlink: the victim is untouched and the link becomes our file."""
    victim = tmp_path / "victim.txt"
    victim.write_text("the victim's own content\n")
    victim.chmod(0o644)
    before = victim.stat()
    target = tmp_path / "report.json"
    target.symlink_to(victim)
    source = f"""\
        import agentlog
        agentlog.log_interaction("agent", "VISIBLE-in", "VISIBLE-out")
        agentlog.save_log({str(target)!r})
        """
    result = run_script(tmp_path, source)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "the victim's own content\n"
    after = victim.stat()
    assert (after.st_mode, after.st_size, after.st_mtime_ns) == (
        before.st_mode, before.st_size, before.st_mtime_ns,
    )
    assert not target.is_symlink()
    assert _mode(target) == "0o600"
    assert load_document(target)["iterations"][0]["interactions"][0]["input_data"] == "VISIBLE-in"


def test_symlinks_at_the_runs_own_paths_are_never_written_through(tmp_path: Path) -> None:
    """Symlinks planted at the run's journal and document paths: the victims stay unchanged."""
    victim_doc, victim_journal = tmp_path / "victim_doc.txt", tmp_path / "victim_journal.txt"
    victim_doc.write_text("doc victim\n")
    victim_journal.write_text("journal victim\n")
    source = f"""\
        import os
        from pathlib import Path
        import agentlog
        from agentlog import api

        rec = api.RECORDER
        run = rec.current()
        folder = Path(os.environ["AGENTLOG_DIR"])
        folder.mkdir(mode=0o700, exist_ok=True)
        (folder / (run.name() + ".jsonl")).symlink_to({str(victim_journal)!r})
        rec.document_path(run).symlink_to({str(victim_doc)!r})
        for i in range(5):
            agentlog.log_interaction("agent", f"VISIBLE-in-{{i}}", "VISIBLE-out")
        print("ok")
        """
    result = run_script(tmp_path, source)
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    assert victim_doc.read_text() == "doc victim\n"
    assert victim_journal.read_text() == "journal victim\n"
    (doc_path,) = result.logs.glob("*.json")
    assert not doc_path.is_symlink()
    assert _mode(doc_path) == "0o600"
    doc = load_document(doc_path)
    # The journal could not be opened, so the events were folded from memory.
    assert doc["metadata"]["totals"]["interactions"] == 5
