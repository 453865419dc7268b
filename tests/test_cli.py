"""The reading side of the CLI (``ls``, ``show``, ``tail``, ``view``), ``agentlog.load`` and
the exit line's hint, against runs made by real programs: the ``invisible`` example,
``agentlog demo`` (the real openai SDK against its embedded server) and a run that
SIGKILLs itself. Every command runs in its own interpreter, as a user would run it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import agentlog
from agentlog import _document, _read
from helpers import REPO, load_document, script_env, validate_document

CRASHING = """
import os, signal, time
import agentlog

agentlog.start_workflow("crashy")
with agentlog.iteration():
    agentlog.log_interaction("planner", "plan the fix", "planned")
    try:
        with agentlog.interaction("fixer", "fix it"):
            raise ValueError("boom in the fixer")
    except ValueError:
        pass
time.sleep(0.5)  # ten flush intervals: every event is in the journal
os.kill(os.getpid(), signal.SIGKILL)
"""

SLOW = """
import os, sys, time
import agentlog

agentlog.start_workflow("slow")
for i in range(int(sys.argv[1])):
    agentlog.log_interaction("stepper", f"step-{i}", f"done-{i}")
    time.sleep(float(sys.argv[2]))
    while i == 3 and len(sys.argv) > 3 and not os.path.exists(sys.argv[3]):
        time.sleep(0.02)  # the test opens the gate once tail has shown what it wanted
"""


@dataclass
class Cli:
    returncode: int
    stdout: str
    stderr: str


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None, **extra: str) -> Cli:
    """``python -m agentlog ARGS``; by default its own log folder is an empty one."""
    env = env if env is not None else script_env(cwd / "cli-own-logs", **extra)
    proc = subprocess.run(
        [sys.executable, "-m", "agentlog", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return Cli(proc.returncode, proc.stdout, proc.stderr)


def _write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


@dataclass
class Runs:
    logs: Path
    cwd: Path
    invisible: Path
    demo: Path
    journal: Path
    demo_stdout: str
    exit_line: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """One log folder holding three real runs, oldest first: the invisible example, the
    demo, and a crashed run whose journal is still there."""
    cwd = tmp_path_factory.mktemp("cli")
    logs = cwd / "logs"
    env = script_env(logs)
    inv = subprocess.run(
        [sys.executable, str(REPO / "examples" / "invisible.py")],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
    )
    assert inv.returncode == 0, inv.stderr
    (invisible,) = logs.glob("invisible_*.json")
    demo = subprocess.run(
        [sys.executable, "-m", "agentlog", "demo"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
    )
    assert demo.returncode == 0, demo.stderr
    (demo_doc,) = logs.glob("agentlog-demo_*.json")
    script = _write(cwd / "scripts", "crashy", CRASHING)
    crash = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=cwd, capture_output=True, timeout=60
    )
    assert crash.returncode == -signal.SIGKILL
    (journal,) = logs.glob("crashy_*.jsonl")
    (exit_line,) = [ln for ln in inv.stderr.splitlines() if ln.startswith("agentlog: ")]
    return Runs(logs, cwd, invisible, demo_doc, journal, demo.stdout, exit_line)


def _dir(runs: Runs) -> tuple[str, str]:
    return ("--dir", str(runs.logs))


# -- ls ----------------------------------------------------------------------------------------
def test_ls_json_lists_runs_newest_first(runs: Runs) -> None:
    """``ls --json``: one entry per run, newest first, with the document's own totals; the
    dead run's journal is listed as crashed."""
    r = _cli("ls", "--json", *_dir(runs), cwd=runs.cwd)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["workflow"] for row in rows] == ["crashy", "agentlog-demo", "invisible"]
    assert [row["source"] for row in rows] == ["journal", "document", "document"]
    assert [row["status"] for row in rows] == ["crashed", "completed", "success"]
    assert [row["path"] for row in rows] == [str(runs.journal), str(runs.demo), str(runs.invisible)]
    starts = [row["start_time"] for row in rows]
    assert starts == sorted(starts, reverse=True)
    demo = load_document(runs.demo)
    totals = demo["metadata"]["totals"]
    row = rows[1]
    assert row["run_id"] == demo["metadata"]["run_id"]
    assert row["llm_calls"] == totals["llm_calls"] == 3
    assert row["tokens"] == totals["input_tokens"] + totals["output_tokens"] > 0
    assert row["cost_usd"] == totals["cost_usd"] > 0
    assert (row["iterations"], row["interactions"], row["errors"]) == (1, 3, 0)
    assert rows[0]["errors"] == 1 and rows[0]["interactions"] == 2
    expected_keys = {
        "path", "source", "run_id", "workflow", "status", "start_time", "end_time",
        "duration_s", "iterations", "interactions", "llm_calls", "input_tokens",
        "output_tokens", "tokens", "cost_usd", "errors",
    }
    assert all(set(row) == expected_keys for row in rows)

    r = _cli("ls", "--json", "-n", "1", *_dir(runs), cwd=runs.cwd)
    assert [row["workflow"] for row in json.loads(r.stdout)] == ["crashy"]


