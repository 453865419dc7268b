"""The HTML report (``agentlog._report``): one self-contained file, read in a real browser.

The in-process tests check the file itself: no URL of its own, the document embedded so
that it round-trips and no string in it can break out of its ``<script>`` block. The
browser tests load reports of real runs (``agentlog demo``, a run with concurrent calls)
and of a folded 10,000-interaction run in Debian's ``chromium``, driven by Playwright,
offline: any request other than the file itself fails the test.

Screenshots go to ``<pytest tmp>/shots`` and, for a human to look at, to
``/tmp/agentlog-report-shots``.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentlog import _demo, _document, _report
from helpers import load_document, script_env, validate_document

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SHOTS = Path("/tmp/agentlog-report-shots")
HOSTILE = "</script><script>alert(1)</script><!-- <script>alert(2)</script>"
DATA_BLOCK = re.compile(
    r'<script type="application/json" id="agentlog-data">(.*?)</script>', re.DOTALL
)


# -- documents ---------------------------------------------------------------------------
def _llm_holders(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        holder
        for it in doc["iterations"]
        for ix in it["interactions"]
        for holder in (ix, *ix["actions"])
        if isinstance(holder.get("llm"), dict)
    ]


@pytest.fixture(scope="module")
def demo_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document of a real ``agentlog demo`` run (the real openai SDK, loopback only)."""
    pytest.importorskip("openai")
    cwd = tmp_path_factory.mktemp("demo")
    logs = cwd / "logs"
    proc = subprocess.run(
        [sys.executable, "-m", "agentlog", "demo"], env=script_env(logs), cwd=cwd,
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = logs.glob("*.json")
    doc = load_document(path)
    assert len(_llm_holders(doc)) == _demo.CHAT_CALLS
    return doc


CONCURRENT = """
import threading
import agentlog, openai
from agentlog._demo import FakeOpenAI

N = 4
started = threading.Barrier(N)

with FakeOpenAI() as srv, openai.OpenAI(
    base_url=srv.base_url, api_key="sk-report-test", max_retries=0,
    http_client=openai.DefaultHttpxClient(trust_env=False),
) as client:
    @agentlog.agent("worker")
    def work(n):
        stream = client.chat.completions.create(
            model="gpt-4o-mini", stream=True,
            messages=[{"role": "user", "content": f"question {n}"}])
        with stream:
            for i, chunk in enumerate(stream):
                if i == 0:
                    started.wait(10)  # every stream is open before any ends: they overlap
        return n

    with agentlog.iteration():
        threads = [threading.Thread(target=work, args=(n,)) for n in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
"""


def _synthetic_events(n: int, workers: int = 8) -> list[dict[str, Any]]:
    """Journal events of a run of ``n`` interactions, one LLM call each, ``workers`` at once.

    Every 10th interaction also runs a tool; every 97th fails.
    """
    t0 = 1_800_000_000_000_000_000
    ms = 1_000_000
    events: list[dict[str, Any]] = [{
        "ev": "run", "t": t0, "run_id": "01SYNTHETIC10K", "parent_run_id": None,
        "workflow_name": "ten-thousand", "pid": 4242, "python": "3.11.7",
        "platform": "linux-test-x86_64", "agentlog_version": "0.1.0", "verbosity": 1,
        "argv": ["ten_thousand.py"],
    }]
    models = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5"]
    per_iteration = 100
    it_end = t0
    clock = [t0 + 5 * ms] * workers
    for i in range(n):
        it = i // per_iteration + 1
        if i % per_iteration == 0:
            start = max(clock) + 2 * ms  # after the previous iteration's end
            clock = [start] * workers
            events.append({"ev": "iteration_start", "t": start, "it": it, "number": it,
                           "auto": False})
        w = i % workers
        start = clock[w] + (i * 7919 % 13) * ms // 10
        llm_start = start + ms
        llm_ms = 20 + (i * 104729) % 400
        end = llm_start + llm_ms * ms + 2 * ms
        model = models[i % len(models)]
        failed = i % 97 == 96
        ix = i + 1
        events.append({"ev": "interaction_start", "t": start, "it": it, "ix": ix,
                       "parent": None, "agent": f"agent-{i % 5}",
                       "input": f"synthetic question {i}"})
        llm: dict[str, Any] = {
            "provider": "anthropic" if model.startswith("claude") else "openai",
            "operation": "chat", "request_model": model, "response_model": model,
            "params": {}, "streamed": i % 2 == 0, "incomplete": False,
            "duration_ms": float(llm_ms), "ttft_ms": float(llm_ms // 3) if i % 2 == 0 else None,
            "finish_reasons": ["stop"],
            "usage": {"input_tokens": 100 + i % 50, "output_tokens": 20 + i % 30,
                      "cache_read_input_tokens": 0, "cache_write_input_tokens": None,
                      "reasoning_output_tokens": 0},
            "cost_usd": 0.0001, "pricing_source": "test",
        }
        action: dict[str, Any] = {
            "ev": "action", "t": llm_start, "t_end": llm_start + llm_ms * ms, "it": it,
            "ix": ix, "name": f"llm:{llm['provider']}.chat",
            "input": [{"role": "user", "content": f"synthetic question {i}"}],
            "output": {"role": "assistant", "content": f"answer {i}"}, "llm": llm,
        }
        if failed:
            action["error"] = {"type": "APIError", "error": f"synthetic failure {i}",
                               "traceback": None}
        events.append(action)
        if i % 10 == 0:
            events.append({"ev": "action", "t": end - ms, "t_end": end - ms // 2, "it": it,
                           "ix": ix, "name": "tool:search", "input": f"q{i}",
                           "output": f"r{i}"})
        ix_end: dict[str, Any] = {"ev": "interaction_end", "t": end, "ix": ix,
                                  "status": "failed" if failed else "completed",
                                  "output": f"answer {i}"}
        if failed:
            ix_end["error"] = {"type": "APIError", "error": f"synthetic failure {i}",
                               "traceback": "Traceback (most recent call last):\n  ..."}
            events.append({"ev": "error", "t": end, "type": "APIError",
                           "error": f"synthetic failure {i}", "source": "llm",
                           "where": {"iteration_number": it, "agent_name": f"agent-{i % 5}",
                                     "interaction_id": ix}})
        events.append(ix_end)
        clock[w] = end
        it_end = max(it_end, end)
        if i % per_iteration == per_iteration - 1 or i == n - 1:
            events.append({"ev": "iteration_end", "t": max(clock) + ms, "it": it,
                           "status": "completed"})
    events.append({"ev": "resource", "t": t0 + ms, "resource": "data/questions.jsonl",
                   "kind": "file", "loader": "open", "bytes": 123456})
    events.append({"ev": "end", "t": it_end + 5 * ms, "final_status": "completed",
                   "exit_code": 0})
    for seq, ev in enumerate(events):
        ev["seq"] = seq
    return events


# -- the file, without a browser ---------------------------------------------------------
def _data(html: str) -> Any:
    blocks = DATA_BLOCK.findall(html)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def _outside_data(html: str) -> str:
    return DATA_BLOCK.sub("", html)


def _hostile_doc(demo_doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(demo_doc))
    doc["metadata"]["workflow_name"] = f"{HOSTILE} __AGENTLOG_DATA__ & <b>"
    ix = doc["iterations"][0]["interactions"][0]
    ix["agent_name"] = HOSTILE
    ix["input_data"] = f"{HOSTILE}\u2028\u2029 see https://example.com/x?a=1&b=2"
    ix["output_data"] = {"</script>": HOSTILE, "html": "<img src=x onerror=alert(3)>"}
    doc["error_log"].append({
        "timestamp": doc["metadata"]["start_time"], "type": "<script>alert(4)</script>",
        "error": HOSTILE, "traceback": HOSTILE, "where": {}, "source": "user",
    })
    return validate_document(doc)


def test_render_names_no_url_of_its_own(demo_doc: dict[str, Any]) -> None:
    """Everything is inline: no http(s) URL, no src or href outside the embedded data."""
    doc = json.loads(json.dumps(demo_doc))
    doc["iterations"][0]["interactions"][0]["input_data"] = "read https://example.com/page"
    html = _report.render(validate_document(doc))
    assert html.startswith("<!doctype html>")
    assert "https://example.com/page" in html, "the user's data is kept"
    outside = _outside_data(html)
    assert not re.findall(r"https?://", outside, re.IGNORECASE)
    assert not re.findall(r"//[a-z0-9.-]+\.[a-z]{2,}/", outside, re.IGNORECASE)
    # The only attribute that points anywhere is the empty data: icon (no favicon fetch).
    refs = re.findall(r"""<[a-z]+[^>]*?\s(?:src|href|action)\s*=\s*["']([^"']*)""", outside)
    assert refs == ["data:,"], refs
    assert "default-src 'none'" in outside, "a Content-Security-Policy forbids every fetch"


def test_embedded_document_round_trips(demo_doc: dict[str, Any]) -> None:
    """The page carries the whole document, unchanged, as JSON."""
    html = _report.render(demo_doc)
    assert _data(html) == demo_doc
    assert "__AGENTLOG_" not in html, "every slot of the template is filled"


def test_hostile_strings_stay_inert(demo_doc: dict[str, Any]) -> None:
    """Markup in the data cannot close the data block, open a comment or add a tag."""
    doc = _hostile_doc(demo_doc)
    html = _report.render(doc)
    assert _data(html) == doc
    block = DATA_BLOCK.search(html)
    assert block is not None
    for bad in ("<", ">", "\u2028", "\u2029"):
        assert bad not in block.group(1)
    assert html.count("<script") == 2 and html.count("</script>") == 2
    assert "<!--" not in html
    assert "<title>&lt;/script&gt;&lt;script&gt;alert(1)" in html
    assert "<b>" not in _outside_data(html)


def test_write_is_private_and_returns_the_path(
    demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    """``write`` puts exactly ``render``'s output in a 0600 file and returns its path."""
    out = tmp_path / "report.html"
    out.write_text("old")
    out.chmod(0o644)
    assert _report.write(demo_doc, out) == out
    assert out.read_text(encoding="utf-8") == _report.render(demo_doc)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"], "no temp file left"


def test_template_is_package_data() -> None:
    """The page is package data beside the module that reads it (hatchling ships it)."""
    from importlib.resources import files

    page = files("agentlog").joinpath("report/report.html").read_text(encoding="utf-8")
    assert "__AGENTLOG_DATA__" in page and "__AGENTLOG_TITLE__" in page


# -- in a real browser ------------------------------------------------------------------
def _playwright() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.skip("playwright is missing (pip install -e '.[test]')")
    return sync_api


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium, headless and offline, with a fresh profile; one per module (it is slow)."""
    sync_api = _playwright()
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 900}, device_scale_factor=1,
            reduced_motion="reduce",  # a click on a bar scrolls to its row at once
        )
        try:
            yield ctx
        finally:
            ctx.close()


@dataclass
class Loaded:
    page: Any
    url: str
    load_s: float
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return self.page.evaluate(  # type: ignore[no-any-return]
            "() => { const r = window.__agentlogReport; return {ready: r.ready, error: r.error,"
            " counts: r.counts, drawn: r.drawn, lanes: r.lanes, bars: r.bars,"
            " drawMs: r.drawMs, readyMs: r.readyMs}; }"
        )

    def offline_and_clean(self) -> None:
        """Nothing but the file itself was requested, and nothing went wrong."""
        assert self.errors == [], self.errors
        assert self.console == [], self.console
        assert self.dialogs == [], self.dialogs
        foreign = [u for u in self.requests if u != self.url and not u.startswith("data:")]
        assert foreign == [], foreign
        assert self.url in self.requests
        assert self.report()["error"] is None


def _open(browser: Any, path: Path, timeout_s: float = 20) -> Loaded:
    page = browser.new_page()
    loaded = Loaded(page, path.as_uri(), 0.0)
    page.on("console", lambda m: loaded.console.append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: loaded.errors.append(str(e)))
    page.on("request", lambda r: loaded.requests.append(r.url))

    def dialog(d: Any) -> None:
        loaded.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    start = time.monotonic()
    page.goto(loaded.url)
    page.wait_for_function("() => window.__agentlogReport && window.__agentlogReport.ready",
                           timeout=timeout_s * 1000)
    loaded.load_s = time.monotonic() - start
    return loaded


def _shot(loaded: Loaded, tmp_path: Path, name: str, full_page: bool = True) -> Path:
    out = tmp_path / "shots" / f"{name}.png"
    out.parent.mkdir(exist_ok=True)
    # Bytes, written here: with a path, Playwright writes from a thread that outlives the test.
    out.write_bytes(loaded.page.screenshot(full_page=full_page))
    assert out.stat().st_size > 10_000, "a blank page makes a tiny PNG"
    try:
        SHOTS.mkdir(exist_ok=True)
        shutil.copyfile(out, SHOTS / out.name)
    except OSError:
        pass  # the copy is a convenience; the test artifact is the one under tmp_path
    return out


def _painted(page: Any, kind: str) -> tuple[list[dict[str, Any]], list[bool]]:
    """The bars of ``kind`` the last frame drew, and whether each one's centre is painted.

    Read in one go, so that no redraw falls between the list and the pixels (and with one
    readback of the canvas: more would warn on the console).
    """
    bars, painted = page.evaluate(
        """(kind) => {
            const c = document.getElementById('tl-canvas'), k = c.width / c.clientWidth;
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const at = (x, y) => {
                const i = (Math.round(y * k) * c.width + Math.round(x * k)) * 4;
                return Array.from(data.slice(i, i + 4)).join();
            };
            const bars = window.__agentlogReport.bars.filter((b) => b.kind === kind);
            const background = at(5, 5);
            // Most of its area differs from the background (its white label may not).
            const painted = (b) => {
                let hits = 0, all = 0;
                for (let x = Math.ceil(b.x); x < b.x + b.w - 0.5; x++) {
                    for (let y = Math.ceil(b.y); y < b.y + b.h - 0.5; y++) {
                        all++;
                        if (at(x, y) !== background) hits++;
                    }
                }
                return all > 0 && hits / all > 0.6;
            };
            return [bars, bars.map(painted)];
        }""",
        kind,
    )
    return bars, painted


def _click_bar(loaded: Loaded, bar: dict[str, Any]) -> None:
    canvas = loaded.page.locator("#tl-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    loaded.page.mouse.click(box["x"] + bar["x"] + bar["w"] / 2, box["y"] + bar["y"] + bar["h"] / 2)


def _report_file(doc: dict[str, Any], tmp_path: Path, name: str = "report") -> Path:
    return _report.write(doc, tmp_path / f"{name}.html")


def test_demo_report_loads_offline(
    browser: Any, demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    """The demo's report loads from file:// with no console error and no request."""
    loaded = _open(browser, _report_file(demo_doc, tmp_path))
    loaded.offline_and_clean()
    page = loaded.page
    assert page.title() == "agentlog-demo · agentlog"
    text = page.inner_text("body")
    for expected in ("agentlog-demo", "planner", "writer", "gpt-4o-mini", "Agents", "Models",
                     "Resources used", "Errors"):
        assert expected in text
    totals = page.inner_text("#totals")
    t = demo_doc["metadata"]["totals"]
    assert f"{t['input_tokens']:,}" in totals and f"{t['output_tokens']:,}" in totals
    assert f"${t['cost_usd']:.6f}" in totals
    _shot(loaded, tmp_path, "demo-report")
    page.close()


def test_timeline_draws_one_bar_per_llm_call(
    browser: Any, demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    """One painted LLM bar per call; each is visible on the canvas and opens its call."""
    holders = _llm_holders(demo_doc)
    loaded = _open(browser, _report_file(demo_doc, tmp_path))
    page = loaded.page
    llm_bars, painted = _painted(page, "llm")
    assert len(llm_bars) == len(holders) == 3
    assert all(painted), f"listed but not on the canvas: {llm_bars}, {painted}"
    rep = loaded.report()
    assert rep["drawn"]["llm"] == 3
    interactions = sum(len(it["interactions"]) for it in demo_doc["iterations"])
    assert rep["drawn"]["interaction"] == interactions
    assert rep["drawn"]["iteration"] == len(demo_doc["iterations"])
    seen_ids = set()
    for bar in llm_bars:
        _click_bar(loaded, bar)
        detail = page.locator(".ix.sel .ix-detail")
        detail.wait_for(state="visible", timeout=5000)
        opened = detail.inner_text()
        seen_ids |= {h["llm"]["response_id"] for h in holders
                     if h["llm"]["response_id"] in opened}
    assert seen_ids == {h["llm"]["response_id"] for h in holders}, "each bar opens its call"
    loaded.offline_and_clean()
    page.close()


def test_expanding_an_interaction_shows_its_input(
    browser: Any, demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    """A collapsed row holds no detail; a click renders its input, output and calls."""
    loaded = _open(browser, _report_file(demo_doc, tmp_path))
    page = loaded.page
    assert page.locator(".ix-detail").count() == 0, "details are built on demand"
    row = page.locator(".ix", has_text="planner").first
    row.locator(".ix-head").click()
    detail = row.locator(".ix-detail")
    detail.wait_for(state="visible", timeout=5000)
    text = detail.inner_text()
    assert _demo.QUESTION in text
    assert "tool:lookup" in text and _demo.FACT in text
    assert "gpt-4o-mini-2024-07-18" in text
    _shot(loaded, tmp_path, "demo-interaction-open")
    row.locator(".ix-head").click()
    assert row.locator(".ix-detail").count() == 0, "a second click folds it again"
    writer = page.locator(".ix", has_text="writer").first
    writer.locator(".ix-head").focus()
    page.keyboard.press("Enter")
    assert writer.locator(".ix-head").get_attribute("aria-expanded") == "true"
    assert _demo.FACT in writer.locator(".ix-detail").inner_text(), "the keyboard opens it too"
    loaded.offline_and_clean()
    page.close()


def test_hostile_data_runs_no_script(
    browser: Any, demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    """Markup in names, inputs and errors is shown as text, never run."""
    loaded = _open(browser, _report_file(_hostile_doc(demo_doc), tmp_path))
    page = loaded.page
    page.locator(".ix-head", has_text="</script>").first.click()
    detail = page.locator(".ix.open .ix-detail")
    detail.wait_for(state="visible", timeout=5000)
    assert "<img src=x onerror=alert(3)>" in detail.inner_text()
    assert HOSTILE in page.inner_text("#errors")
    assert page.evaluate("document.scripts.length") == 2
    assert page.locator("img").count() == 0
    loaded.offline_and_clean()  # no dialog opened
    page.close()


def test_concurrent_calls_get_their_own_lanes(
    browser: Any, run: Any, tmp_path: Path
) -> None:
    """Calls in flight at once are drawn on separate lanes, as many as overlap at most."""
    pytest.importorskip("openai")
    result = run(CONCURRENT)
    assert result.returncode == 0, result.stderr
    doc = result.doc()
    spans = []
    for holder in _llm_holders(doc):
        start = _document_time(holder["timestamp"])
        spans.append((start, start + holder["llm"]["duration_ms"] / 1000))
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 4, "the barrier holds every stream open at once"
    loaded = _open(browser, _report_file(doc, tmp_path))
    rep = loaded.report()
    assert rep["lanes"]["llm"] == most
    assert rep["drawn"]["llm"] == 4
    assert len({b["y"] for b in rep["bars"] if b["kind"] == "llm"}) == 4
    _shot(loaded, tmp_path, "concurrent-report", full_page=False)
    loaded.offline_and_clean()
    loaded.page.close()


def test_crashed_and_empty_runs_render(browser: Any, tmp_path: Path) -> None:
    """A crashed run's unfinished parts are drawn up to its last event; an empty run loads."""
    ms = 1_000_000
    t0 = 1_800_000_000_000_000_000
    events: list[dict[str, Any]] = [
        {"ev": "run", "t": t0, "run_id": "01CRASHED", "workflow_name": "crashed"},
        {"ev": "iteration_start", "t": t0 + ms, "it": 1, "number": 1},
        {"ev": "interaction_start", "t": t0 + 2 * ms, "it": 1, "ix": 1, "agent": "done",
         "input": "first"},
        {"ev": "interaction_end", "t": t0 + 30 * ms, "ix": 1, "output": "ok"},
        {"ev": "interaction_start", "t": t0 + 31 * ms, "it": 1, "ix": 2, "agent": "cut",
         "input": "second"},
        {"ev": "action", "t": t0 + 40 * ms, "it": 1, "ix": 2, "name": "tool:step",
         "input": None, "output": None},
    ]
    for seq, ev in enumerate(events):
        ev["seq"] = seq
    crashed = validate_document(_document.build(
        events, default_status="crashed", recovery={"dropped_tail_bytes": 17}))
    assert crashed["iterations"][0]["interactions"][1]["end_time"] is None
    loaded = _open(browser, _report_file(crashed, tmp_path, "crashed"))
    rep = loaded.report()
    assert rep["drawn"]["interaction"] == 2 and rep["drawn"]["llm"] == 0
    assert rep["drawn"]["iteration"] == 1
    page = loaded.page
    assert "torn tail of 17 bytes" in page.inner_text("#top")
    page.locator(".ix", has_text="cut").locator(".ix-head").click()
    assert "did not end" in page.inner_text(".ix.open .ix-detail")
    _shot(loaded, tmp_path, "crashed-report")
    loaded.offline_and_clean()
    page.close()

    empty = validate_document(_document.build(events[:1], default_status="completed"))
    loaded = _open(browser, _report_file(empty, tmp_path, "empty"))
    assert loaded.report()["counts"] == {"iterations": 0, "interactions": 0, "llm": 0,
                                         "tools": 0}
    assert "No interaction in this run." in loaded.page.inner_text("#interactions")
    loaded.offline_and_clean()
    loaded.page.close()


def _document_time(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_ten_thousand_interactions_stay_responsive(browser: Any, tmp_path: Path) -> None:
    """A 10,000-interaction run is ready within seconds and still answers clicks."""
    n = 10_000
    doc = validate_document(_document.build(_synthetic_events(n), default_status="completed"))
    assert doc["metadata"]["totals"]["interactions"] == n
    assert doc["metadata"]["totals"]["llm_calls"] == n
    loaded = _open(browser, _report_file(doc, tmp_path, "ten-thousand"), timeout_s=30)
    assert loaded.load_s < 10, f"ready after {loaded.load_s:.1f} s"
    page = loaded.page
    rep = loaded.report()
    assert rep["counts"]["interactions"] == n and rep["counts"]["llm"] == n
    assert rep["lanes"]["llm"] == 8, "eight workers: eight lanes of calls"
    assert rep["drawn"]["llm"] > 0
    print(f"10,000 interactions: ready {rep['readyMs']:.0f} ms after navigation, "
          f"a full redraw of the timeline {rep['drawMs']:.1f} ms")
    assert rep["drawMs"] < 500, "panning and zooming redraw in well under a second"
    # No table of 10,000 rows: one page of the list is in the DOM.
    assert page.locator(".ix").count() <= 100
    assert page.evaluate("document.getElementsByTagName('*').length") < 5000
    _shot(loaded, tmp_path, "ten-thousand-report", full_page=False)

    start = time.monotonic()
    page.click("#ix-next")
    row = page.locator(".ix", has_text="agent-").first
    ix_id = int(row.locator(".ix-head > span").nth(1).inner_text().lstrip("#"))
    assert ix_id > 40, "the second page"
    row.locator(".ix-head").click()
    row.locator(".ix-detail").wait_for(state="visible", timeout=5000)
    assert f"synthetic question {ix_id - 1}\n" in row.locator(".ix-detail").inner_text()
    page.fill("#ix-q", "synthetic question 9999")
    page.locator(".ix", has_text="#10000").wait_for(timeout=5000)
    for _ in range(5):
        page.click("#tl-in")
    page.wait_for_function(f"() => window.__agentlogReport.drawn.llm < {n // 10}",
                           timeout=5000)
    bars, painted = _painted(page, "llm")
    assert bars and all(painted)
    bar = max(bars, key=lambda b: b["w"])
    _click_bar(loaded, bar)
    page.locator(".ix.sel .ix-detail").wait_for(state="visible", timeout=5000)
    assert time.monotonic() - start < 10, "clicks answer in well under seconds each"
    _shot(loaded, tmp_path, "ten-thousand-interaction-open", full_page=False)
    loaded.offline_and_clean()
    page.close()

