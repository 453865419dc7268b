"""Import order, aliasing, double install and failing hooks (TESTPLAN A7, A8, A9, A10).

Everything here is process-level, so each host runs in a fresh interpreter; the hosts
are started together by one module fixture (two cores: wall time is what counts) and
each test reads the part it is about. Every host talks to its own ``FakeLLM`` and
prints the requests that server saw; the document must hold exactly that many records.

Covers A7: agentlog before or after the SDK, ``from openai import OpenAI`` aliases, subclasses,
    bound methods, ``importlib.reload``: recorded, or one warning, never an error.
Covers A8: ``import agentlog`` twice, ``set_logging(True)`` twice, a subclass wrapping the
    patched ``request``: records equal the fake server's request count.
Covers A9: the adapter's install raises inside the post-import hook: ``import openai`` still
    succeeds, calls work, error_log names the failure.
Covers A7: a namespace package (``mistralai`` 3.x) fires its hook and looks untouched.
Covers A10: 8 threads x 200 hooked imports whose hooks import more, faulthandler armed at 10 s:
    no dump, every hook ran once per import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import llm_scenarios as ls
from helpers import Result, run_script, script_env

TESTS = str(ls.TESTS)

AGENTLOG_FIRST = f"""\
import sys
sys.path.insert(0, {TESTS!r})
import agentlog
import agentlog  # twice: A8
SDKS = ("openai", "anthropic", "httpx2", "pydantic")
ADAPTERS = ("agentlog.integrations.openai", "agentlog.integrations.anthropic",
            "agentlog.integrations._stainless", "agentlog.integrations._llm")
seen = {{"after_agentlog": [m for m in SDKS + ADAPTERS if m in sys.modules]}}
import openai
seen["after_openai"] = [m for m in ADAPTERS if m in sys.modules]
import anthropic
seen["after_anthropic"] = [m for m in ADAPTERS if m in sys.modules]

agentlog.set_logging(True)
agentlog.set_logging(True)

from fake_llm import FakeLLM, anthropic_client, openai_client
import llm_scenarios as ls

with FakeLLM() as srv:
    with openai_client(srv) as oa, anthropic_client(srv) as an:
        ls.basic_calls(srv, oa, an)

        class Wrapped(openai.OpenAI):  # a subclass that wraps the patched method itself
            def request(self, *args, **kwargs):
                return super().request(*args, **kwargs)

        with Wrapped(api_key="k-not-secret-000", base_url=srv.openai_base_url,
                     max_retries=0) as wrapped:
            ls.basic_calls(srv, wrapped)
        # Off, then on twice: the patches go back once and come back once.
        agentlog.set_logging(False)
        agentlog.set_logging(True)
        agentlog.set_logging(True)
        agentlog.integrations.install_all()
        ls.basic_calls(srv, oa, an)
    ls.report(srv, seen=seen)
"""

SDK_FIRST = f"""\
import sys
sys.path.insert(0, {TESTS!r})
import openai
import anthropic
from openai import OpenAI
from anthropic import Anthropic as Alias
from fake_llm import FakeLLM
srv = FakeLLM().start()


class MyOpenAI(OpenAI):
    pass


early = OpenAI(api_key="k-not-secret-000", base_url=srv.openai_base_url, max_retries=0)
create = early.chat.completions.create  # a bound method taken before agentlog
import agentlog
import llm_scenarios as ls

seen = [m for m in ("agentlog.integrations.openai", "agentlog.integrations.anthropic")
        if m in sys.modules]
try:
    create(model=ls.MODEL, messages=ls.MSGS)
    with MyOpenAI(api_key="k-not-secret-000", base_url=srv.openai_base_url,
                  max_retries=0) as sub, Alias(api_key="k-not-secret-000",
                                               base_url=srv.anthropic_base_url,
                                               max_retries=0) as an:
        ls.basic_calls(srv, sub, an)
    early.close()
    ls.report(srv, seen=seen)
