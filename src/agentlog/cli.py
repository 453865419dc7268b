"""The ``agentlog`` command: read runs (``ls``, ``show``, ``tail``, ``view``), ``path``,
``recover``, ``export`` and ``demo``.

Readers read documents and journals only: no command but ``demo`` imports an SDK or an
integration. Errors are one line on stderr and a non-zero exit; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson

from . import _read

_STATUS_OK = {"completed", "success", "done"}


def _log_dir(explicit: str | None) -> Path:
    from . import _settings

    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("AGENTLOG_DIR")
    return Path(env).expanduser() if env else _settings.default_log_dir()


# -- output -----------------------------------------------------------------------------------
class _Paint:
    """ANSI colour on a terminal only, and never when ``NO_COLOR`` is set (no-color.org)."""

    def __init__(self) -> None:
        self.on = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        enc = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
        self.unicode = enc.startswith("utf")

    def _sgr(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on and text else text

    def bold(self, text: str) -> str:
        return self._sgr("1", text)

    def dim(self, text: str) -> str:
        return self._sgr("2", text)

    def red(self, text: str) -> str:
        return self._sgr("1;31", text)

    def green(self, text: str) -> str:
        return self._sgr("32", text)

    def yellow(self, text: str) -> str:
        return self._sgr("33", text)

    def cyan(self, text: str) -> str:
        return self._sgr("36", text)

    def status(self, status: str) -> str:
        if status in _STATUS_OK:
            return self.green(status)
        if status in ("running", "in_progress"):
            return self.yellow(status)
        return self.red(status)

    @property
    def cross(self) -> str:
        return "\u2717" if self.unicode else "x"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _cost(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if value == 0:
        return "$0"
    return f"${value:.4f}" if value >= 0.01 else f"${value:.6f}"


def _duration(ms: Any) -> str:
    if not isinstance(ms, (int, float)):
        return ""
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _when(iso: Any) -> str:
    """An ISO time as local ``YYYY-MM-DD HH:MM:SS``."""
    if not isinstance(iso, str):
        return "-"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def _ms_between(start: Any, end: Any) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1e3
    except (TypeError, ValueError):
        return None


def _preview(value: Any, width: int = 60) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value).decode("utf-8", "replace")
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _status_of(got: _read.Read) -> str:
    return "running" if got.alive else str(got.doc.get("final_status"))


def _tokens(totals: dict[str, Any]) -> int:
    return int(totals.get("input_tokens") or 0) + int(totals.get("output_tokens") or 0)


def _note_journal(got: _read.Read) -> None:
    """Say on stderr what reading a journal had to leave out."""
    if got.dropped_tail_bytes or got.dropped_lines:
        print(
            f"agentlog: {got.path.name}: left out a torn last line ({got.dropped_tail_bytes} "
            f"bytes) and {got.dropped_lines} unreadable lines",
            file=sys.stderr,
        )


# -- path, recover, demo -----------------------------------------------------------------------
def _cmd_path(args: argparse.Namespace) -> int:
    print(_log_dir(args.dir))
    return 0


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _cmd_recover(args: argparse.Namespace) -> int:
    from . import _lifecycle

    folder = _log_dir(args.dir)
    if not folder.is_dir():
        print(f"agentlog: no log folder at {folder}", file=sys.stderr)
        return 1
    _lifecycle.recover_dir(folder)
    # The pass this process's own import started may have recovered some of them.
    written = [doc for where, doc in _lifecycle.recovered if _same_dir(where, folder)]
    for path in written:
        print(path)
    print(f"recovered {len(written)} run{'s' if len(written) != 1 else ''}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import _demo, api

    if _demo.openai_missing():
        return 1  # checked before recording resumes: a run of nothing leaves no document
    # Unlike the other commands, the demo is a run: recording resumes, at the verbosity
    # the environment asked for. AGENTLOG=0 or AGENTLOG_VERBOSITY=0 still mean off.
    settings = api.RECORDER.settings
    if settings.verbosity > 0:
        api.set_logging(True, verbosity=settings.verbosity)
    return 0 if _demo.run_demo(args.dir) is not None else 1


# -- export --------------------------------------------------------------------------------------
def _cmd_export(args: argparse.Namespace) -> int:
    """Send a finished or recovered run (and the runs of its family) as one trace."""
    endpoint = args.endpoint or None
    if endpoint is None and not (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                                 or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        raise _read.LoadError("no endpoint: pass --endpoint URL (http://host:4318) or set "
                              "OTEL_EXPORTER_OTLP_ENDPOINT")
    got = _read.read(_read.resolve(args.run, _log_dir(args.dir)))
    if got.alive:
        raise _read.LoadError(f"{got.path}: the run is still going; export it once it ends")
    try:
        from ._otel import replay
    except ImportError as exc:
        raise RuntimeError(f"export needs the OpenTelemetry SDK: pip install "
                           f"'agentlog[otel]' ({exc})") from None
    from . import _settings

    content = not args.no_content and _settings.read().capture_content
    reads, root = replay.family(got)
    sent = replay.send(reads, root, endpoint, content, args.timeout)
    for run_id in sent.runs:
        print(f"run {run_id}")
    where = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or \
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    print(f"trace {sent.trace_id}: {_plural(sent.exported, 'span')} of {sent.spans} sent to "
          f"{where}")
    if sent.exported < sent.spans:
        print(f"agentlog: {sent.failed} spans failed and {sent.unsent} were not sent "
              f"within {args.timeout:g} s", file=sys.stderr)
        return 1
    return 0


# -- ls ------------------------------------------------------------------------------------------
def _summary(run: _read.RunFile) -> dict[str, Any]:
    """One ``ls`` row: what a run holds, or why it could not be read."""
    source = "journal" if run.journal else "document"
    row: dict[str, Any] = {"path": str(run.path), "source": source}
    try:
        got = _read.read(run.path)
    except _read.LoadError as exc:
        return {**row, "status": "unreadable", "error": str(exc)}
    meta = got.doc["metadata"]
    totals = meta["totals"]
    row.update(
        path=str(got.path),
        source="journal" if got.journal else "document",
        run_id=meta["run_id"],
        workflow=meta["workflow_name"],
        status=_status_of(got),
        start_time=meta["start_time"],
        end_time=meta["end_time"],
        duration_s=meta["duration_s"],
        iterations=totals["iterations"],
        interactions=totals["interactions"],
        llm_calls=totals["llm_calls"],
        input_tokens=totals["input_tokens"],
        output_tokens=totals["output_tokens"],
        tokens=_tokens(totals),
        cost_usd=totals.get("cost_usd"),
        errors=totals["errors"],
    )
    return row


def _cmd_ls(args: argparse.Namespace) -> int:
    folder = _log_dir(args.dir)
    found = _read.runs(folder)
    if args.n is not None:
        found = found[: max(args.n, 0)]
    rows = [_summary(run) for run in found]
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not rows:
        print(f"agentlog: no runs in {folder}", file=sys.stderr)
        return 0
    paint = _Paint()
    head = ("STARTED", "WORKFLOW", "STATUS", "ITER", "CALLS", "TOKENS", "COST", "ERRORS", "RUN")
    table: list[tuple[str, ...]] = []
    for row in rows:
        if row["status"] == "unreadable":
            table.append(("-", Path(row["path"]).name, "unreadable", "", "", "", "", "", ""))
            continue
        table.append((
            _when(row["start_time"]),
            str(row["workflow"]),
            str(row["status"]),
            f"{row['iterations']:,}",
            f"{row['llm_calls']:,}",
            f"{row['tokens']:,}",
            _cost(row["cost_usd"]),
            f"{row['errors']:,}",
            str(row["run_id"])[-8:],
        ))
    widths = [max(len(r[i]) for r in (head, *table)) for i in range(len(head))]
    right = {3, 4, 5, 6, 7}

    def line(cells: tuple[str, ...], paint_row: bool) -> str:
        out = []
        for i, cell in enumerate(cells):
            padded = cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            if paint_row and i == 2 and cell:
                padded = paint.status(cell) + " " * (widths[i] - len(cell))
            elif paint_row and i == 7 and cell not in ("", "0"):
                padded = paint.red(padded)
            out.append(padded)
        return "  ".join(out).rstrip()

    print(paint.dim(line(head, False)))
    for cells in table:
        print(line(cells, True))
    return 0


# -- show ----------------------------------------------------------------------------------------
def _llm_text(llm: Any, paint: _Paint) -> str:
    if not isinstance(llm, dict):
        return ""
    model = llm.get("response_model") or llm.get("request_model") or llm.get("provider")
    parts = [paint.cyan(str(model))]
    usage = llm.get("usage")
    if isinstance(usage, dict):
        tokens = f"{usage.get('input_tokens') or 0:,} in / {usage.get('output_tokens') or 0:,} out"
        if usage.get("cache_read_input_tokens"):
            tokens += f" ({usage['cache_read_input_tokens']:,} cached)"
        parts.append(tokens)
    else:
        parts.append("usage unknown")
    if llm.get("cost_usd") is not None:
        parts.append(_cost(llm["cost_usd"]))
    if llm.get("streamed"):
        parts.append("streamed" + (" (incomplete)" if llm.get("incomplete") else ""))
    return "  ".join(parts)


def _error_text(err: Any, paint: _Paint) -> str:
    if not isinstance(err, dict):
        return ""
    message = " ".join(str(err.get("error", "")).split())
    return paint.red(f"{paint.cross} {err.get('type', 'Error')}: {message}")


def _show_lines(doc: dict[str, Any], paint: _Paint) -> list[str]:
    """The tree: iterations > interactions (nested by parent) > actions."""
    tee, last, bar = ("\u251c\u2500 ", "\u2514\u2500 ", "\u2502  ") if paint.unicode else (
        "|- ", "`- ", "|  ")
    lines: list[str] = []

    def node_lines(node: dict[str, Any], is_ix: bool) -> tuple[str, list[str]]:
        """(the node's own line, the lines under it that are not children)."""
        if is_ix:
            status = str(node.get("status") or "")
            failed = status not in _STATUS_OK and status != ""
            head = [paint.bold(str(node.get("agent_name")))]
            head.append(paint.status(status) if failed else paint.dim(status))
            llm = _llm_text(node.get("llm"), paint)
            if llm:
                head.append(llm)
            head.append(paint.dim(_duration(node.get("duration_ms"))))
            if node.get("input_data") is not None and not node.get("llm"):
                head.append(paint.dim("in: " + _preview(node.get("input_data"))))
        else:
            head = [str(node.get("action_name"))]
            llm = _llm_text(node.get("llm"), paint)
            if llm:
                head.append(llm)
            ms = node.get("duration_ms")
            if ms is None and isinstance(node.get("llm"), dict):
                ms = node["llm"].get("duration_ms")
            if ms is None:
                ms = _ms_between(node.get("timestamp"), node.get("end_time"))
            head.append(paint.dim(_duration(ms)))
        extra = [_error_text(node["error"], paint)] if node.get("error") else []
        return "  ".join(h for h in head if h), extra

    def walk(children: list[tuple[dict[str, Any], bool]], prefix: str) -> None:
        for i, (node, is_ix) in enumerate(children):
            end = i == len(children) - 1
            text, extra = node_lines(node, is_ix)
            lines.append(prefix + (last if end else tee) + text)
            inner = prefix + ("   " if end else bar)
            kids = _children(node) if is_ix else []
            for e in extra:
                lines.append(inner + (bar if kids else "") + e)
            walk(kids, inner)

    by_parent: dict[Any, list[dict[str, Any]]] = {}

    def _children(ix: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
        items: list[tuple[dict[str, Any], bool]] = [(a, False) for a in ix.get("actions", [])]
        items += [(c, True) for c in by_parent.get(ix.get("interaction_id"), [])]
        items.sort(key=lambda item: str(
            item[0].get("timestamp") if not item[1] else item[0].get("start_time")))
        return items

    for it in doc["iterations"]:
        ixs = it["interactions"]
        ids = {ix.get("interaction_id") for ix in ixs}
        by_parent.clear()
        roots: list[tuple[dict[str, Any], bool]] = []
        for ix in ixs:
            parent = ix.get("parent_interaction_id")
            if parent is not None and parent in ids and parent != ix.get("interaction_id"):
                by_parent.setdefault(parent, []).append(ix)
            else:
                roots.append((ix, True))
        status = str(it.get("status"))
        lines.append(
            "  ".join(
                [
                    paint.bold(f"iteration {it['iteration_number']}"),
                    paint.status(status) if status not in _STATUS_OK else paint.dim(status),
                    paint.dim(_duration(it.get("duration_ms"))),
                ]
            ).rstrip()
        )
        walk(roots, "")
    return lines


def _totals_line(doc: dict[str, Any], paint: _Paint) -> str:
    t = doc["metadata"]["totals"]
    tokens = f"tokens {t['input_tokens']:,} in"
    if t.get("cache_read_input_tokens"):
        tokens += f" ({t['cache_read_input_tokens']:,} cached)"
    tokens += f" / {t['output_tokens']:,} out"
    errors = _plural(t["errors"], "error")
    parts = [
        _plural(t["iterations"], "iteration"),
        _plural(t["interactions"], "interaction"),
        _plural(t["llm_calls"], "LLM call"),
        tokens,
        f"cost {_cost(t.get('cost_usd'))}",
        paint.red(errors) if t["errors"] else errors,
    ]
    if t.get("dropped_events"):
        parts.append(paint.red(_plural(t["dropped_events"], "dropped event")))
    return paint.bold("totals") + "  " + ", ".join(parts)


def _cmd_show(args: argparse.Namespace) -> int:
    got = _read.read(_read.resolve(args.run, _log_dir(args.dir)))
    _note_journal(got)
    doc, paint = got.doc, _Paint()
    meta = doc["metadata"]
    out = [
        "  ".join([
            paint.bold(str(meta["workflow_name"])),
            paint.status(_status_of(got)),
            paint.dim(f"run {meta['run_id']}"),
        ]),
        paint.dim(
            f"started {_when(meta['start_time'])}"
            + (f", took {meta['duration_s']:.2f} s" if meta.get("duration_s") is not None else "")
            + f", pid {meta['pid']}"
        ),
        paint.dim(str(got.path) + ("  (journal: the run is still going)" if got.alive else
                                   "  (journal of a crashed run)" if got.journal else "")),
        "",
        *_show_lines(doc, paint),
    ]
    if doc["resources_used"]:
        out.append("")
        out.append(paint.bold("resources"))
        for res in doc["resources_used"]:
            out.append(f"  {res.get('kind')}  {res.get('resource')}  x{res.get('count')}")
    if doc["error_log"]:
        out.append("")
        out.append(paint.red(f"errors ({len(doc['error_log'])})"))
        for err in doc["error_log"]:
            where = err.get("where") or {}
            at = ", ".join(
                f"{label} {where[key]}"
                for key, label in (("iteration_number", "iteration"), ("agent_name", "agent"))
                if where.get(key) is not None
            )
            out.append("  " + _error_text(err, paint) + (paint.dim(f"  ({at})") if at else ""))
    out.append("")
    out.append(_totals_line(doc, paint))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


# -- tail ------------------------------------------------------------------------------------------
class _Tail:
    """Journal events as one human-readable line each."""

    def __init__(self, paint: _Paint) -> None:
        self.paint = paint
        self.numbers: dict[Any, Any] = {}
        self.agents: dict[Any, Any] = {}
        self.seen_header = False

    def line(self, ev: dict[str, Any]) -> str | None:
        p = self.paint
        kind = ev.get("ev")
        t = ev.get("t")
        stamp = (
            datetime.fromtimestamp(t / 1e9).strftime("%H:%M:%S.%f")[:-3]
            if isinstance(t, int) else " " * 12
        )
        text: str
        if kind == "run":
            self.seen_header = True
            text = p.bold(f"run {ev.get('run_id')} started: workflow {ev.get('workflow_name')}, "
                          f"pid {ev.get('pid')}")
        elif kind == "meta":
            fields = {k: v for k, v in ev.items() if k not in ("seq", "ev", "t")}
            text = p.dim("meta " + ", ".join(f"{k}={v}" for k, v in fields.items()))
        elif kind == "iteration_start":
            self.numbers[ev.get("it")] = ev.get("number")
            text = p.bold(f"iteration {ev.get('number')} started")
        elif kind == "iteration_end":
            status = str(ev.get("status", "completed"))
            text = f"iteration {self.numbers.get(ev.get('it'), '?')} ended: " + (
                p.dim(status) if status in _STATUS_OK else p.status(status))
        elif kind == "interaction_start":
            self.agents[ev.get("ix")] = ev.get("agent")
            text = f"{p.bold(str(ev.get('agent')))} started  {p.dim(_preview(ev.get('input')))}"
        elif kind == "interaction_end":
            agent = self.agents.pop(ev.get("ix"), "interaction")
            status = str(ev.get("status", "completed"))
            text = f"{p.bold(str(agent))} ended: " + (
                p.dim(status) if status in _STATUS_OK else p.status(status))
            if ev.get("output") is not None:
                text += "  " + p.dim(_preview(ev.get("output")))
        elif kind in ("interaction", "action"):
            name = ev.get("agent") if kind == "interaction" else ev.get("name")
            if kind == "action" and ev.get("ix") in self.agents:
                name = f"{self.agents[ev.get('ix')]} > {name}"
            text = p.bold(str(name))
            llm = _llm_text(ev.get("llm"), p)
            if llm:
                text += "  " + llm
            else:
                text += "  " + p.dim(f"{_preview(ev.get('input'), 40)} -> "
                                     f"{_preview(ev.get('output'), 40)}")
            if isinstance(ev.get("t_end"), int) and isinstance(t, int):
                text += "  " + p.dim(_duration((ev["t_end"] - t) / 1e6))
        elif kind == "resource":
            text = f"resource {ev.get('kind', 'other')} {ev.get('resource')}"
        elif kind == "error":
            text = _error_text(ev, p)
        elif kind == "dropped":
            text = p.red(f"{ev.get('count')} events dropped so far")
        else:
            text = p.dim(f"{kind} {_preview(ev)}")
        error = ev.get("error") if kind != "error" else None
        if isinstance(error, dict):
            text += "  " + _error_text(error, p)
        return f"{p.dim(stamp)}  {text}"


def _cmd_tail(args: argparse.Namespace) -> int:
    folder = _log_dir(args.dir)
    path = _read.resolve(args.run, folder, journals_only=True)
    if not path.name.endswith(".jsonl"):
        raise _read.LoadError(
            f"{path}: a finished run's document, not a journal (read it with agentlog show)"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _read.LoadError(f"{path}: no such journal (the run may have just ended)") from None
    tail = _Tail(_Paint())
    buf = b""
    offset = 0
    last_check = time.monotonic()
    ended: str | None = None
    try:
        while True:
            chunk = os.pread(fd, 1 << 20, offset)
            if chunk:
                offset += len(chunk)
                *lines, buf = (buf + chunk).split(b"\n")
                for raw in lines:
                    _tail_line(tail, raw, path)
                sys.stdout.flush()
                continue
            if not args.follow or ended is not None:
                break
            # Caught up: has the run ended (journal removed) or died (its lock is free)?
            if not path.exists():
                ended = "ended"
                continue  # one more read: the last lines may have landed meanwhile
            now = time.monotonic()
            if now - last_check >= 1.0:
                last_check = now
                if not _read.journal_alive(path):
                    ended = "crashed"
                    continue
            time.sleep(0.1)
    finally:
        os.close(fd)
    if not tail.seen_header:
        raise _read.LoadError(f"{path}: not an agentlog journal (no run header)")
    if buf:
        print(f"agentlog: {path.name}: a torn last line ({len(buf)} bytes) left out",
              file=sys.stderr)
    if ended == "ended":
        doc = path.with_name(path.name.removesuffix(".jsonl") + ".json")
        status = "?"
        try:
            status = str(_read.load(doc).get("final_status"))
        except ValueError:
            pass
        print(f"run ended: {status}; document {doc}")
    elif ended == "crashed":
        print("run ended: its process is gone (crashed); agentlog recover makes its document")
    return 0


def _tail_line(tail: _Tail, raw: bytes, path: Path) -> None:
    if not raw.strip():
        return
    try:
        ev = orjson.loads(raw)
    except orjson.JSONDecodeError:
        ev = None
    if not isinstance(ev, dict) or (not tail.seen_header and ev.get("ev") != "run"):
        if not tail.seen_header:
            raise _read.LoadError(f"{path}: not an agentlog journal (no run header)")
        print(f"agentlog: {path.name}: an unreadable line left out", file=sys.stderr)
        return
    text = tail.line(ev)
    if text is not None:
        sys.stdout.write(text + "\n")


# -- view ------------------------------------------------------------------------------------------
def _cmd_view(args: argparse.Namespace) -> int:
    import webbrowser

    got = _read.read(_read.resolve(args.run, _log_dir(args.dir)))
    _note_journal(got)
    name = got.path.name.removesuffix(".jsonl").removesuffix(".json")
    out = Path(args.output).expanduser() if args.output else got.path.with_name(name + ".html")
    try:
        report = importlib.import_module("agentlog._report")
    except ImportError:
        raise RuntimeError("the HTML report is not available in this version") from None
    written: Path = report.write(got.doc, out)
    print(written)
    if not args.no_open:
        webbrowser.open(written.resolve().as_uri())
    return 0


# -- the parser --------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not usage plus error: ``agentlog ls: ...; see agentlog ls --help``."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


_RUN_HELP = "a document (.json), a journal (.jsonl), a run id (or a unique part of it), or " \
    "'last' (the default): the newest run in the log folder"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="agentlog",
        description="Read agentlog runs (ls, show, tail, view), find and repair them (path, "
        "recover), export them (export otlp), or run the demo.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, func: Any, dir_help: str | None = None) -> Any:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--dir", help=dir_help or "a log folder other than the default")
        p.set_defaults(func=func)
        return p

    p = command("ls", "list recent runs, newest first", _cmd_ls)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-n", type=int, default=20, metavar="N", help="how many runs (default 20)")
    p = command(
        "show", "a run as a tree of iterations, interactions and actions, with totals", _cmd_show
    )
    p.add_argument("run", nargs="?", default="last", metavar="FILE|RUN_ID|last", help=_RUN_HELP)
    p = command("tail", "print a run's journal, one event a line", _cmd_tail)
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep following a running workflow until it ends (Ctrl-C stops)")
    p.add_argument("run", nargs="?", default="last", metavar="FILE|RUN_ID|last",
                   help="a journal (.jsonl), a run id, or 'last': the newest journal")
    p = command("view", "write a run's one-file HTML report and open it", _cmd_view)
    p.add_argument("run", nargs="?", default="last", metavar="FILE|RUN_ID|last", help=_RUN_HELP)
    p.add_argument("-o", "--output", metavar="OUT",
                   help="where to write the report (default: beside the run, .html)")
    p.add_argument("--no-open", action="store_true", help="write it, do not open a browser")
    p = command("export", "send a finished or recovered run to an OpenTelemetry backend "
                "(OTLP over HTTP); runs linked by parent_run_id become one trace", _cmd_export)
    p.add_argument("format", choices=["otlp"], help="the protocol: otlp (OTLP/HTTP, protobuf)")
    p.add_argument("run", nargs="?", default="last", metavar="FILE|RUN_ID|last", help=_RUN_HELP)
    p.add_argument("--endpoint", metavar="URL",
                   help="the collector, e.g. http://localhost:4318 (or its /v1/traces URL); "
                   "default: OTEL_EXPORTER_OTLP_ENDPOINT")
    p.add_argument("--no-content", action="store_true",
                   help="leave prompts, outputs and tool arguments out")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="how long to wait for the collector (default 30 s)")
    command("path", "print the log folder in use", _cmd_path)
    command("recover", "turn the journals of dead runs into documents", _cmd_recover)
    command(
        "demo",
        "run a small agent on the openai SDK against a built-in fake server "
        "(no key, no network) and write its document",
        _cmd_demo,
        dir_help="write the document to this folder",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from . import api

    api.set_logging(False)  # the CLI itself is not a run to record
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # ``agentlog tail | head``: the reader left; say nothing, as ``cat`` would.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except Exception as exc:  # noqa: BLE001 - one line for the user, never a traceback
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"agentlog: {message}", file=sys.stderr)
        return 1
