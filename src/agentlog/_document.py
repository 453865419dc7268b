"""The journal folded into the run document, and its atomic write.

The document's shape is schema version 1 (``schema/document-v1.schema.json``). Times in
the journal are integer nanoseconds since the epoch; here they become ISO 8601 strings
with the local offset.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from . import _pricing
from ._guard import Guard

SCHEMA_VERSION = 1
DOCUMENT_SUFFIX = ".json"
_G_PRICING = Guard("pricing")
_TOKEN_KINDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_write_input_tokens",
    "reasoning_output_tokens",
)
Event = dict[str, Any]


def iso(ns: int | None) -> str | None:
    """Epoch nanoseconds as ISO 8601 with the local UTC offset."""
    if ns is None:
        return None
    return datetime.fromtimestamp(ns // 1000 / 1e6).astimezone().isoformat()


def _ms(start: int | None, end: int | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) / 1e6, 3)


class _Fold:
    """Accumulates events in journal order into the document's parts."""

    def __init__(self) -> None:
        self.meta: Event = {}
        self.start_ns: int | None = None
        self.last_ns: int | None = None
        self.end: Event | None = None
        self.iterations: dict[int, Event] = {}
        self.interactions: dict[int, Event] = {}
        self.resources: dict[tuple[str, str], Event] = {}
        self.errors: list[Event] = []
        self.dropped = 0

    def iteration(self, it: int, number: int | None = None, t: int | None = None) -> Event:
        found = self.iterations.get(it)
        if found is None:
            found = self.iterations[it] = {
                "iteration_number": number if number is not None else it,
                "auto": True,
                "start_time": t,
                "end_time": None,
                "status": None,
                "interactions": [],
            }
        return found

    def interaction(self, ev: Event) -> Event:
        ix: Event = {
            "interaction_id": ev["ix"],
            "parent_interaction_id": ev.get("parent"),
            "agent_name": ev.get("agent", "unknown"),
            "input_data": ev.get("input"),
            "output_data": ev.get("output"),
            "start_time": ev["t"],
            "end_time": ev.get("t_end"),
            "status": ev.get("status"),
            "actions": [],
        }
        for key in ("llm", "error"):
            if key in ev:
                ix[key] = ev[key]
        if "lossy" in ev:
            ix["_lossy"] = list(ev["lossy"])
        self.interactions[ev["ix"]] = ix
        self.iteration(ev.get("it", 0), t=ev["t"])["interactions"].append(ix)
        return ix

    def add(self, ev: Event) -> None:
        kind = ev.get("ev")
        t = ev.get("t")
        if isinstance(t, int):
            self.last_ns = t if self.last_ns is None else max(self.last_ns, t)
        if kind == "run":
            self.meta.update(ev)
            self.start_ns = t
        elif kind == "meta":
            self.meta.update({k: v for k, v in ev.items() if k not in ("seq", "ev", "t")})
        elif kind == "iteration_start":
            it = self.iteration(ev["it"], ev.get("number"), t)
            it["iteration_number"] = ev.get("number", it["iteration_number"])
            it["auto"] = bool(ev.get("auto", False))
            it["start_time"] = t
        elif kind == "iteration_end":
            it = self.iteration(ev["it"], t=t)
            it["end_time"] = t
            it["status"] = ev.get("status", "completed")
        elif kind == "interaction_start":
            self.interaction(ev)
        elif kind == "interaction":
            if "it_number" in ev:  # a one-shot call outside any iteration: its own
                it = self.iteration(ev["it"], ev["it_number"], t)
                it["end_time"] = ev.get("t_end", t)
                it["status"] = "failed" if "error" in ev else "completed"
            ix = self.interaction(ev)
            ix["status"] = ix["status"] or ("failed" if "error" in ev else "completed")
        elif kind == "interaction_end":
            ended = self.interactions.get(ev["ix"])
            if ended is not None:
                ix = ended
                ix["end_time"] = t
                ix["status"] = ev.get("status", "completed")
                if "output" in ev:
                    ix["output_data"] = ev["output"]
                if "error" in ev:
                    ix["error"] = ev["error"]
                if "llm" in ev:
                    ix["llm"] = ev["llm"]
        elif kind == "action":
            self.action(ev)
        elif kind == "resource":
            self.resource(ev)
        elif kind == "error":
            self.errors.append(
                {
                    "timestamp": t,
                    "type": ev.get("type", "Error"),
                    "error": ev.get("error", ""),
                    "traceback": ev.get("traceback"),
                    "where": ev.get("where", {}),
                    "source": ev.get("source", "user"),
                }
            )
        elif kind == "dropped":
            self.dropped = max(self.dropped, int(ev.get("count", 0)))
        elif kind == "end":
            self.end = ev
            self.dropped = max(self.dropped, int(ev.get("dropped_events", 0)))

    def action(self, ev: Event) -> None:
        action: Event = {
            "action_name": ev.get("name", "action"),
            "timestamp": ev["t"],
            "input_data": ev.get("input"),
            "output_data": ev.get("output"),
        }
        if "t_end" in ev:
            action["end_time"] = ev["t_end"]
        for key in ("llm", "error"):
            if key in ev:
                action[key] = ev[key]
        if "lossy" in ev:
            action["_lossy"] = list(ev["lossy"])
        ix = self.interactions.get(ev.get("ix", -1))
        if ix is None:  # its interaction's start was lost: keep the action visible
            ix = self.interaction({"ix": ev.get("ix", -1), "t": ev["t"], "it": ev.get("it", 0)})
        ix["actions"].append(action)

    def resource(self, ev: Event) -> None:
        key = (str(ev.get("resource")), str(ev.get("kind", "other")))
        # An automatic event stands for ``count`` loads from ``t`` to ``t_last``; it is
        # journaled in a batch, so it may come after a later manual one.
        count = ev.get("count", 1)
        count = count if type(count) is int and count > 0 else 1
        t = ev["t"]
        t_last = ev.get("t_last", t)
        entry = self.resources.get(key)
        if entry is None:
            self.resources[key] = {
                "resource": key[0],
                "kind": key[1],
                "loader": ev.get("loader"),
                "first_time": t,
                "last_time": t_last,
                "count": count,
                "bytes": ev.get("bytes"),
                "where": ev.get("where", {}),
            }
            return
        entry["count"] += count
        if t < entry["first_time"]:  # the first load names the loader and the place
            entry.update(first_time=t, loader=ev.get("loader"), where=ev.get("where", {}))
        entry["last_time"] = max(entry["last_time"], t_last)
        if entry["bytes"] is None:
            entry["bytes"] = ev.get("bytes")


