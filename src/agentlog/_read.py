"""Readers' side: load a document or fold a journal, validate it, find runs in a folder.

Readers read documents and journals only; nothing here imports an integration. The
schema check is a small validator for the keywords ``document-v1.schema.json`` uses, so
that ``agentlog.load`` needs no dependency beyond the core's (jsonschema is a test
dependency; the tests check this validator against it).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from . import _document, _journal, _recorder

_NAME = re.compile(r"_(\d{8}_\d{6})_([0-9A-Za-z]{8})$")
"""``<workflow>_<date>_<time>_<last 8 of run id>``: the stem of every file a run writes."""
_HEAD_RUN_ID = re.compile(rb'"run_id":\s*"([^"]{1,200})"')


class LoadError(ValueError):
    """A file that is not a readable agentlog document or journal; the message is one line."""


# -- the schema -----------------------------------------------------------------------------
@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = orjson.loads(_document.schema_path().read_bytes())
    return schema


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
KEYWORDS = frozenset(
    {
        "type", "required", "properties", "additionalProperties", "items", "$ref", "anyOf",
        "const", "minimum", "maximum", "minLength", "pattern",
        # annotations only
        "$schema", "$id", "$defs", "title", "description",
    }
)
"""Every keyword the validator understands; a test checks the schema uses no other."""


@cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _where(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "the document"


def _check(value: Any, schema: Any, path: tuple[str | int, ...]) -> str | None:
    """The first way ``value`` breaks ``schema`` (a problem in one line), or None."""
    if schema is True:
        return None
    if schema is False:
        return f"{_where(path)}: not allowed"
    ref = schema.get("$ref")
    if ref is not None:
        target: Any = _schema()
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        problem = _check(value, target, path)
        if problem:
            return problem
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[name](value) for name in names):
            return f"{_where(path)}: expected {' or '.join(names)}, found {_kind(value)}"
    if "const" in schema and value != schema["const"]:
        return f"{_where(path)}: expected {schema['const']!r}, found {value!r}"
    if "anyOf" in schema:
        problems = [_check(value, sub, path) for sub in schema["anyOf"]]
        if all(problems):
            return problems[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{_where(path)}: {value} is below {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{_where(path)}: {value} is above {schema['maximum']}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{_where(path)}: too short"
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            return f"{_where(path)}: {value[:60]!r} is not in the expected form"
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                return f"{_where(path)}: missing {key!r}"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub = props.get(key, extra)
            problem = _check(item, sub, (*path, key)) if sub is not True else None
            if problem:
                return problem if sub is not False else f"{_where(path)}: unexpected {key!r}"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problem = _check(item, schema["items"], (*path, i))
            if problem:
                return problem
    return None


def _kind(value: Any) -> str:
    for name, test in _TYPES.items():
        if test(value):
            return "a number" if name == "number" else f"{'an' if name[0] in 'ao' else 'a'} {name}"
    return type(value).__name__


def problem(doc: Any) -> str | None:
    """Why ``doc`` is not a valid schema-v1 document, in one line; None when it is."""
    if not isinstance(doc, dict) or "metadata" not in doc:
        return f"expected a JSON object with metadata, iterations, ... (found {_kind(doc)})" \
            if not isinstance(doc, dict) else "no metadata: not an agentlog document"
    return _check(doc, _schema(), ())


# -- reading -----------------------------------------------------------------------------------
def _fail(path: Path, why: str) -> LoadError:
    return LoadError(f"{path}: {why}")


def journal_alive(path: Path) -> bool:
    """The journal's owner still runs: its lock is held, and by a process that exists.

    A recoverer (another process's import, ``agentlog recover``) holds the lock of a dead
    run's journal too, while it folds it; the header's pid tells the two apart.
    """
    fd = _journal.try_lock(path)
    if fd is not None:
        os.close(fd)
        return False
    try:
        with open(path, "rb") as f:
            header = orjson.loads(f.readline())
        pid = header.get("pid") if isinstance(header, dict) else None
    except (OSError, orjson.JSONDecodeError):
        return path.exists()
    if isinstance(pid, int) and pid > 0:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            pass  # it exists, under another user
    return True


@dataclass
class Read:
    """A run as read: its document, and what reading it found."""

    doc: dict[str, Any]
    path: Path
    journal: bool = False
    alive: bool = False
    dropped_tail_bytes: int = 0
    dropped_lines: int = 0


def fold_journal(path: Path, data: bytes, alive: bool) -> Read:
    """A journal folded into a document, as recovery would (``crashed``) or, while its
    process lives, as a ``save_log()`` snapshot would (``in_progress``)."""
    parsed = _journal.parse(data)
    if not any(e.get("ev") == "run" for e in parsed.events):
        if data and b"\n" not in data:
            raise _fail(path, "truncated journal: not even its first line is whole")
        raise _fail(path, "not an agentlog journal (no run header)")
    doc = fold(parsed, path.name, alive)
    return Read(doc, path, True, alive, parsed.dropped_tail_bytes, parsed.bad_lines)


def fold(parsed: _journal.ReadResult, name: str, alive: bool) -> dict[str, Any]:
    """A parsed journal as a document: ``crashed``, with what recovery dropped, when its
    process is dead; ``in_progress`` while it lives."""
    if alive:
        return _document.build(parsed.events, default_status="in_progress")
    recovery = {
        "recovered_at": _document.iso(_recorder.now_ns()),
        "journal": name,
        "dropped_tail_bytes": parsed.dropped_tail_bytes,
        "dropped_lines": parsed.bad_lines,
    }
    return _document.build(parsed.events, default_status="crashed", recovery=recovery)


def read(path: Path) -> Read:
    """Read a document (``.json``) or a journal (``.jsonl``); raise ``LoadError``."""
    path = Path(path)
    is_journal = path.name.endswith(_journal.JOURNAL_SUFFIX)
    try:
        if is_journal:
            alive = journal_alive(path)
            data = path.read_bytes()
        else:
            data = path.read_bytes()
    except FileNotFoundError:
        sibling = path.with_name(path.name.removesuffix(_journal.JOURNAL_SUFFIX) + ".json")
        if is_journal and sibling.is_file():
            return read(sibling)  # its run ended, or it was recovered, meanwhile
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a folder, not a run document") from None
    except OSError as exc:
        raise _fail(path, f"cannot read it ({exc.strerror or exc})") from None
    if is_journal:
        result = fold_journal(path, data, alive)
    else:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            why = "empty file" if not data.strip() else (
                "truncated JSON" if "unexpected end" in str(exc) else "not JSON")
            raise _fail(path, f"not an agentlog document ({why})") from None
        result = Read(doc, path)
    found = problem(result.doc)
    if found:
        raise _fail(path, f"not a valid agentlog document: {found}")
    return result


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's document as plain Python data, checked against the schema.

    ``path`` is a document (``.json``) or the journal of a run still going or crashed
    (``.jsonl``), which is folded the way recovery folds it. Raises ``ValueError`` (a
    ``LoadError``) with a one-line message when the file is missing or not a run.
    """
    return read(Path(path)).doc


# -- runs in a folder ----------------------------------------------------------------------
@dataclass
class RunFile:
    path: Path
    journal: bool
    started: float
    """Start time (epoch seconds) from the file name, else the file's mtime."""
    mtime: float

    @property
    def stem(self) -> str:
        suffix = _journal.JOURNAL_SUFFIX if self.journal else _document.DOCUMENT_SUFFIX
        return self.path.name.removesuffix(suffix)

    def run_id(self) -> str:
        """The full run id, from the journal's first line or the document's head."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(65536)
        except OSError:
            head = b""
        found = _HEAD_RUN_ID.search(head)
        if found:
            return found.group(1).decode("utf-8", "replace")
        named = _NAME.search(self.stem)
        return named.group(2) if named else self.stem


def _started(stem: str, mtime: float) -> float:
    named = _NAME.search(stem)
    if named:
        try:
            return time.mktime(time.strptime(named.group(1), "%Y%m%d_%H%M%S"))
        except (ValueError, OverflowError):
            pass
    return mtime


def runs(folder: Path) -> list[RunFile]:
    """Every run in ``folder``, newest start first; one entry per run.

    A run with both files (its journal and a ``save_log()`` snapshot, or a document
    written just now) is listed by its journal while that lives, else by its document.
    """
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        raise LoadError(f"no log folder at {folder}") from None
    except OSError as exc:
        raise LoadError(f"cannot read the log folder {folder} ({exc.strerror})") from None
    by_stem: dict[str, RunFile] = {}
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue  # temp files of atomic writes
        journal = name.endswith(_journal.JOURNAL_SUFFIX)
        if not journal and not name.endswith(_document.DOCUMENT_SUFFIX):
            continue
        try:
            if not entry.is_file():
                continue
            mtime = entry.stat().st_mtime
        except OSError:
            continue  # gone meanwhile
        path = Path(entry.path)
        found = RunFile(path, journal, 0.0, mtime)
        found.started = _started(found.stem, mtime)
        other = by_stem.get(found.stem)
        if other is None or _prefer(found, other):
            by_stem[found.stem] = found
    # Names hold the second a run started; within one second, the run ids (ULIDs, whose
    # head is the start in milliseconds) order them. Read only for such ties.
    seconds: dict[float, int] = {}
    for run in by_stem.values():
        seconds[run.started] = seconds.get(run.started, 0) + 1

    def key(run: RunFile) -> tuple[float, str, float]:
        return (run.started, run.run_id() if seconds[run.started] > 1 else "", run.mtime)

    return sorted(by_stem.values(), key=key, reverse=True)


def _prefer(a: RunFile, b: RunFile) -> bool:
    """Of a run's two files, is ``a`` the one to read?"""
    journal, document = (a, b) if a.journal else (b, a)
    if journal_alive(journal.path):
        return a is journal
    try:
        status: object = orjson.loads(document.path.read_bytes()).get("final_status")
        final = status != "in_progress"
    except (OSError, orjson.JSONDecodeError, AttributeError):
        final = False
    return (a is document) == final


def _iter_matches(spec: str, found: list[RunFile]) -> Iterator[RunFile]:
    wanted = spec.upper()
    for run in found:
        if spec in (run.stem, run.path.name):
            yield run
            continue
        rid = run.run_id().upper()
        if rid == wanted or (len(wanted) >= 4 and (rid.startswith(wanted) or rid.endswith(wanted))):
            yield run


def resolve(spec: str | None, folder: Path, journals_only: bool = False) -> Path:
    """``FILE``, ``RUN_ID`` (whole, or a unique prefix or suffix) or ``last`` -> a path.

    With ``journals_only``, ``last`` is the newest run that still has a journal.
    """
    spec = spec or "last"
    if spec != "last":
        candidate = Path(spec).expanduser()
        if candidate.exists() or os.sep in spec or spec.endswith((".json", ".jsonl")):
            return candidate  # a path: read() says what is wrong with it, if anything
    found = runs(folder)
    if not found:
        raise LoadError(f"no runs in {folder}")
    if spec == "last":
        if journals_only:
            found = [run for run in found if run.journal]
            if not found:
                raise LoadError(f"no run with a journal (running or crashed) in {folder}")
        return found[0].path
    matches = list(_iter_matches(spec, found))
    if not matches:
        raise LoadError(f"no run {spec!r} in {folder}")
    if len(matches) > 1:
        names = ", ".join(m.path.name for m in matches[:3]) + (", ..." if len(matches) > 3 else "")
        raise LoadError(f"run id {spec!r} is ambiguous in {folder}: {names}")
    return matches[0].path
