"""Resources the workflow loads, recorded automatically (issue 5; TESTPLAN A11, D1).

In-process tests drive the real hooks, which ``import agentlog`` in conftest installed in
this process, with real files in ``tmp_path`` and a real loopback HTTP server; process-
level behaviour (import order, AGENTLOG_DISABLE, pickling as without agentlog) runs in
subprocesses. Reads made before a test are settled first, so each capture holds only
what its block loaded.

Covers A11: the wrapped ``open`` copies, deep-copies and pickles as the builtin; agentlog's own
    reads and log folder are never recorded as resources.
Covers D1: secret query parameters and userinfo in fetched URLs never reach the journal or
    the document; the rest of the URL stays.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import agentlog
from agentlog import api
from agentlog.testing import capture
from helpers import script_env, validate_document

TESTS = str(Path(__file__).resolve().parent)
CANARY = "sk-CANARY-5f0c2d9e-resources-0000"


def entries(logs: Any) -> dict[str, dict[str, Any]]:
    """resources_used of the block's events, folded and schema-checked, by resource."""
    doc = validate_document(logs.document())
    found = {r["resource"]: r for r in doc["resources_used"]}
    assert len(found) == len(doc["resources_used"]), "one resource under two kinds"
    return found


def fresh_capture() -> Any:
    api.RECORDER.settle()  # counts pending from earlier reads go out before the block
    return capture()


# -- a loopback server ---------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/data.json")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"a": [1, 2, 3]}' if "json" in self.path else b"a,b\n1,2\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


# -- files -----------------------------------------------------------------------------------
def test_three_reads_of_one_file_make_one_entry_with_count_three(tmp_path: Path) -> None:
    """open() three times: one ``file`` entry, count 3, its size, first <= last."""
    path = tmp_path / "prompt.txt"
    path.write_text("You are a helpful agent.\n")
    with fresh_capture() as logs:
        for _ in range(3):
            with open(path) as f:
                assert f.read().startswith("You are")
    entry = entries(logs)[str(path)]
    assert (entry["kind"], entry["loader"], entry["count"]) == ("file", "open", 3)
    assert entry["bytes"] == path.stat().st_size
    assert entry["first_time"] <= entry["last_time"]


def test_pathlib_and_io_open_are_recorded_in_read_modes_only(tmp_path: Path,
                                                              monkeypatch: Any) -> None:
    """read_text/read_bytes/Path.open/io.open count; writes, appends and fds do not; a
    relative path is named absolute."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data.bin"
    data.write_bytes(b"\x00\x01")
    with fresh_capture() as logs:
        data.read_bytes()
        Path("data.bin").read_text(errors="replace")
        with data.open("rb"), io.open("data.bin", "rb"), open("data.bin", "r+b"):  # noqa: UP020
            pass
        with open(tmp_path / "out.txt", "w") as f:
            f.write("x")
        with open(tmp_path / "out.txt", "a") as f, open(tmp_path / "new.txt", "x") as g:
            f.write("y")
            g.write("z")
        fd = os.open(data, os.O_RDONLY)
        with open(fd, "rb") as f:
            f.read()
    found = entries(logs)
    assert list(found) == [str(data)]
    assert found[str(data)]["count"] == 5


def test_interpreter_library_system_and_agentlog_files_are_not_recorded(tmp_path: Path) -> None:
    """No noise: sources, the interpreter's prefix, site-packages, /proc, /dev, agentlog's
    own package and log folder are all left out."""
    import jsonschema

    site_file = next(
        p for p in Path(jsonschema.__file__).parent.rglob("*") if p.is_file()
        and p.suffix not in (".py", ".pyc")
    )
    prefix_file = next(p for p in Path(sys.base_prefix, "lib").rglob("*.txt"))
    log_dir = api.RECORDER.run.journal_dir
    assert log_dir is not None
    own_log = log_dir / "user-made.txt"
    own_log.write_text("in the log folder")
    script = tmp_path / "tool.py"
    script.write_text("x = 1\n")
    try:
        with fresh_capture() as logs:
            for path in (site_file, prefix_file, own_log, script, Path(agentlog.__file__),
                         Path(agentlog.__file__).parent / "schema" / "document-v1.schema.json",
                         Path("/proc/self/status"), Path("/dev/null")):
                with open(path, "rb") as f:
                    f.read(10)
            with open(tmp_path / "kept.txt", "w") as f:
                f.write("data")
            Path(tmp_path / "kept.txt").read_text()
    finally:
        own_log.unlink()
    assert list(entries(logs)) == [str(tmp_path / "kept.txt")]


def test_entry_is_attributed_to_the_iteration_and_agent_that_first_loaded_it(
    tmp_path: Path,
) -> None:
    """``where`` names the first loader's iteration and agent; later loads only count."""
    path = tmp_path / "notes.md"
    path.write_text("# notes")

    @agentlog.agent("researcher")
    def research() -> str:
        return path.read_text()

    with fresh_capture() as logs:
        with agentlog.iteration():
            research()
        number = logs.of("iteration_start")[0]["number"]
        path.read_text()
    entry = entries(logs)[str(path)]
    assert entry["where"] == {"iteration_number": number, "agent_name": "researcher"}
    assert entry["count"] == 2


