"""Settings, read once from ``AGENTLOG_*`` into a frozen object."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

_FALSE = {"0", "false", "no", "off", ""}


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() not in _FALSE


def _number(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return min(max(value, low), high)


def script_stem() -> str:
    """The running script's stem: what a user calls their workflow."""
    argv = getattr(sys, "argv", None) or [""]
    first = argv[0] if argv else ""
    if first in ("", "-c"):
        return "python"
    if first == "-m":
        return "python_m"
    path = Path(first)
    stem = path.stem
    if stem == "__main__":  # ``python -m package``: the package names the workflow
        stem = path.parent.name
    return stem or "python"


@dataclass(frozen=True)
class Settings:
    enabled: bool
    verbosity: int
    log_dir: Path | None
    workflow_name: str | None
    capture_content: bool
    disabled_integrations: frozenset[str]
    flush_interval_s: float
    shutdown_timeout_s: float
    max_queue_events: int
    recover_on_import: bool
    otlp: str | None = None
    """Live OpenTelemetry export: None off; a URL (``AGENTLOG_OTLP_ENDPOINT``); or ""
    when ``AGENTLOG_EXPORT=otlp`` leaves the endpoint to ``OTEL_EXPORTER_OTLP_*``."""

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def read() -> Settings:
    """Read every setting from the environment; called once at import."""
    enabled = _flag("AGENTLOG", True) and not _flag("AGENTLOG_DISABLED", False)
    verbosity = int(_number("AGENTLOG_VERBOSITY", 1, 0, 3))
    log_dir_raw = os.environ.get("AGENTLOG_DIR")
    disabled = frozenset(
        part.strip().lower()
        for part in os.environ.get("AGENTLOG_DISABLE", "").split(",")
        if part.strip()
    )
    return Settings(
        enabled=enabled,
        verbosity=verbosity,
        log_dir=Path(log_dir_raw).expanduser() if log_dir_raw else None,
        workflow_name=os.environ.get("AGENTLOG_WORKFLOW") or None,
        capture_content=_flag("AGENTLOG_CAPTURE_CONTENT", True),
        disabled_integrations=disabled,
        flush_interval_s=_number("AGENTLOG_FLUSH_INTERVAL", 0.5, 0.01, 60.0),
        shutdown_timeout_s=_number("AGENTLOG_SHUTDOWN_TIMEOUT", 2.0, 0.1, 60.0),
        max_queue_events=int(_number("AGENTLOG_MAX_QUEUE", 100_000, 100, 10_000_000)),
        recover_on_import=_flag("AGENTLOG_RECOVER", True),
        otlp=_otlp(),
    )


def _otlp() -> str | None:
    endpoint = os.environ.get("AGENTLOG_OTLP_ENDPOINT", "").strip()
    if endpoint:
        return endpoint
    asked = os.environ.get("AGENTLOG_EXPORT", "").strip().lower() == "otlp"
    standard = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT")
    return "" if asked and standard else None


def default_log_dir() -> Path:
    """Where documents go unless ``AGENTLOG_DIR`` or ``logs_dir`` says otherwise."""
    import platformdirs  # imported here: it costs import time that most runs never need

    return Path(platformdirs.user_log_path("agentlog"))
