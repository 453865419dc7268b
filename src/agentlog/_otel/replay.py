"""``agentlog export otlp``: a finished or recovered run, sent after the fact.

The document is walked in the order the spans nest (run, iterations, interactions,
their actions and nested interactions) and every node goes through the same
``mapping.describe`` as live export; the span times are the document's times.

The runs of one family (a run and the processes it forked, linked by
``parent_run_id``) become one trace: its id derives from the root run's id, and each
run's root span id from its own run id, so a child names its parent's span without
any other bookkeeping, the way live export does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _read
from . import sdk
from .mapping import Node, describe

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import SpanContext

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_HEAD_PARENT = re.compile(rb'"parent_run_id":\s*(?:"([^"]{1,200})"|null)')


def ns(value: Any) -> int | None:
    """A document's ISO 8601 time as epoch nanoseconds (exact to the microsecond)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.astimezone()
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


# -- which runs ----------------------------------------------------------------------------
def _parent_of(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return None
    found = _HEAD_PARENT.search(head)
    return found.group(1).decode("utf-8", "replace") if found and found.group(1) else None


def family(target: _read.Read) -> tuple[list[_read.Read], str]:
    """``target``'s whole family from its folder, parents before children, and the id
    of the run at its root (which names the trace)."""
    meta = target.doc["metadata"]
    run_id = str(meta["run_id"])
    parents: dict[str, str | None] = {run_id: meta.get("parent_run_id")}
    paths: dict[str, Path] = {run_id: target.path}
    try:
        found = _read.runs(target.path.parent)
    except _read.LoadError:
        found = []
    for run in found:
        rid = run.run_id()
        if rid not in paths:
            paths[rid] = run.path
            parents[rid] = _parent_of(run.path)
    root = run_id
    seen = {root}
    while parents.get(root) in paths and parents[root] not in seen:
        root = str(parents[root])
        seen.add(root)
    children: dict[str, list[str]] = {}
    for rid, parent in parents.items():
        if parent is not None and rid != root:
            children.setdefault(parent, []).append(rid)
    order, queue = [], [root]
    while queue:
        rid = queue.pop(0)
        if rid in order:
            continue
        order.append(rid)
        queue.extend(sorted(children.get(rid, [])))
    reads = []
    for rid in order:
        if rid == run_id:
            reads.append(target)
            continue
        try:
            got = _read.read(paths[rid])
        except _read.LoadError:
            continue  # an unreadable relative does not stop the others
        if not got.alive:
            reads.append(got)
    top = reads[0].doc["metadata"] if reads else meta
    trace_root = str(top.get("parent_run_id") or top["run_id"])
    return reads, trace_root


# -- the walk ------------------------------------------------------------------------------
@dataclass
class Sent:
    """What ``send`` did."""

    runs: list[str] = field(default_factory=list)
    spans: int = 0
    exported: int = 0
    failed: int = 0
    trace_id: str = ""

    @property
    def unsent(self) -> int:
        return max(self.spans - self.exported - self.failed, 0)


def _timed(node: Node, keys: tuple[str, ...]) -> Node:
    """A copy of a document node with its times as nanoseconds (what ``describe`` reads)."""
    out = dict(node)
    for key in keys:
        if key in out:
            out[key] = ns(out[key])
    return out


class _Walk:
    def __init__(self, emitter: sdk.Emitter, content: bool) -> None:
        self.emitter = emitter
        self.content = content
        self.spans = 0

    def run(self, doc: dict[str, Any], trace_id: int) -> None:
        meta = doc["metadata"]
        node: Node = {key: meta.get(key) for key in (
            "workflow_name", "run_id", "parent_run_id", "pid", "exit_code",
            "agentlog_version", "python")}
        node.update(start_time=ns(meta.get("start_time")), end_time=ns(meta.get("end_time")),
                    final_status=doc.get("final_status"),
                    cost_usd=(meta.get("totals") or {}).get("cost_usd"))
        uncaught = [e for e in doc.get("error_log") or [] if e.get("source") == "uncaught"]
        if uncaught:
            node["error"] = uncaught[-1]
        parent = None
        if node["parent_run_id"]:
            parent = sdk.remote_parent(trace_id, sdk.span_id_for(str(node["parent_run_id"])))
        spec = describe("run", node, self.content)
        end = spec.end_ns if spec.end_ns is not None else spec.start_ns
        root = self.emitter.start(spec, parent, trace_id if parent is None else None,
                                  sdk.span_id_for(str(node["run_id"])))
        context = root.get_span_context()
        for it in doc.get("iterations") or []:
            self.iteration(it, context, end)
        self.emitter.finish(root, spec, end, spec)
        self.spans += 1

    def iteration(self, it: Node, parent: SpanContext, run_end: int) -> None:
        node = _timed(it, ("start_time", "end_time"))
        spec = describe("iteration", node, self.content)
        span = self.emitter.start(spec, parent)
        context = span.get_span_context()
        ixs = it.get("interactions") or []
        ids = {ix.get("interaction_id") for ix in ixs}
        children: dict[Any, list[Node]] = {}
        roots: list[Node] = []
        for ix in ixs:
            up = ix.get("parent_interaction_id")
            if up is not None and up in ids and up != ix.get("interaction_id"):
                children.setdefault(up, []).append(ix)
            else:
                roots.append(ix)
        for ix in roots:
            self.interaction(ix, context, children, run_end)
        self.emitter.finish(span, spec, run_end, spec)
        self.spans += 1

    def interaction(self, ix: Node, parent: SpanContext,
                    children: dict[Any, list[Node]], run_end: int) -> None:
        node = _timed(ix, ("start_time", "end_time"))
        spec = describe("interaction", node, self.content)
        if isinstance(ix.get("llm"), dict):  # a bare call: the call is the span
            self.emitter.emit(spec, parent, run_end)
            self.spans += 1
            return
        span = self.emitter.start(spec, parent)
        context = span.get_span_context()
        for action in ix.get("actions") or []:
            action_node = _timed(action, ("timestamp", "end_time"))
            self.emitter.emit(describe("action", action_node, self.content), context)
            self.spans += 1
        for child in children.pop(ix.get("interaction_id"), []):
            self.interaction(child, context, children, run_end)
        self.emitter.finish(span, spec, run_end, spec)
        self.spans += 1


def send(reads: list[_read.Read], trace_root: str, endpoint: str | None, content: bool,
         timeout_s: float, exporter: SpanExporter | None = None) -> Sent:
    """Export ``reads`` (parents first) as one trace; wait up to ``timeout_s`` for the
    collector's answers. ``exporter``: another than OTLP/HTTP to ``endpoint``."""
    workflow = str(reads[0].doc["metadata"].get("workflow_name") or "agentlog")
    sdk.quiet_logs(True)  # the counts below say what failed; no exporter tracebacks
    if exporter is None:
        exporter = sdk.otlp_exporter(endpoint, timeout_s)
    pipeline = sdk.Pipeline(exporter, workflow, max_queue=1 << 20)
    trace_id = sdk.trace_id_for(trace_root)
    walk = _Walk(sdk.Emitter(pipeline.tracer, pipeline.ids), content)
    sent = Sent(trace_id=f"{trace_id:032x}")
    with sdk.quiet():
        for got in reads:
            walk.run(got.doc, trace_id)
            sent.runs.append(str(got.doc["metadata"]["run_id"]))
    pipeline.flush(timeout_s)
    sent.spans = walk.spans
    sent.exported, sent.failed, _ = pipeline.exporter.counts()
    pipeline.shutdown(1.0)
    return sent