def test_verbosity_zero_records_nothing(tmp_path: Path) -> None:
    """At verbosity 0 the hooks pass straight through."""
    path = tmp_path / "quiet.txt"
    path.write_text("q")
    with fresh_capture() as logs:
        agentlog.set_logging(True, verbosity=0)
        try:
            path.read_text()
        finally:
            agentlog.set_logging(True, verbosity=1)
    assert entries(logs) == {}


def test_manual_add_resource_merges_with_the_automatic_entry(tmp_path: Path,
                                                             monkeypatch: Any) -> None:
    """add_resource("data.csv") and open("data.csv") are one entry; the earlier one names
    the loader."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    with fresh_capture() as logs:
        agentlog.add_resource("data.csv")
        for _ in range(2):
            with open("data.csv") as f:
                f.read()
        agentlog.add_resource("squad-v2", kind="dataset")
    found = entries(logs)
    entry = found[str(tmp_path / "data.csv")]
    assert (entry["kind"], entry["count"], entry["loader"]) == ("file", 3, "manual")
    assert found["squad-v2"]["kind"] == "dataset"
    assert len(found) == 2


def test_threads_count_every_read(tmp_path: Path) -> None:
    """Reads from many threads at once: none lost from the count."""
    path = tmp_path / "shared.txt"
    path.write_text("s")

    def work() -> None:
        for _ in range(200):
            with open(path) as f:
                f.read()

    with fresh_capture() as logs:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert entries(logs)[str(path)]["count"] == 800


def test_open_wrapper_looks_like_the_builtin() -> None:
    """A11 in this process: deepcopy/copy give ``open`` itself, pickling round-trips to
    it, ``open is io.open``, the signature is the builtin's."""
    import inspect

    assert hasattr(open, "__wrapped__"), "the file hook is installed in the test process"
    assert open is io.open
    assert copy.deepcopy(open) is open and copy.copy(open) is open
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(open, protocol)) is open
    assert (open.__name__, open.__module__, open.__qualname__) == ("open", "io", "open")
    assert inspect.signature(open) == inspect.signature(open.__wrapped__)


# -- URLs --------------------------------------------------------------------------------------
def test_requests_httpx_and_urllib_fetches_are_recorded_once_each(server: str) -> None:
    """Each library's fetch is one ``url`` entry under the URL asked for (a redirect
    counts once), with its size; a failed connection records nothing."""
    import urllib.request

    import httpx2
    import requests

    with fresh_capture() as logs:
        assert requests.get(f"{server}/redirect?via=requests").json() == {"a": [1, 2, 3]}
        with requests.Session() as s:
            s.get(f"{server}/r.csv").raise_for_status()
        assert httpx2.get(f"{server}/h.csv").status_code == 200
        with httpx2.Client(base_url=server, follow_redirects=True) as client:
            client.get("/redirect?via=httpx")
            with client.stream("GET", "/s.csv") as response:
                response.read()

        async def fetch() -> None:
            async with httpx2.AsyncClient() as aclient:
                await aclient.get(f"{server}/a.csv")
                async with aclient.stream("GET", f"{server}/as.csv") as response:
                    await response.aread()

        asyncio.run(fetch())
        with urllib.request.urlopen(f"{server}/redirect?via=urllib") as response:
            response.read()
        with pytest.raises(requests.ConnectionError):
            requests.get("http://127.0.0.1:9/refused")
    found = entries(logs)
    assert {(k.removeprefix(server), v["loader"]) for k, v in found.items()} == {
        ("/redirect?via=requests", "requests"), ("/r.csv", "requests"),
        ("/h.csv", "httpx2"), ("/redirect?via=httpx", "httpx2"), ("/s.csv", "httpx2"),
        ("/a.csv", "httpx2"), ("/as.csv", "httpx2"), ("/redirect?via=urllib", "urllib"),
    }
    assert all(v["kind"] == "url" and v["count"] == 1 for v in found.values())
    assert found[f"{server}/r.csv"]["bytes"] == 8
    assert found[f"{server}/s.csv"]["bytes"] == 8