def test_ls_table(runs: Runs) -> None:
    """The table: a header, then one line per run with its status, calls and cost."""
    r = _cli("ls", *_dir(runs), cwd=runs.cwd)
    assert r.returncode == 0, r.stderr
    header, *lines = r.stdout.splitlines()
    assert header.split() == ["STARTED", "WORKFLOW", "STATUS", "ITER", "CALLS", "TOKENS", "COST",
                              "ERRORS", "RUN"]
    assert len(lines) == 3
    assert "crashy" in lines[0] and "crashed" in lines[0]
    demo_id = load_document(runs.demo)["metadata"]["run_id"]
    assert "agentlog-demo" in lines[1] and lines[1].endswith(demo_id[-8:])
    assert "\x1b[" not in r.stdout, "no colour when stdout is not a terminal"


def test_ls_running_journal_is_running(tmp_path: Path) -> None:
    """A journal whose process still lives is listed as running, and ``show`` reads it."""
    logs = tmp_path / "logs"
    script = _write(tmp_path, "slow", SLOW)
    proc = subprocess.Popen(
        [sys.executable, str(script), "200", "0.05"], env=script_env(logs), cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: list(logs.glob("slow_*.jsonl")) and
                  b"stepper" in next(logs.glob("slow_*.jsonl")).read_bytes())
        r = _cli("ls", "--json", "--dir", str(logs), cwd=tmp_path)
        (row,) = json.loads(r.stdout)
        assert (row["status"], row["source"], row["workflow"]) == ("running", "journal", "slow")
        shown = _cli("show", "--dir", str(logs), cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "running" in shown.stdout.splitlines()[0] and "stepper" in shown.stdout
    finally:
        proc.kill()
        proc.wait()


# -- show --------------------------------------------------------------------------------------
def test_show_demo_tree(runs: Runs) -> None:
    """The demo's tree: its agents, the model, tokens and cost per call, totals at the bottom."""
    r = _cli("show", str(runs.demo), cwd=runs.cwd)
    assert r.returncode == 0, r.stderr
    doc = load_document(runs.demo)
    out = r.stdout
    assert "agentlog-demo" in out.splitlines()[0] and "completed" in out.splitlines()[0]
    assert "iteration 1" in out
    for agent in ("planner", "writer", "tool:lookup", "llm:openai.chat"):
        assert agent in out
    models = {
        (h["llm"].get("response_model") or h["llm"]["request_model"])
        for it in doc["iterations"] for ix in it["interactions"]
        for h in (ix, *ix["actions"]) if h.get("llm")
    }
    assert models and all(model in out for model in models)
    assert out.count(" in / ") == 3  # one token count per LLM call
    t = doc["metadata"]["totals"]
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("totals")
    assert f"{t['llm_calls']} LLM calls" in last and f"{t['input_tokens']:,} in" in last
    assert f"{t['output_tokens']:,} out" in last and "0 errors" in last
    assert "$0.0000" in last  # the demo's cost is a few millionths of a dollar
    assert "\x1b[" not in out


def test_show_crashed_journal_error_stands_out(runs: Runs) -> None:
    """``show last`` reads the crashed run's journal: the error is marked under its agent and
    listed again at the bottom."""
    r = _cli("show", "last", *_dir(runs), cwd=runs.cwd)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "crashy" in lines[0] and "crashed" in lines[0]
    assert "journal of a crashed run" in r.stdout
    fixer = next(i for i, ln in enumerate(lines) if "fixer" in ln)
    assert "failed" in lines[fixer]
    assert "ValueError: boom in the fixer" in lines[fixer + 1]
    assert lines[fixer + 1].lstrip("│ ").startswith(("\u2717", "x "))
    assert any(ln.startswith("errors (1)") for ln in lines)
    assert "1 error" in lines[-1]
    assert runs.journal.exists(), "reading a journal does not recover it"


@pytest.mark.parametrize("how", ["full", "suffix", "prefix", "stem"])
def test_show_by_run_id(runs: Runs, how: str) -> None:
    """A run id, whole or a unique part of it, or the file's stem, names the run."""
    run_id = load_document(runs.demo)["metadata"]["run_id"]
    spec = {"full": run_id, "suffix": run_id[-8:].lower(), "prefix": run_id[:22],
            "stem": runs.demo.stem}[how]
    r = _cli("show", spec, *_dir(runs), cwd=runs.cwd)
    assert r.returncode == 0, r.stderr
    assert f"run {run_id}" in r.stdout.splitlines()[0]


def test_show_on_a_terminal_has_colour(runs: Runs) -> None:
    """Colour on a terminal; none with NO_COLOR set."""
    outs = {}
    for no_color in ("", "1"):
        env = script_env(runs.cwd / "cli-own-logs", NO_COLOR=no_color)
        outs[no_color] = _pty_run([sys.executable, "-m", "agentlog", "show", "last",
                                   *_dir(runs)], env)
    assert "\x1b[1;31m" in outs[""] and "boom in the fixer" in outs[""]
    assert "\x1b[" not in outs["1"] and "boom in the fixer" in outs["1"]


def _pty_run(argv: list[str], env: dict[str, str]) -> str:
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(argv, env=env, stdout=secondary, stderr=subprocess.PIPE)
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            ready, _, _ = select.select([primary], [], [], 30)
            assert ready, "no output within 30 s"
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        proc.stderr.close()
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    return b"".join(chunks).decode()


def test_show_with_recovery_on_import(runs: Runs, tmp_path: Path) -> None:
    """The CLI's own import may recover the journal it is reading: ``show`` still reads the
    run, from the journal or from the document that replaced it."""
    logs = tmp_path / "logs"
    logs.mkdir()
    copy = logs / runs.journal.name
    copy.write_bytes(runs.journal.read_bytes())
    r = _cli("show", env=script_env(logs), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "crashed" in r.stdout.splitlines()[0] and "boom in the fixer" in r.stdout


def test_show_imports_no_integration(runs: Runs, tmp_path: Path) -> None:
    """Readers read documents: ``show`` of a run full of openai calls imports no SDK and no
    integration."""
    probe = tmp_path / "modules.json"
    code = (
        "import json, sys\n"
        "from agentlog.cli import main\n"
        f"rc = main(['show', {str(runs.demo)!r}])\n"
        f"json.dump([rc, sorted(sys.modules)], open({str(probe)!r}, 'w'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=script_env(tmp_path / "logs"), capture_output=True,
        text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rc, modules = json.loads(probe.read_text())
    assert rc == 0 and "gpt-4o-mini" in proc.stdout
    assert "agentlog.cli" in modules
    for name in ("openai", "anthropic", "agentlog.integrations.openai",
                 "agentlog.integrations.anthropic", "agentlog.integrations._llm"):
        assert name not in modules


# -- bad input ---------------------------------------------------------------------------------
BAD: dict[str, Any] = {
    "missing file": lambda d: d / "nope.json",
    "not agentlog JSON": lambda d: _put(d / "other.json", b'{"name": "x", "version": 1}\n'),
    "a JSON list": lambda d: _put(d / "list.json", b"[1, 2, 3]\n"),
    "not JSON": lambda d: _put(d / "notes.json", b"hello\n"),
    "truncated document": lambda d: _put(d / "cut.json", b'{"metadata": {"schema_version": 1, '),
    "truncated journal": lambda d: _put(d / "cut.jsonl", b'{"seq":0,"ev":"run","t":17'),
    "other JSONL": lambda d: _put(d / "x.jsonl", b'{"a": 1}\n{"b": 2}\n'),
    "a folder": lambda d: d,
}


def _put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("command", ["show", "view", "tail"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_one_line(tmp_path: Path, command: str, case: str) -> None:
    """A missing or foreign file: one ``agentlog:`` line on stderr, exit 1, no traceback."""
    target = BAD[case](tmp_path)
    extra = ["--no-open"] if command == "view" else []
    r = _cli(command, str(target), *extra, cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("agentlog: "), r.stderr
    assert r.stdout == "" or command == "tail"
    assert not list(tmp_path.glob("*.html"))


@pytest.mark.parametrize(
    "args, says",
    [
        (["show", "ZZZZZZZZ"], "no run 'ZZZZZZZZ'"),
        (["show", "01M"], "no run '01M'"),  # a part shorter than 4 characters is no id
        (["show", "LAST_RUN_PREFIX"], "ambiguous"),
        (["show", "last"], None),
        (["view", "--no-open"], None),
        (["tail", "last"], "no run with a journal"),
    ],
)
def test_bad_run_id(runs: Runs, args: list[str], says: str | None) -> None:
    """An unknown or ambiguous run id, and ``tail`` when no run has a journal."""
    logs = runs.logs if says else runs.cwd / "empty"
    logs.mkdir(exist_ok=True)
    if args[0] == "tail":  # finished runs only
        logs = runs.cwd / "finished"
        logs.mkdir(exist_ok=True)
        (logs / runs.demo.name).write_bytes(runs.demo.read_bytes())
    if "LAST_RUN_PREFIX" in args:  # the millisecond-time part every run here shares
        args = [*args[:-1], load_document(runs.demo)["metadata"]["run_id"][:4]]
    r = _cli(*args, "--dir", str(logs), cwd=runs.cwd)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert (says or f"no runs in {logs}") in r.stderr


def test_empty_and_missing_log_folder(tmp_path: Path) -> None:
    """An empty folder lists nothing (``[]`` with --json); a missing one is an error."""
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _cli("ls", "--json", "--dir", str(empty), cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "[]\n")
    r = _cli("ls", "--dir", str(empty), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "" and "no runs in" in r.stderr
    r = _cli("ls", "--dir", str(tmp_path / "absent"), cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("agentlog: no log folder at ")


def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    """argparse's own complaints are one line too, with exit 2."""
    for args in (["ls", "--bogus"], ["ls", "-n", "many"], ["frobnicate"]):
        r = _cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "--help" in r.stderr


@pytest.mark.parametrize("command", ["ls", "show", "tail", "view", "path", "recover", "demo"])
def test_every_command_has_help(tmp_path: Path, command: str) -> None:
    r = _cli(command, "--help", cwd=tmp_path)
    assert r.returncode == 0 and f"usage: agentlog {command}" in r.stdout


def test_unreadable_file_in_folder_is_listed_not_fatal(tmp_path: Path, runs: Runs) -> None:
    """A foreign ``.json`` among the runs is shown as unreadable; the others still list."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / runs.demo.name).write_bytes(runs.demo.read_bytes())
    (logs / "zzz.json").write_text("{}")
    r = _cli("ls", "--json", "--dir", str(logs), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    statuses = sorted(row["status"] for row in json.loads(r.stdout))
    assert statuses == ["completed", "unreadable"]


# -- tail --------------------------------------------------------------------------------------
def test_tail_prints_journal_events(runs: Runs) -> None:
    """``tail`` of a crashed run's journal: one line per event, readable."""
    r = _cli("tail", *_dir(runs), cwd=runs.cwd)
    assert r.returncode == 0, r.stderr
    events = [json.loads(ln) for ln in runs.journal.read_text().splitlines()]
    lines = r.stdout.splitlines()
    assert len(lines) == len(events)
    assert "run " in lines[0] and "workflow crashy" in lines[0]
    assert any("iteration 1 started" in ln for ln in lines)
    assert any("planner" in ln and "planned" in ln for ln in lines)
    assert any("fixer" in ln and "ValueError: boom in the fixer" in ln for ln in lines)


def test_tail_of_a_finished_run_points_to_show(runs: Runs) -> None:
    r = _cli("tail", str(runs.demo), cwd=runs.cwd)
    assert r.returncode == 1 and "agentlog show" in r.stderr


def test_tail_follow_live_run(tmp_path: Path) -> None:
    """``tail -f last`` prints a running workflow's events as they arrive and stops by itself
    when the run's document is written."""
    logs = tmp_path / "logs"
    gate = tmp_path / "gate"
    script = _write(tmp_path, "slow", SLOW)
    host = subprocess.Popen(
        [sys.executable, str(script), "8", "0.1", str(gate)], env=script_env(logs),
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    tail = None
    try:
        _wait_for(lambda: list(logs.glob("slow_*.jsonl")))
        tail = subprocess.Popen(
            [sys.executable, "-m", "agentlog", "tail", "-f", "last"],
            env=script_env(logs, AGENTLOG_RECOVER="0"), cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert tail.stdout is not None
        seen: list[str] = []
        for line in tail.stdout:
            seen.append(line)
            if "step-2" in line:
                break
        assert host.poll() is None, "the host is still running (it waits for the gate)"
        assert any("workflow slow" in ln for ln in seen)
        gate.touch()
        rest, err = tail.communicate(timeout=30)
        assert tail.returncode == 0, err
        assert err == ""
        lines = seen + rest.splitlines(keepends=True)
        steps = [ln for ln in lines if "stepper" in ln]
        assert [f"done-{i}" in ln for i, ln in enumerate(steps)] == [True] * 8
        (doc_path,) = logs.glob("slow_*.json")
        assert lines[-1] == f"run ended: completed; document {doc_path}\n"
        validate_document(agentlog.load(doc_path))
    finally:
        for proc in (host, tail):
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.communicate()


def test_tail_follow_ctrl_c_is_quiet(tmp_path: Path) -> None:
    """Ctrl-C stops ``tail -f``: exit 130, nothing on stderr."""
    logs = tmp_path / "logs"
    script = _write(tmp_path, "slow", SLOW)
    host = subprocess.Popen(
        [sys.executable, str(script), "100", "0.2"], env=script_env(logs), cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    tail = subprocess.Popen(
        [sys.executable, "-m", "agentlog", "tail", "-f", "--dir", str(logs)],
        env=script_env(tmp_path / "cli-logs"), cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    ) if _wait_for(lambda: list(logs.glob("slow_*.jsonl"))) else None
    assert tail is not None and tail.stdout is not None
    try:
        assert "workflow slow" in tail.stdout.readline()
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=30)
        assert tail.returncode == 130
        assert err == ""
    finally:
        for proc in (host, tail):
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def _wait_for(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out")


# -- view --------------------------------------------------------------------------------------
@pytest.mark.skipif(
    importlib.util.find_spec("agentlog._report") is None, reason="the HTML report is not built yet"
)
def test_view_writes_beside_the_document(runs: Runs, tmp_path: Path) -> None:
    """``view --no-open``: the report goes beside the document (or to -o) and is named."""
    r = _cli("view", "--no-open", str(runs.demo), cwd=runs.cwd)
    assert r.returncode == 0, r.stderr
    beside = runs.demo.with_suffix(".html")
    assert r.stdout == f"{beside}\n" and beside.is_file()
    out = tmp_path / "report.html"
    r = _cli("view", "--no-open", "-o", str(out), "last", *_dir(runs), cwd=runs.cwd)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{out}\n" and out.is_file()
    beside.unlink()


# -- load --------------------------------------------------------------------------------------
def test_load_returns_valid_documents(runs: Runs) -> None:
    """``agentlog.load``: a document as written, and a crashed journal folded as recovery
    would fold it."""
    for path in (runs.invisible, runs.demo):
        assert agentlog.load(path) == validate_document(json.loads(path.read_text()))
    doc = validate_document(agentlog.load(runs.journal))
    assert doc["final_status"] == "crashed"
    assert doc["metadata"]["workflow_name"] == "crashy"
    assert doc["metadata"]["recovery"]["journal"] == runs.journal.name
    assert [e["error"] for e in doc["error_log"]] == ["boom in the fixer"]
    assert runs.journal.exists()


@pytest.mark.parametrize("case", sorted(BAD))
def test_load_raises_value_error(tmp_path: Path, case: str) -> None:
    target = BAD[case](tmp_path)
    with pytest.raises(ValueError) as info:
        agentlog.load(target)
    assert isinstance(info.value, _read.LoadError)
    message = str(info.value)
    assert "\n" not in message and str(target) in message


def test_load_keeps_a_torn_tail_out(runs: Runs, tmp_path: Path) -> None:
    """A journal cut mid-line after its header is a crash, not bad input: the torn line is
    left out and reported; ``show`` says so on stderr."""
    data = runs.journal.read_bytes()
    cut = tmp_path / runs.journal.name
    cut.write_bytes(data[: len(data) - 10])
    doc = validate_document(agentlog.load(cut))
    assert doc["metadata"]["recovery"]["dropped_tail_bytes"] > 0
    r = _cli("show", str(cut), cwd=tmp_path)
    assert r.returncode == 0 and "torn last line" in r.stderr


# -- the schema check --------------------------------------------------------------------------
def _keywords(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    _keywords(sub, found)
            else:
                _keywords(value, found)
    elif isinstance(node, list):
        for item in node:
            _keywords(item, found)
    return found


def test_validator_knows_every_keyword_the_schema_uses() -> None:
    schema = json.loads(_document.schema_path().read_text())
    used = _keywords(schema, set())
    assert used - _read.KEYWORDS == set()


def _mutations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    def changed(fn: Any) -> dict[str, Any]:
        copy = json.loads(json.dumps(doc))
        fn(copy)
        return copy

    ix = "iterations", 0, "interactions", 0
    return [
        doc,
        changed(lambda d: d.pop("final_status")),
        changed(lambda d: d.update(extra=1)),
        changed(lambda d: d.update(final_status="")),
        changed(lambda d: d["metadata"].update(schema_version=2)),
        changed(lambda d: d["metadata"].update(verbosity=7)),
        changed(lambda d: d["metadata"].update(start_time="yesterday")),
        changed(lambda d: d["metadata"].update(end_time=None)),
        changed(lambda d: d["metadata"]["totals"].update(llm_calls=-1)),
        changed(lambda d: d["metadata"]["totals"].update(errors=True)),
        changed(lambda d: d["metadata"]["totals"].update(cost_usd=None)),
        changed(lambda d: d["metadata"].update(new_field={"any": "thing"})),
        changed(lambda d: d["iterations"][0].update(interactions="none")),
        changed(lambda d: d["iterations"][0]["interactions"][0].pop("agent_name")),
        changed(lambda d: _at(d, ix).update(input_data=None, output_data=[1, {"x": 2}])),
        changed(lambda d: _llm(d).update(streamed="no")),
        changed(lambda d: _llm(d).update(usage=None)),
        changed(lambda d: _llm(d)["usage"].update(input_tokens=1.5)),
        changed(lambda d: d["error_log"].append({"timestamp": "2026-01-01T00:00:00Z",
                                                 "error": "e", "type": "E"})),
        changed(lambda d: d["error_log"].append({"error": "e", "type": "E"})),
        changed(lambda d: d["resources_used"].append({"resource": "r", "kind": "file",
                                                      "first_time": "2026-01-01T00:00:00Z",
                                                      "count": 0})),
    ]


def _llm(doc: dict[str, Any]) -> dict[str, Any]:
    """The first LLM record (the demo journals them in batches: their place varies)."""
    return next(
        h["llm"] for it in doc["iterations"] for ix in it["interactions"]
        for h in (ix, *ix["actions"]) if h.get("llm")
    )


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def test_validator_agrees_with_jsonschema(runs: Runs) -> None:
    """The small validator ``load`` uses accepts and rejects exactly what jsonschema does."""
    schema = json.loads(_document.schema_path().read_text())
    reference = jsonschema.Draft202012Validator(schema)
    verdicts = []
    for doc in _mutations(load_document(runs.demo)):
        ours = _read.problem(doc)
        theirs = reference.is_valid(doc)
        assert (ours is None) == theirs, (ours, doc)
        verdicts.append(theirs)
    assert True in verdicts and False in verdicts


# -- the exit line and the demo's hint ---------------------------------------------------------
def test_exit_line_suggests_view(runs: Runs, tmp_path: Path) -> None:
    """The exit line: path, counts, then ``agentlog view last``; a document written elsewhere
    than the log folder is named instead."""
    assert runs.exit_line.startswith(f"agentlog: {runs.invisible} (")
    assert runs.exit_line.endswith("0 errors); see it: agentlog view last")
    assert runs.demo_stdout.splitlines()[-1] == "see it: agentlog view last"
    script = _write(tmp_path, "elsewhere", """
        import agentlog
        logger = agentlog.AutoIterationLogger("elsewhere", logs_dir="out")
        logger.log_agent_run("a", "in", "out")
    """)
    proc = subprocess.run(
        [sys.executable, str(script)], env=script_env(tmp_path / "logs"), cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    (doc,) = (tmp_path / "out").glob("*.json")
    load_document(doc)
    name = Path("out") / doc.name
    assert proc.stderr == f"agentlog: {name} (1 iteration, 0 LLM calls, 0 errors); " \
        f"see it: agentlog view {name}\n"


def test_runs_started_in_one_second_order_by_run_id(runs: Runs, tmp_path: Path) -> None:
    """File names hold the start second only; within it, the run id (a ULID) orders runs,
    not the time a file was last written."""
    logs = tmp_path / "logs"
    logs.mkdir()
    doc = load_document(runs.demo)
    for name, run_id, mtime in (("early", "01M8AAAAAAAAAAAAAAAAAAAAAA", 2e9),
                                ("later", "01M8ZZZZZZZZZZZZZZZZZZZZZZ", 1e9)):
        doc["metadata"]["run_id"] = run_id
        path = logs / f"{name}_20261129_101500_{run_id[-8:]}.json"
        path.write_text(json.dumps(validate_document(doc)))
        os.utime(path, (mtime, mtime))
    r = _cli("ls", "--json", "--dir", str(logs), cwd=tmp_path)
    assert [row["run_id"][-1] for row in json.loads(r.stdout)] == ["Z", "A"]
    r = _cli("show", "--dir", str(logs), cwd=tmp_path)
    assert "01M8ZZZZZZZZZZZZZZZZZZZZZZ" in r.stdout.splitlines()[0]
