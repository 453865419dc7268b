"""The ``agentlog`` command: ``path``, ``recover`` and ``demo`` (more readers come later).

Errors are one line on stderr and a non-zero exit; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _log_dir(explicit: str | None) -> Path:
    from . import _settings

    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("AGENTLOG_DIR")
    return Path(env).expanduser() if env else _settings.default_log_dir()


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentlog", description="Read and repair agentlog run documents, or run the demo."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("path", help="print the log folder in use")
    p.add_argument("--dir", help="a log folder other than the default")
    p.set_defaults(func=_cmd_path)
    p = sub.add_parser("recover", help="turn the journals of dead runs into documents")
    p.add_argument("--dir", help="a log folder other than the default")
    p.set_defaults(func=_cmd_recover)
    p = sub.add_parser(
        "demo",
        help="run a small agent on the openai SDK against a built-in fake server "
        "(no key, no network) and write its document",
    )
    p.add_argument("--dir", help="write the document to this folder")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from . import api

    api.set_logging(False)  # the CLI itself is not a run to record
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, never a traceback
        print(f"agentlog: {exc}", file=sys.stderr)
        return 1
