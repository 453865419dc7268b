"""agentlog: zero-config logging for LLM agent workflows.

``import agentlog`` starts recording the run; the document is written at exit.
"""

from __future__ import annotations

import sys

from . import _guard, _lifecycle, api, integrations
from ._read import load
from ._version import __version__
from .api import (
    AdvancedWorkflowLogger,
    AutoIterationLogger,
    UsageError,
    add_resource,
    agent,
    finalize_workflow,
    interaction,
    iteration,
    log_error,
    log_interaction,
    save_log,
    set_logging,
    start_workflow,
    tool,
)


def uninstall() -> None:
    """Stop recording and put back every patched SDK method (``set_logging(True)`` undoes)."""
    set_logging(False)


__all__ = [
    "AdvancedWorkflowLogger",
    "AutoIterationLogger",
    "UsageError",
    "__version__",
    "add_resource",
    "agent",
    "finalize_workflow",
    "interaction",
    "iteration",
    "load",
    "log_error",
    "log_interaction",
    "save_log",
    "set_logging",
    "start_workflow",
    "tool",
    "uninstall",
]


def _close_open_calls() -> None:
    llm = sys.modules.get("agentlog.integrations._llm")
    if llm is not None:  # only once an SDK was imported and patched
        llm.close_open_calls()


_export_missing = False


def _export_on() -> None:
    """Live OpenTelemetry export; its modules (and the SDK) load only now."""
    global _export_missing
    try:
        from ._otel import live
    except ImportError as exc:  # the extra is not installed: say so once, export nothing
        if not _export_missing:
            _export_missing = True
            sys.stderr.write(f"agentlog: OTLP export needs pip install 'agentlog[otel]' "
                             f"({exc})\n")
        return
    live.install(api.RECORDER, api.RECORDER.settings.otlp or "")


def _export_off() -> None:
    live = sys.modules.get("agentlog._otel.live")
    if live is not None:
        live.uninstall(api.RECORDER)


def _start() -> None:
    recorder = api.RECORDER
    settings = recorder.settings
    if not settings.enabled:
        return  # AGENTLOG=0: every function stays callable and does nothing
    with _guard.internal_errors("import"):
        _guard.diagnostics = recorder.verbosity >= 3

        def _to_error_log(name: str, exc: BaseException) -> None:
            rec = api.RECORDER
            if rec.run.finalized:
                return  # its document is written; an error alone must not start a new run
            try:
                api.record_error(exc, source=f"agentlog:{name}", with_traceback=True)
            except Exception:  # noqa: BLE001 - the serializer or journal itself is failing
                rec.keep_error(f"agentlog:{name}", exc)

        _guard.on_error = _to_error_log
        _lifecycle.extensions.append(
            (lambda: integrations.install_all(settings.disabled_integrations),
             integrations.uninstall_all)
        )
        recorder.before_finalize.append(_close_open_calls)
        if settings.otlp is not None:  # after _close_open_calls: its records are exported
            _lifecycle.extensions.append((_export_on, _export_off))
        _lifecycle.register_fork_handler()
        if recorder.verbosity > 0:
            _lifecycle.install_hooks()
            if settings.recover_on_import:
                _lifecycle.recover_in_background(settings.log_dir)


_start()