def _finish_times(obj: Event, keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in obj:
            obj[key] = iso(obj[key])


def build(
    events: list[Event],
    *,
    default_status: str,
    recovery: Event | None = None,
) -> dict[str, Any]:
    """Fold journal events (in seq order) into the schema-v1 document."""
    fold = _Fold()
    for ev in sorted(events, key=lambda e: e.get("seq", 0)):
        fold.add(ev)

    totals: dict[str, Any] = {
        "iterations": len(fold.iterations),
        "interactions": len(fold.interactions),
        "llm_calls": 0,
        **{kind: 0 for kind in _TOKEN_KINDS},
        "cost_usd": 0.0,
        "errors": len(fold.errors),
        "dropped_events": fold.dropped,
    }
    iterations = sorted(
        fold.iterations.values(), key=lambda it: (it["start_time"] or 0, it["iteration_number"])
    )
    open_status = "incomplete" if default_status != "in_progress" else "in_progress"
    for it in iterations:
        it["status"] = it["status"] or open_status
        it["duration_ms"] = _ms(it["start_time"], it["end_time"])
        for ix in it["interactions"]:
            ix["status"] = ix["status"] or open_status
            ix["duration_ms"] = _ms(ix["start_time"], ix["end_time"])
            for holder in (ix, *ix["actions"]):
                llm = holder.get("llm")
                if isinstance(llm, dict):
                    _count_llm(llm, holder.get("timestamp") or holder["start_time"], totals)
                _finish_times(holder, ("timestamp", "start_time", "end_time"))
        _finish_times(it, ("start_time", "end_time"))
    totals["cost_usd"] = round(totals["cost_usd"], 10)

    meta = fold.meta
    end = fold.end or {}
    end_ns = end.get("t") if fold.end else fold.last_ns
    status = end.get("final_status") or default_status
    metadata: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "workflow_name": meta.get("workflow_name", "unknown"),
        "run_id": meta.get("run_id", "unknown"),
        "parent_run_id": meta.get("parent_run_id"),
        "start_time": iso(fold.start_ns or fold.last_ns or 0),
        "end_time": iso(end_ns),
        "duration_s": round((end_ns - fold.start_ns) / 1e9, 6)
        if end_ns is not None and fold.start_ns is not None
        else None,
        "agentlog_version": meta.get("agentlog_version", "unknown"),
        "verbosity": meta.get("verbosity", 1),
        "python": meta.get("python", ""),
        "platform": meta.get("platform", ""),
        "pid": meta.get("pid", 0),
        "exit_code": end.get("exit_code"),
        "argv": meta.get("argv", []),
        "totals": totals,
    }
    if recovery is not None:
        metadata["recovery"] = recovery
    if isinstance(meta.get("export"), dict):  # live export's counts (OpenTelemetry)
        metadata["export"] = meta["export"]
    resources = list(fold.resources.values())
    for res in resources:
        _finish_times(res, ("first_time", "last_time"))
    for err in fold.errors:
        _finish_times(err, ("timestamp",))
    return {
        "metadata": metadata,
        "iterations": iterations,
        "resources_used": resources,
        "error_log": fold.errors,
        "final_status": status,
    }


