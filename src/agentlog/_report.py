"""A run document as one self-contained HTML file: the report ``agentlog view`` opens.

The page (``report/report.html``) is plain HTML, CSS and JavaScript with no build step. The
document goes inside it as JSON in a ``<script type="application/json">`` block, with
every ``<``, ``>`` and ``&`` escaped, so no string in the user's data can close the block
or open a comment. The page names no external URL and its Content-Security-Policy
forbids every fetch, so opening it never touches the network.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import orjson

from . import _document

_TEMPLATE = Path(__file__).with_name("report") / "report.html"
_SLOT = re.compile(r"__AGENTLOG_(TITLE|DATA)__")
# JSON stays JSON with these as \u escapes; U+2028/9 for readers that take it for JS.
_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_UNSAFE_RE = re.compile("[<>&\u2028\u2029]")


def _json(doc: dict[str, Any]) -> str:
    try:
        text = orjson.dumps(doc).decode()
    except TypeError:  # e.g. an int too big for orjson, in a document built by hand
        text = json.dumps(doc, ensure_ascii=False, default=str, allow_nan=False)
    return _UNSAFE_RE.sub(lambda m: _UNSAFE[m.group()], text)


def render(doc: dict[str, Any]) -> str:
    """The complete HTML report of ``doc`` (a schema-v1 document, as ``agentlog.load`` gives)."""
    meta = doc.get("metadata")
    name = meta.get("workflow_name") if isinstance(meta, dict) else None
    slots = {"TITLE": html.escape(str(name or "agentlog run")), "DATA": _json(doc)}
    # One pass over the template only: the data may itself contain a slot's name.
    return _SLOT.sub(lambda m: slots[m.group(1)], _TEMPLATE.read_text(encoding="utf-8"))


def write(doc: dict[str, Any], out: Path) -> Path:
    """Write the report of ``doc`` to ``out`` (atomically, mode 0600) and return ``out``."""
    out = Path(out)
    _document.write_atomic(out, render(doc).encode("utf-8"))
    return out