finally:
    srv.stop()
"""

RELOAD = f"""\
import importlib, sys
sys.path.insert(0, {TESTS!r})
import agentlog
import openai
from fake_llm import FakeLLM, openai_client
import llm_scenarios as ls

with FakeLLM() as srv:
    with openai_client(srv) as oa:
        ls.basic_calls(srv, oa)
    before = srv.count()
    importlib.reload(openai)
    with openai_client(srv) as oa:
        ls.basic_calls(srv, oa)
    ls.report(srv, before=before)
"""

DISABLED = f"""\
import sys
sys.path.insert(0, {TESTS!r})
import agentlog
import openai
import anthropic
from fake_llm import FakeLLM, anthropic_client, openai_client
import llm_scenarios as ls

with FakeLLM() as srv:
    with openai_client(srv) as oa, anthropic_client(srv) as an:
        ls.basic_calls(srv, oa, an)
    marked = [getattr(m._base_client.SyncAPIClient.request, "__agentlog_patched__", False)
              for m in (openai, anthropic)]
    ls.report(srv, adapter="agentlog.integrations.openai" in sys.modules, marked=marked)
"""

# A9: the openai adapter's install raises; the user's import and calls must not notice.
FAILING_INSTALL = f"""\
import sys
sys.path.insert(0, {TESTS!r})
import agentlog
import agentlog.integrations.openai as adapter


def install(module):
    raise KeyError("injected: the openai adapter cannot install")


adapter.install = install
import openai
from fake_llm import FakeLLM, openai_client
import llm_scenarios as ls

with FakeLLM() as srv:
    with openai_client(srv) as oa:
        reply = oa.chat.completions.create(model=ls.MODEL, messages=ls.MSGS)
        ls.basic_calls(srv, oa)
    marked = getattr(openai._base_client.SyncAPIClient.request, "__agentlog_patched__", False)
    ls.report(srv, content=reply.choices[0].message.content, marked=marked)
"""

# A10: 8 threads x 200 imports of hooked modules whose hooks import more modules, while
# another thread imports the real SDKs (their hooks patch them). A deadlock trips the
# faulthandler, which dumps every thread's stack and exits the process.
IMPORT_STORM = f"""\
import faulthandler, importlib, sys, tempfile, threading
from pathlib import Path
faulthandler.dump_traceback_later(10, exit=True)
sys.path.insert(0, {TESTS!r})
import agentlog
from agentlog._imports import when_imported

THREADS, ROUNDS = 8, 200
root = Path(tempfile.mkdtemp(dir="."))
for t in range(THREADS):
    (root / f"storm_outer_{{t}}.py").write_text("VALUE = 1\\n")
    (root / f"storm_inner_{{t}}.py").write_text("import json\\nVALUE = 2\\n")
(root / "storm_shared.py").write_text("VALUE = 3\\n")
sys.path.insert(0, str(root))
counts = [[0, 0] for _ in range(THREADS)]
errors = []
start = threading.Barrier(THREADS + 1)


def worker(t):
    outer, inner = f"storm_outer_{{t}}", f"storm_inner_{{t}}"

    def on_inner(module):
        counts[t][1] += 1

    def on_outer(module):
        counts[t][0] += 1
        sys.modules.pop(inner, None)
        when_imported(inner, on_inner)
        importlib.import_module(inner)  # a hook that imports another (hooked) module
        importlib.import_module("storm_shared")

    try:
        start.wait()
        for _ in range(ROUNDS):
            sys.modules.pop(outer, None)
            when_imported(outer, on_outer)
            importlib.import_module(outer)
    except BaseException as exc:
        errors.append(repr(exc))


def sdks():
    start.wait()
    import openai  # its hook installs the adapter, which imports more modules


threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
threads.append(threading.Thread(target=sdks))
for th in threads:
    th.start()
for th in threads:
    th.join()