def test_plain_httpx_is_recorded_like_httpx2(server: str) -> None:
    """The original httpx package, sync and async, where installed."""
    httpx = pytest.importorskip("httpx")

    with fresh_capture() as logs:
        httpx.get(f"{server}/x.csv")

        async def fetch() -> None:
            async with httpx.AsyncClient() as client:
                await client.get(f"{server}/y.csv")

        asyncio.run(fetch())
    assert {k.removeprefix(server): v["loader"] for k, v in entries(logs).items()} == {
        "/x.csv": "httpx", "/y.csv": "httpx"}


def test_url_secrets_are_scrubbed(server: str) -> None:
    """D1: a key in the query string and a password in the userinfo never reach the
    journal or the document; the rest of the URL stays."""
    import requests

    port = server.rsplit(":", 1)[1]
    with fresh_capture() as logs:
        requests.get(f"{server}/q.json?key={CANARY}&page=2")
        requests.get(f"http://user:{CANARY}@127.0.0.1:{port}/u.json")
    names = list(entries(logs))
    assert CANARY not in json.dumps(list(logs))
    assert f"{server}/q.json?key=[REDACTED]&page=2" in names
    assert any(n.endswith(f"[REDACTED]@127.0.0.1:{port}/u.json") for n in names)
    writer = api.RECORDER.run.writer
    assert writer is not None
    writer.flush()
    assert CANARY.encode() not in writer.read_back()


def test_llm_call_records_no_url_and_no_file(tmp_path: Path) -> None:
    """The SDK's own HTTP (httpx2 under openai) is the LLM call, not a resource."""
    from fake_llm import FakeLLM, Reply, openai_client

    with FakeLLM() as srv, openai_client(srv) as client:
        srv.script(Reply(text="hi"))
        with fresh_capture() as logs:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    assert len(logs.of("interaction")) + len(logs.of("action")) >= 1
    assert entries(logs) == {}


def test_loads_inside_a_recorded_llm_call_are_quiet(tmp_path: Path, server: str) -> None:
    """What runs inside the SDK's request (here the user's own httpx event hook, which
    reads a file and fetches a URL) belongs to the LLM call: no resource entries. The
    same hook outside an LLM call records both."""
    import httpx2

    from fake_llm import FakeLLM, Reply, openai_client

    token_file = tmp_path / "token.txt"
    token_file.write_text("t")

    def hook(request: Any) -> None:
        token_file.read_text()
        httpx2.get(f"{server}/token.json")

    with FakeLLM() as srv, httpx2.Client(event_hooks={"request": [hook]}) as http, \
            openai_client(srv, http_client=http) as client:
        srv.script(Reply(text="hi"))
        with fresh_capture() as inside:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
        with fresh_capture() as outside:
            hook(None)
    assert entries(inside) == {}
    assert set(entries(outside)) == {str(token_file), f"{server}/token.json"}


# -- pandas ------------------------------------------------------------------------------------
def test_pandas_read_is_one_entry_and_its_inner_open_is_quiet(tmp_path: Path,
                                                              server: str) -> None:
    """read_csv of a path: one entry (loader pandas.read_csv), not one more for the
    open() pandas does inside; a buffer records nothing; a URL is a ``url`` entry."""
    pd = pytest.importorskip("pandas")
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with fresh_capture() as logs:
        assert len(pd.read_csv(path)) == 2
        assert len(pd.read_csv(io.StringIO("a\n1\n"))) == 1
        assert pd.read_json(f"{server}/remote.json").shape == (3, 1)
    found = entries(logs)
    assert set(found) == {str(path), f"{server}/remote.json"}
    assert (found[str(path)]["loader"], found[str(path)]["count"]) == ("pandas.read_csv", 1)
    assert found[str(path)]["bytes"] == path.stat().st_size
    assert found[f"{server}/remote.json"]["kind"] == "url"