def _count_llm(llm: Event, t_ns: Any, totals: dict[str, Any]) -> None:
    totals["llm_calls"] += 1
    with _G_PRICING:
        if isinstance(t_ns, int):
            _pricing.apply(llm, t_ns)
    usage = llm.get("usage")
    if isinstance(usage, dict):
        for kind in _TOKEN_KINDS:
            value = usage.get(kind)
            if isinstance(value, int) and value > 0:
                totals[kind] += value
    cost = llm.get("cost_usd")
    if isinstance(cost, (int, float)) and cost > 0:
        totals["cost_usd"] += cost


_INDENT = orjson.OPT_INDENT_2
_ITERATIONS = b'\n  "iterations": [],\n'
"""The top-level key as ``OPT_INDENT_2`` writes it: a string value never holds a raw
newline and nested keys are indented deeper, so this occurs once."""


def dumps(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=_INDENT | orjson.OPT_APPEND_NEWLINE)


def dumps_parts(document: dict[str, Any]) -> list[bytes]:
    """``dumps(document)`` as parts whose concatenation is the same bytes, *consuming*
    ``document["iterations"]``: each iteration is let go once dumped, so the document
    and its JSON are never both whole in memory (25k calls: ~95 MiB and ~45 MiB)."""
    iterations: list[Event] = document["iterations"]
    if not iterations:
        return [dumps(document)]
    document["iterations"] = []
    head, _, tail = dumps(document).partition(_ITERATIONS)
    parts = [head, b'\n  "iterations": [\n']
    iterations.reverse()
    while iterations:
        # Nested one level down: the same bytes ``dumps`` gives it there.
        item = b"    " + orjson.dumps(iterations.pop(), option=_INDENT).replace(b"\n", b"\n    ")
        parts.append(item + (b",\n" if iterations else b"\n  ],\n"))
    parts.append(tail)
    return parts


def write_atomic(path: Path, data: bytes | list[bytes]) -> None:
    """Write ``data`` (bytes, or parts of it) to ``path``: old content or new, never
    partial, mode 0600.

    A temp file in the same folder (``O_EXCL|O_NOFOLLOW``), fsync, ``os.replace``, then
    fsync of the folder so the rename itself is durable. ``os.replace`` swaps a planted
    symlink for our file instead of writing through it.
    """
    folder = path.parent
    tmp = folder / f".{path.name}.tmp.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            for part in [data] if isinstance(data, bytes) else data:
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_trim: Callable[[int], int] | None = None
_trim_looked = False


def give_back_memory() -> None:
    """Hand the heap space a document build freed back to the OS (glibc's
    ``malloc_trim``); elsewhere a no-op.

    Folding a run is the one time agentlog holds much (25k calls: 130-160 MiB at
    peak); glibc keeps what was freed, so a long-lived process that writes documents
    would otherwise keep that peak in RSS. A few ms (3-9 after a 25k-call document),
    against 1-3 s to build it.
    """
    global _trim, _trim_looked
    if not _trim_looked:
        _trim_looked = True
        try:
            glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
        except (ValueError, OSError):  # not glibc (musl, macOS): nothing to do
            glibc = ""
        if glibc.startswith("glibc"):
            import ctypes  # only here: a few ms to import, and only glibc needs it

            try:
                trim = ctypes.CDLL(None).malloc_trim
                trim.argtypes = [ctypes.c_size_t]
                trim.restype = ctypes.c_int
                _trim = trim
            except (OSError, AttributeError):
                pass
    if _trim is not None:
        _trim(0)


def schema_path() -> Path:
    """The shipped JSON Schema of the document."""
    return Path(__file__).with_name("schema") / "document-v1.schema.json"