faulthandler.cancel_dump_traceback_later()
import openai
marked = [getattr(openai._base_client.SyncAPIClient.request, "__agentlog_patched__", False)]
print("RESULT", __import__("json").dumps({{"counts": counts, "errors": errors,
                                          "marked": marked}}))
"""

# A namespace package (no __init__.py; mistralai 3.x is one) has no loader of its own:
# the hook must still fire, and the module must look as it does without agentlog.
NAMESPACE = """\
import importlib, json, sys, tempfile
from pathlib import Path
root = Path(tempfile.mkdtemp(dir="."))
(root / "nspkg" / "sub").mkdir(parents=True)
(root / "nspkg" / "sub" / "mod.py").write_text("VALUE = 1\\n")
sys.path.insert(0, str(root))
fired = []
if sys.argv[1:] != ["bare"]:
    import agentlog
    from agentlog._imports import when_imported
    when_imported("nspkg", lambda m: fired.append(m.__name__))
    when_imported("nspkg.sub", lambda m: fired.append(m.__name__))
import nspkg.sub.mod
importlib.reload(nspkg)
print("RESULT", json.dumps({"fired": fired, "file": repr(nspkg.__file__),
                            "path": list(nspkg.__path__), "value": nspkg.sub.mod.VALUE,
                            "loader": type(nspkg.__spec__.loader).__name__,
                            "same_loader": nspkg.__loader__ is nspkg.__spec__.loader}))
"""

HOSTS: dict[str, tuple[str, dict[str, str]]] = {
    "agentlog_first": (AGENTLOG_FIRST, {}),
    "sdk_first": (SDK_FIRST, {}),
    "reload": (RELOAD, {}),
    "disabled": (DISABLED, {"AGENTLOG_DISABLE": "openai"}),
    # Not strict: the injected fault must be swallowed as it would be for a user.
    "failing_install": (FAILING_INSTALL, {"AGENTLOG_STRICT": "0"}),
    "import_storm": (IMPORT_STORM, {}),
    "namespace": (NAMESPACE, {}),
}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("imports")
    jobs = [
        (root / name, source, script_env(root / name / "logs", **extra))
        for name, (source, extra) in HOSTS.items()
    ]
    return dict(zip(HOSTS, ls.run_hosts(jobs), strict=True))


def _ok(result: Result) -> tuple[dict[str, Any], dict[str, Any]]:
    """The host's RESULT line and its one valid document; the host ran cleanly."""
    assert result.returncode == 0, result.stderr
    assert result.host_stderr() == "", result.stderr
    return ls.result_of(result.stdout), result.doc()