# -- LangChain ---------------------------------------------------------------------------------
def test_langchain_loader_is_one_loader_entry(tmp_path: Path) -> None:
    """A BaseLoader subclass defined after install: load() and lazy_load() each count
    once under kind ``loader``; the files it opens inside stay quiet."""
    base = pytest.importorskip("langchain_core.document_loaders.base")
    from langchain_core.documents import Document

    path = tmp_path / "doc.txt"
    path.write_text("one\ntwo\n")

    class LinesLoader(base.BaseLoader):  # type: ignore[misc, name-defined]
        def __init__(self, file_path: Path) -> None:
            self.file_path = file_path

        def lazy_load(self) -> Iterator[Any]:
            with open(self.file_path) as f:
                for line in f:
                    yield Document(page_content=line)

    with fresh_capture() as logs:
        assert len(LinesLoader(path).load()) == 2
        assert len(list(LinesLoader(path).lazy_load())) == 2
    found = entries(logs)
    assert list(found) == [str(path)]
    entry = found[str(path)]
    assert (entry["kind"], entry["count"]) == ("loader", 2)
    assert entry["loader"].endswith("LinesLoader")


# -- processes ---------------------------------------------------------------------------------
SERVE = """
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
URL = f"http://127.0.0.1:{srv.server_address[1]}"
"""

WORKFLOW = """
import sys
sys.path.insert(0, {tests!r})
{first}
{second}
from pathlib import Path
from fake_llm import FakeLLM, Reply, openai_client
{serve}
prompt = Path("prompt.txt").read_text()
with open("data.csv") as f:
    rows = f.read().splitlines()
frame = pandas.read_csv("data.csv")
assert requests.get(URL + "/by-requests.json").json() == {{"ok": True}}
assert httpx2.get(URL + "/by-httpx2.json").json() == {{"ok": True}}
with FakeLLM() as llm, openai_client(llm) as client:
    llm.script(Reply(text="a plan"))
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}])
srv.shutdown()
print(URL)
"""


def _workflow(tmp_path: Path, agentlog_first: bool) -> str:
    libs = "import requests, httpx2, pandas"
    first, second = ("import agentlog", libs) if agentlog_first else (libs, "import agentlog")
    return WORKFLOW.format(tests=TESTS, first=first, second=second, serve=SERVE)


@pytest.mark.parametrize("agentlog_first", [True, False], ids=["agentlog-first", "libs-first"])
def test_workflow_document_lists_exactly_what_it_loaded(run: Any, tmp_path: Path,
                                                        agentlog_first: bool) -> None:
    """Acceptance: a prompt file, a CSV by open and by pandas, two URLs and one LLM call;
    the document lists exactly those resources, in both import orders."""
    pytest.importorskip("pandas")
    (tmp_path / "prompt.txt").write_text("Plan a trip.\n")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    result = run(_workflow(tmp_path, agentlog_first))
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    doc = result.doc()
    assert doc["metadata"]["totals"]["llm_calls"] == 1
    found = {(r["resource"], r["kind"]): r for r in doc["resources_used"]}
    assert set(found) == {
        (str(tmp_path / "prompt.txt"), "file"), (str(tmp_path / "data.csv"), "file"),
        (url + "/by-requests.json", "url"), (url + "/by-httpx2.json", "url"),
    }
    csv = found[(str(tmp_path / "data.csv"), "file")]
    assert (csv["count"], csv["loader"]) == (2, "open")
    assert found[(url + "/by-httpx2.json", "url")]["loader"] == "httpx2"


PROCESS_CHECKS = """
import builtins, copy, io, pickle, sys
import agentlog
from agentlog import api
import requests
wrapped = hasattr(builtins.open, "__wrapped__")
patched_requests = hasattr(requests.Session.send, "__agentlog_patched__")
pickles = [pickle.dumps(open, p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
same = copy.deepcopy(open) is open and pickle.loads(pickles[-1]) is open
Path = __import__("pathlib").Path
Path("read.txt").read_text()
agentlog.save_log()
agentlog.save_log()
agentlog.set_logging(False)
off = (open is io.open, hasattr(open, "__wrapped__"), type(open).__name__)
agentlog.set_logging(True)
print(repr((wrapped, patched_requests, same, off, hasattr(open, "__wrapped__"))))
sys.stdout.flush()
sys.stderr.write(repr(pickles) + "\\n")
"""


