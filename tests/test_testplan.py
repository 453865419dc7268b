"""Every row of TESTPLAN.md is covered by a test module, or says why it does not apply.

A test module names the rows it covers in its module docstring, one line per row:
``Covers A3: <what is checked>``, or ``Not applicable A5: <one-line reason>`` for a row
that does not touch its subject. This test reads every row id out of
``../shared/TESTPLAN.md`` (skipped when the file is absent: it lives outside the
repository) and fails for a row that no module under ``tests/`` names, for a name that
is not a row (a typo would hide a gap), and for a line with nothing after its colon.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from helpers import SHARED

TESTS = Path(__file__).resolve().parent
TESTPLAN = SHARED / "TESTPLAN.md"
_ROW = re.compile(r"^\|\s*([A-Z]\d+)\s*\|", re.MULTILINE)
_CLAIM = re.compile(r"^\s*(Covers|Not applicable) ([A-Z]\d+)\s*:(.*)$", re.MULTILINE)


def rows(text: str) -> list[str]:
    """Row ids in the order TESTPLAN lists them."""
    return _ROW.findall(text)


def claims(folder: Path) -> dict[str, list[tuple[str, str, str]]]:
    """Row id -> [(module, "Covers" or "Not applicable", text)] from module docstrings."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for path in sorted(folder.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        for kind, row, text in _CLAIM.findall(doc or ""):
            found.setdefault(row, []).append((str(path.relative_to(folder)), kind, text.strip()))
    return found


def test_rows_are_parsed_from_a_sample() -> None:
    """The parsers find table rows and docstring claims, and nothing else."""
    sample = "| # | x |\n|---|---|\n| A1 | bug |\n| B10 | y |\n text | C3 | no\n"
    assert rows(sample) == ["A1", "B10"]
    doc = "Covers A1: checked.\n  Not applicable B10: no threads here.\nCovers A2 without colon\n"
    assert [(k, r) for k, r, _ in _CLAIM.findall(doc)] == [("Covers", "A1"),
                                                          ("Not applicable", "B10")]


def test_every_testplan_row_is_covered_or_has_a_reason() -> None:
    """Each TESTPLAN row is named by a ``Covers``/``Not applicable`` line in some module
    docstring under tests/; every named row exists; every line says something."""
    if not TESTPLAN.exists():
        pytest.skip(f"{TESTPLAN} is not here (it lives outside the repository)")
    wanted = rows(TESTPLAN.read_text(encoding="utf-8"))
    assert len(wanted) >= 30 and len(set(wanted)) == len(wanted), wanted
    found = claims(TESTS)
    missing = [row for row in wanted if row not in found]
    unknown = sorted(row for row in found if row not in wanted)
    empty = [f"{m}: {k} {row}" for row, items in found.items() for m, k, text in items
             if not text]
    only_na = [row for row in wanted if row in found
               and all(k == "Not applicable" for _, k, _ in found[row])]
    problems = []
    if missing:
        problems.append(f"rows neither covered nor given a reason: {', '.join(missing)}")
    if unknown:
        problems.append(f"named in tests but not rows of TESTPLAN: {', '.join(unknown)}")
    if empty:
        problems.append("lines with nothing after the colon: " + "; ".join(empty))
    assert not problems, "\n".join(problems)
    covered = len(wanted) - len(only_na)
    print(f"\nTESTPLAN rows: {len(wanted)}; covered by a test: {covered}; "
          f"not applicable anywhere: {', '.join(only_na) or 'none'}")
