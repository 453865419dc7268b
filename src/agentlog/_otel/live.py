"""Live export: a recorder sink that turns journal events into spans while the run goes.

Installed from ``agentlog/__init__.py`` when ``AGENTLOG_OTLP_ENDPOINT`` (or
``AGENTLOG_EXPORT=otlp`` with ``OTEL_EXPORTER_OTLP_ENDPOINT``) is set. The journal and the
document are written exactly as without it.

- A scope's span starts at its start event (its context is what its children name as
  parent) and ends at its end event, with the attributes ``mapping.describe`` gives the
  whole node. Calls and tool actions are emitted whole.
- LLM records reach the journal in batches, possibly after their interaction (or even
  their iteration) ended: the contexts of the latest ended scopes are kept (bounded).
- The SDK's batch processor queues and exports off the host's threads (bounded queue).
  At the end of the run the root span ends, the queue is flushed for at most
  ``AGENTLOG_SHUTDOWN_TIMEOUT`` seconds, and the counts go into ``metadata.export``.
- An application's own global TracerProvider is used as it is, never replaced.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import _pricing, _recorder
from .._guard import Guard
from .._recorder import Recorder, Run
from .._version import __version__
from . import sdk
from .mapping import Node, SpanSpec, describe

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

_HANDLED = frozenset({"iteration_start", "iteration_end", "interaction_start",
                      "interaction_end", "interaction", "action", "error"})
_G_SINK = Guard("otel.live")
_G_END = Guard("otel.finalize")
_G_PRICE = Guard("otel.pricing")
_KINDS = {"it": "iteration", "ix": "interaction"}
_KEEP_CONTEXTS = 4096
"""Ended scopes whose context is kept for records that come late (a stream closed long
after its interaction, an LLM record written in a batch); bounded, so memory stays flat."""


def _safe_endpoint(endpoint: str) -> str:
    """The endpoint without user info, query or fragment: fit for the document."""
    if not endpoint:
        return "OTEL_EXPORTER_OTLP_ENDPOINT"
    try:
        parts = urlsplit(sdk.traces_url(endpoint))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"
    except ValueError:
        return "<unparsable endpoint>"


class Live:
    """Process-wide live export state (one per process; reset in a fork child)."""

    def __init__(self, recorder: Recorder, endpoint: str) -> None:
        self.rec = recorder
        self.endpoint = endpoint
        self.content = recorder.settings.capture_content
        self.timeout_s = recorder.settings.shutdown_timeout_s
        self.lock = threading.RLock()
        self.pipeline: sdk.Pipeline | None = None
        self.foreign: Any = None
        """The application's global TracerProvider, when it has one."""
        self.emitter: sdk.Emitter | None = None
        self._reset()
        self.inherited: SpanContext | None = None
        """The root span of the run this process was forked from."""

    def _reset(self) -> None:
        self.run: Run | None = None
        self.root: Any = None
        self.root_node: Node = {}
        self.root_spec: SpanSpec | None = None
        self.root_ctx: SpanContext | None = None
        self.open: dict[tuple[str, Any], tuple[Any, Node, SpanSpec]] = {}
        self.contexts: dict[tuple[str, Any], SpanContext] = {}
        self.spans = 0
        self.base = (0, 0, 0)
        """The exporter's counts when this run began: a process may hold several runs."""

    # -- the pipeline ------------------------------------------------------------------------
    def _emitter(self) -> sdk.Emitter:
        """Chosen at the first span, so that a provider the application sets after
        ``import agentlog`` is still found."""
        if self.emitter is None:
            user = sdk.global_provider()
            if user is not None:
                self.foreign = user
                self.emitter = sdk.Emitter(user.get_tracer(sdk.SCOPE), None)
            else:
                workflow = self.rec.run.workflow_name
                self.pipeline = sdk.Pipeline(sdk.otlp_exporter(self.endpoint or None), workflow)
                self.emitter = sdk.Emitter(self.pipeline.tracer, self.pipeline.ids)
        return self.emitter

    # -- events ---------------------------------------------------------------------------------
    def sink(self, body: dict[str, Any]) -> None:
        """``Recorder.sinks``: every journaled record, on whichever thread wrote it."""
        if body.get("ev") not in _HANDLED or _G_SINK.broken:
            return
        with _G_SINK, sdk.quiet(), self.lock:
            self._on(body)

    def _on(self, ev: dict[str, Any]) -> None:
        run = self.rec.run
        if run is not self.run:
            self._begin(run)
        kind = ev["ev"]
        t = ev.get("t")
        if kind == "error":
            if ev.get("source") == "uncaught":
                self.root_node["error"] = {"type": ev.get("type"), "error": ev.get("error")}
        elif kind == "iteration_start":
            node = {"iteration_number": ev.get("number"), "auto": ev.get("auto", False),
                    "start_time": t}
            self._open(("it", ev.get("it")), "iteration", node, self.root_ctx)
        elif kind == "iteration_end":
            self._close(("it", ev.get("it")), {"end_time": t,
                                               "status": ev.get("status", "completed")})
        elif kind == "interaction_start":
            node = {"interaction_id": ev.get("ix"), "agent_name": ev.get("agent"),
                    "input_data": ev.get("input"), "start_time": t}
            parent = self._context("ix", ev.get("parent")) or self._context("it", ev.get("it"))
            self._open(("ix", ev.get("ix")), "interaction", node, parent)
        elif kind == "interaction_end":
            changes: Node = {"end_time": t, "status": ev.get("status", "completed")}
            for key, field in (("output", "output_data"), ("error", "error"), ("llm", "llm")):
                if key in ev:
                    changes[field] = ev[key]
            self._close(("ix", ev.get("ix")), changes)
        elif kind == "interaction":
            self._one_shot(ev)
        else:
            node = {"action_name": ev.get("name"), "timestamp": t, "end_time": ev.get("t_end"),
                    "input_data": ev.get("input"), "output_data": ev.get("output")}
            for key in ("llm", "error"):
                if key in ev:
                    node[key] = ev[key]
            self._emit("action", node, self._context("ix", ev.get("ix")))

    def _one_shot(self, ev: dict[str, Any]) -> None:
        """A whole interaction in one event (``log_interaction``, or a call made outside
        any interaction: then one span, the call), in an automatic iteration of its own
        when none was open."""
        t, t_end = ev.get("t"), ev.get("t_end", ev.get("t"))
        parent = self._context("ix", ev.get("parent")) or self._context("it", ev.get("it"))
        if "it_number" in ev:
            it_node = {"iteration_number": ev["it_number"], "auto": True, "start_time": t,
                       "end_time": t_end, "status": "failed" if "error" in ev else "completed"}
            parent = self._emit("iteration", it_node, self.root_ctx)
        node = {"interaction_id": ev.get("ix"), "agent_name": ev.get("agent"),
                "input_data": ev.get("input"), "output_data": ev.get("output"),
                "start_time": t, "end_time": t_end}
        for key in ("llm", "error"):
            if key in ev:
                node[key] = ev[key]
        self._emit("interaction", node, parent)

    @staticmethod
    def _priced(node: Node) -> Node:
        """The document prices calls when it is folded; live spans need the cost now."""
        llm = node.get("llm")
        if isinstance(llm, dict) and "cost_usd" not in llm:
            node["llm"] = llm = dict(llm)
            t = node.get("timestamp", node.get("start_time"))
            with _G_PRICE:
                _pricing.apply(llm, t if isinstance(t, int) else _recorder.now_ns())
        return node

    def _context(self, kind: str, key: Any) -> SpanContext | None:
        if key is None:
            return None
        return self.contexts.get((kind, key))

    def _open(self, key: tuple[str, Any], kind: str, node: Node,
              parent: SpanContext | None) -> None:
        spec = describe(kind, node, self.content)
        span = self._emitter().start(spec, parent or self.root_ctx)
        self.open[key] = (span, node, spec)
        self.contexts[key] = span.get_span_context()
        if len(self.contexts) > _KEEP_CONTEXTS:  # oldest first: dicts keep insertion order
            del self.contexts[next(iter(self.contexts))]

    def _close(self, key: tuple[str, Any], changes: Node) -> None:
        found = self.open.pop(key, None)
        if found is None:
            return  # started before export was on
        span, node, started = found
        node.update(changes)
        kind = _KINDS[key[0]]
        sdk.Emitter.finish(span, describe(kind, self._priced(node), self.content),
                           started=started)
        self.spans += 1

    def _emit(self, kind: str, node: Node, parent: SpanContext | None) -> SpanContext:
        spec = describe(kind, self._priced(node), self.content)
        self.spans += 1
        return self._emitter().emit(spec, parent or self.root_ctx)

    # -- the run ------------------------------------------------------------------------------
    def _begin(self, run: Run) -> None:
        """The first event of a run: its root span."""
        self._reset()
        self.run = run
        emitter = self._emitter()
        if self.pipeline is not None:
            self.base = self.pipeline.exporter.counts()
        parent = self.inherited if run.parent_run_id else None
        trace_id = span_id = None
        if emitter.ids is not None:
            span_id = sdk.span_id_for(run.run_id)
            if parent is None and run.parent_run_id:
                # A child whose parent exported nothing here: name the parent's root
                # span by run id, as ``agentlog export`` does.
                root_id = sdk.trace_id_for(run.parent_run_id)
                parent = sdk.remote_parent(root_id, sdk.span_id_for(run.parent_run_id))
            if parent is None:
                trace_id = sdk.trace_id_for(run.run_id)
        self.root_node = {
            "workflow_name": run.workflow_name, "run_id": run.run_id,
            "parent_run_id": run.parent_run_id, "pid": run.pid, "start_time": run.start_ns,
            "agentlog_version": __version__, "python": sys.version.split()[0],
        }
        spec = self.root_spec = describe("run", self.root_node, self.content)
        self.root = emitter.start(spec, parent, trace_id, span_id)
        self.root_ctx = self.root.get_span_context()

    def before_finalize(self) -> None:
        """``Recorder.before_finalize``: end every span, flush (bounded), and put the
        counts into the document."""
        if _G_END.broken:
            return
        with _G_END, sdk.quiet():
            rec = self.rec
            run = rec.run
            rec.settle()  # held-back LLM records: into the journal, and to the sink
            with self.lock:
                if self.root is None or run is not self.run:
                    return
                now = _recorder.now_ns()
                for key in reversed(list(self.open)):
                    self._close(key, {"end_time": now, "status": "incomplete"})
                self.root_node.update(end_time=now, exit_code=run.exit_code,
                                      final_status=run.status_hint or "completed")
                sdk.Emitter.finish(self.root, describe("run", self.root_node, self.content),
                                   started=self.root_spec)
                self.spans += 1
                self.root = None
            stats = self._flush()
            rec.emit({"ev": "meta", "t": _recorder.now_ns(), "export": {"otlp": stats}})

    def _flush(self) -> dict[str, Any]:
        if self.pipeline is not None:
            self.pipeline.flush(self.timeout_s)
            now = self.pipeline.exporter.counts()
            exported, failed, failures = (now[i] - self.base[i] for i in range(3))
            return {
                "endpoint": _safe_endpoint(self.endpoint), "tracer_provider": "agentlog",
                "spans": self.spans, "exported": exported, "failed": failed,
                "failures": failures, "unsent": max(self.spans - exported - failed, 0),
            }
        flush = getattr(self.foreign, "force_flush", None)
        if callable(flush):
            def work() -> None:
                try:
                    flush()
                except Exception:  # noqa: BLE001 - the application's exporter, not ours
                    pass

            thread = threading.Thread(target=work, name="agentlog-otel-flush", daemon=True)
            thread.start()
            thread.join(self.timeout_s)  # bounded: its processors may wait on a collector
        return {"tracer_provider": "application", "spans": self.spans}

    def after_fork_in_child(self) -> None:
        """The child's run hangs under the parent's root span; the parent's open spans
        are the parent's to end. The SDK restarts its batch worker in the child."""
        self.lock = threading.RLock()
        self.inherited = self.root_ctx or self.inherited
        self._reset()
        if self.pipeline is not None:
            self.pipeline.exporter.reset_after_fork()


_live: Live | None = None
_fork_hooked = False


def install(recorder: Recorder, endpoint: str) -> None:
    """Start live export (idempotent): the sink, the end-of-run hook, the fork hook."""
    global _live, _fork_hooked
    if _live is None:
        _live = Live(recorder, endpoint)
        sdk.quiet_logs(True)
    if not _fork_hooked and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork)
        _fork_hooked = True
    if _live.sink not in recorder.sinks:
        recorder.sinks.append(_live.sink)
    if _live.before_finalize not in recorder.before_finalize:
        recorder.before_finalize.append(_live.before_finalize)


def uninstall(recorder: Recorder) -> None:
    """Stop exporting new records. The end-of-run hook stays: what was exported so far
    still gets its root span ended and flushed when the run's document is written."""
    if _live is not None and _live.sink in recorder.sinks:
        recorder.sinks.remove(_live.sink)


def _after_fork() -> None:
    if _live is not None:
        with _G_SINK:
            _live.after_fork_in_child()