def _providers(doc: dict[str, Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for llm in ls.records(doc):
        found[llm["provider"]] = found.get(llm["provider"], 0) + 1
    return found


def test_agentlog_first_imports_no_sdk_and_no_adapter(hosts: dict[str, Result]) -> None:
    """A7: ``import agentlog`` imports neither SDK nor any adapter; each adapter arrives
    with its own SDK, and not before."""
    seen = _ok(hosts["agentlog_first"])[0]["seen"]
    assert seen["after_agentlog"] == []
    assert seen["after_openai"] == [
        "agentlog.integrations.openai",
        "agentlog.integrations._stainless",
        "agentlog.integrations._llm",
    ]
    assert seen["after_anthropic"] == [
        "agentlog.integrations.openai",
        "agentlog.integrations.anthropic",
        "agentlog.integrations._stainless",
        "agentlog.integrations._llm",
    ]


def test_agentlog_first_records_each_request_once(hosts: dict[str, Result]) -> None:
    """A7/A8: SDKs imported after agentlog are recorded; ``import agentlog`` twice,
    ``set_logging(True)`` twice, an off/on cycle and a subclass whose ``request`` wraps
    the patched one still give exactly one record per request."""
    result, doc = _ok(hosts["agentlog_first"])
    assert result["openai"] == 6 and result["anthropic"] == 4
    assert _providers(doc) == {"openai": 6, "anthropic": 4}
    assert doc["metadata"]["totals"]["llm_calls"] == 10
    assert doc["error_log"] == []


def test_sdk_first_aliases_subclasses_and_bound_methods_are_recorded(
    hosts: dict[str, Result],
) -> None:
    """A7: the SDKs, ``from openai import OpenAI``, a subclass and a bound ``create`` all
    taken before ``import agentlog``: the adapters install at once, every call records."""
    result, doc = _ok(hosts["sdk_first"])
    assert result["seen"] == ["agentlog.integrations.openai", "agentlog.integrations.anthropic"]
    assert result["openai"] == 3 and result["anthropic"] == 2
    assert _providers(doc) == {"openai": 3, "anthropic": 2}
    assert doc["error_log"] == []


def test_reload_of_the_sdk_never_errors(hosts: dict[str, Result]) -> None:
    """A7: ``importlib.reload(openai)`` after agentlog: the host runs on, the document is
    valid; calls after the reload are recorded, or at most one warning says why not."""
    result, doc = _ok(hosts["reload"])
    assert result["before"] == 2 and result["openai"] == 4
    count = len(ls.records(doc))
    assert count in (2, 4)
    if count == 2:
        assert len(doc["error_log"]) <= 1
    else:
        assert doc["error_log"] == []


def test_disable_one_integration(hosts: dict[str, Result]) -> None:
    """``AGENTLOG_DISABLE=openai``: no openai record, no openai adapter, no patch on the
    openai client; anthropic is still recorded."""
    result, doc = _ok(hosts["disabled"])
    assert result["openai"] == 2 and result["anthropic"] == 2
    assert result["adapter"] is False
    assert result["marked"] == [False, True]
    assert _providers(doc) == {"anthropic": 2}


@pytest.mark.allows_internal_errors  # the fault is in the child; named here for readers
def test_failing_adapter_install_never_breaks_the_import(hosts: dict[str, Result]) -> None:
    """A9: the openai adapter's install raises inside the post-import hook: ``import
    openai`` still succeeds, the user's calls work (unrecorded, unpatched), and error_log
    names the failure."""
    result, doc = _ok(hosts["failing_install"])
    assert result["content"] == "echo: What is four plus five?"
    assert result["openai"] == 3 and result["marked"] is False
    assert ls.records(doc) == []
    (entry,) = doc["error_log"]
    assert entry["type"] == "KeyError"
    assert "injected: the openai adapter cannot install" in entry["error"]
    assert "openai" in entry["source"]


def test_import_storm_does_not_deadlock(hosts: dict[str, Result]) -> None:
    """A10: 8 threads x 200 hooked imports whose hooks import more hooked modules, while
    openai is imported (and patched) alongside: no faulthandler dump, every hook ran
    once per import, and openai got patched."""
    storm = hosts["import_storm"]
    assert storm.returncode == 0, storm.stderr
    assert "Thread 0x" not in storm.stderr and "most recent call first" not in storm.stderr
    result = ls.result_of(storm.stdout)
    assert result["errors"] == []
    assert result["counts"] == [[200, 200]] * 8
    assert result["marked"] == [True]
    storm.doc()  # the run itself still ends in one valid document


def test_namespace_packages_fire_hooks_and_look_untouched(
    hosts: dict[str, Result], tmp_path: Path,
) -> None:
    """A namespace package and its namespace subpackage fire their hooks once each, and
    the module's ``__file__``, ``__path__`` and loader are what Python gives without us."""
    result, _ = _ok(hosts["namespace"])
    assert result["fired"] == ["nspkg", "nspkg.sub"]
    bare = run_script(tmp_path, NAMESPACE, args=["bare"])
    assert bare.returncode == 0, bare.stderr
    plain = ls.result_of(bare.stdout)
    assert plain["fired"] == []
    assert {**result, "fired": [], "path": None} == {**plain, "path": None}
    assert result["loader"] == "NamespaceLoader"