def test_pickle_and_install_in_a_process_and_disable(run: Any, tmp_path: Path) -> None:
    """A11 and settings: ``pickle.dumps(open)`` gives the same bytes as without agentlog;
    ``set_logging(False)`` puts the builtin back and ``True`` wraps it again; agentlog's
    own reads (save_log) are not resources; AGENTLOG_DISABLE=open,requests turns both
    hooks off."""
    (tmp_path / "read.txt").write_text("r")
    bare = subprocess.run(
        [sys.executable, "-c", "import pickle, sys; sys.stderr.write(repr("
         "[pickle.dumps(open, p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]) + '\\n')"],
        capture_output=True, text=True, env=script_env(tmp_path / "bare", AGENTLOG="0"),
        check=True,
    )
    on = run(PROCESS_CHECKS)
    assert on.returncode == 0, on.stderr
    assert on.stdout.strip() == repr(
        (True, True, True, (True, False, "builtin_function_or_method"), True))
    assert on.host_stderr() == bare.stderr
    doc = on.doc()
    assert [r["resource"] for r in doc["resources_used"]] == [str(tmp_path / "read.txt")]
    for path in (tmp_path / "logs").iterdir():
        path.unlink()
    off = run(PROCESS_CHECKS, AGENTLOG_DISABLE="open,requests")
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == repr(
        (False, False, True, (True, False, "builtin_function_or_method"), False))
    assert off.doc()["resources_used"] == []


HF_WORKFLOW = """
import json
from pathlib import Path
import agentlog
from transformers import AutoConfig, AutoTokenizer, BertConfig, PreTrainedTokenizerFast
from tokenizers import Tokenizer, models, pre_tokenizers

folder = Path("tiny-model")
folder.mkdir()
(folder / "config.json").write_text(json.dumps({
    "model_type": "bert", "vocab_size": 4, "hidden_size": 8, "num_hidden_layers": 1,
    "num_attention_heads": 1, "intermediate_size": 8}))
vocab = {"[UNK]": 0, "hello": 1, "world": 2, "[PAD]": 3}
tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]"
                        ).save_pretrained(folder)
assert AutoConfig.from_pretrained("tiny-model").model_type == "bert"
assert AutoTokenizer.from_pretrained("tiny-model")("hello world")["input_ids"] == [1, 2]
BertConfig.from_pretrained(str(folder.resolve()))
"""


def test_transformers_from_pretrained_is_one_model_entry(run: Any, tmp_path: Path) -> None:
    """Where transformers is installed (no torch needed): configs and tokenizers loaded
    from a local folder are one ``model`` entry; the files read inside stay quiet."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    result = run(HF_WORKFLOW)
    assert result.returncode == 0, result.stderr
    [entry] = result.doc()["resources_used"]
    assert (entry["resource"], entry["kind"], entry["count"]) == (
        str(tmp_path / "tiny-model"), "model", 3)
    assert entry["loader"] == "transformers.AutoConfig"


DATASETS_WORKFLOW = """
import os
from pathlib import Path
import agentlog
from datasets import load_dataset

Path("rows.csv").write_text("question,answer\\nfour plus five,nine\\ntwo plus two,four\\n")
rows = load_dataset("csv", data_files="rows.csv", cache_dir="hf-cache", split="train")
assert rows.num_rows == 2 and rows[0]["answer"] == "nine"
load_dataset("csv", data_files={"train": "rows.csv"}, cache_dir="hf-cache")
"""


def test_load_dataset_is_one_dataset_entry(run: Any, tmp_path: Path) -> None:
    """Where datasets is installed: a packaged builder reading a local file is one
    ``dataset`` entry for that file; what the builder reads and writes inside stays quiet."""
    pytest.importorskip("datasets")
    result = run(DATASETS_WORKFLOW, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stderr
    [entry] = result.doc()["resources_used"]
    assert (entry["resource"], entry["kind"], entry["count"]) == (
        str(tmp_path / "rows.csv"), "dataset", 2)
    assert entry["loader"] == "datasets.load_dataset"
