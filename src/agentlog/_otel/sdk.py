"""The OpenTelemetry SDK side: span descriptions become spans with the recorded times.

Imported only when export is on (it imports the SDK and the OTLP exporter).

- ``Ids``: an id generator that can be told the next trace or span id. Our own
  provider uses it so that a run's root span id and a family's trace id derive from
  run ids: a child process's run (``parent_run_id``) hangs under its parent's root span
  whether exported live or after the fact.
- ``Counting``: wraps the OTLP exporter; counts what was acknowledged and what failed,
  never raises, and keeps the exporter's own warnings off the host's stderr.
- ``Emitter``: ``SpanSpec`` -> SDK span (start, then end with the final attributes).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from .._version import __version__
from .mapping import SpanSpec

SCOPE = "agentlog"
TRACES_PATH = "/v1/traces"


# -- ids -------------------------------------------------------------------------------------
def _digest(kind: str, run_id: str, size: int) -> int:
    value = int.from_bytes(hashlib.sha256(f"agentlog.{kind}:{run_id}".encode()).digest()[:size],
                           "big")
    return value or 1  # zero is the invalid id


def trace_id_for(root_run_id: str) -> int:
    """The trace of a family of runs, from the id of the run at its root."""
    return _digest("trace", root_run_id, 16)


def span_id_for(run_id: str) -> int:
    """A run's root span: a child process's run names it as parent by run id alone."""
    return _digest("span", run_id, 8)


class Ids(IdGenerator):
    """Random ids, except the next one when ``preset`` says otherwise (this thread)."""

    def __init__(self) -> None:
        self._next = threading.local()

    def preset(self, trace_id: int | None, span_id: int | None) -> None:
        self._next.trace = trace_id
        self._next.span = span_id

    def generate_span_id(self) -> int:
        value: int | None = getattr(self._next, "span", None)
        if value is not None:
            self._next.span = None
            return value
        return random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        value: int | None = getattr(self._next, "trace", None)
        if value is not None:
            self._next.trace = None
            return value
        return random.getrandbits(128) or 1


def remote_parent(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=True,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED))


# -- the exporter ------------------------------------------------------------------------------
_quiet = threading.local()


class _Quiet(logging.Filter):
    """Drop the SDK's and exporter's log records made on our behalf: an unreachable
    collector must not write to the host's stderr. Counted in the document instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "on", False)


_QUIET = _Quiet()
_QUIET_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace",
)


def quiet_logs(on: bool) -> None:
    """Install (or remove) the filter that silences records made inside ``quiet()``."""
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if on:
            logger.addFilter(_QUIET)
        else:
            logger.removeFilter(_QUIET)


class quiet:
    """``with quiet():`` the OTel log records this thread makes are dropped."""

    def __enter__(self) -> None:
        self.was = getattr(_quiet, "on", False)
        _quiet.on = True

    def __exit__(self, *exc: object) -> None:
        _quiet.on = self.was


class Counting(SpanExporter):
    """Counts spans acknowledged and failed; a failure is a count, never an exception."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.exported = 0
        self.failed = 0
        self.failures = 0
        """Failed export attempts (one per batch)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            with quiet():
                result = self.inner.export(spans)
        except Exception:  # noqa: BLE001 - an exporter bug is a failed batch, not the host's
            result = SpanExportResult.FAILURE
        with self.lock:
            if result == SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed += len(spans)
                self.failures += 1
        return result

    def shutdown(self) -> None:
        try:
            with quiet():
                self.inner.shutdown()
        except Exception:  # noqa: BLE001 - shutting down must not fail the host's exit
            pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def counts(self) -> tuple[int, int, int]:
        """(exported, failed, failures) so far."""
        with self.lock:
            return self.exported, self.failed, self.failures

    def reset_after_fork(self) -> None:
        self.lock = threading.Lock()
        self.exported = self.failed = self.failures = 0


def traces_url(endpoint: str) -> str:
    """A base URL (``http://host:4318``) or a full one (``.../v1/traces``) -> the full one."""
    endpoint = endpoint.strip()
    if endpoint.rstrip("/").endswith(TRACES_PATH):
        return endpoint
    return endpoint.rstrip("/") + TRACES_PATH


def otlp_exporter(endpoint: str | None, timeout_s: float | None = None) -> SpanExporter:
    """The OTLP/HTTP exporter; ``endpoint`` None: the standard ``OTEL_EXPORTER_OTLP_*``
    variables decide, as they would for any OpenTelemetry program."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=traces_url(endpoint) if endpoint else None,
                            timeout=timeout_s)


class Pipeline:
    """Our own TracerProvider, batch processor and counting exporter.

    Never installed as the global provider: the user's own, set before or after, stays
    theirs. ``shutdown_on_exit=False``: the SDK's atexit would wait up to 30 s for an
    unreachable collector; we flush at the end of the run with our own bound instead.
    """

    def __init__(self, exporter: SpanExporter, service_name: str,
                 max_queue: int = 2048, delay_ms: float = 1000.0) -> None:
        self.ids = Ids()
        self.exporter = Counting(exporter)
        attributes: dict[str, Any] = {"telemetry.sdk.name": "opentelemetry"}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = service_name
        self.provider = TracerProvider(resource=Resource.create(attributes),
                                       id_generator=self.ids, shutdown_on_exit=False)
        self.processor = BatchSpanProcessor(self.exporter, max_queue_size=max_queue,
                                            schedule_delay_millis=delay_ms)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer(SCOPE, __version__)

    def flush(self, timeout_s: float) -> bool:
        """Export what is queued; give up waiting after ``timeout_s`` (the SDK's own
        ``force_flush`` ignores its timeout and would wait on a dead collector)."""
        done = threading.Event()

        def work() -> None:
            try:
                with quiet():
                    self.processor.force_flush()
            except Exception:  # noqa: BLE001 - counted by the exporter; never the host's
                pass
            done.set()

        threading.Thread(target=work, name="agentlog-otel-flush", daemon=True).start()
        return done.wait(timeout_s)

    def shutdown(self, timeout_s: float) -> None:
        def work() -> None:
            try:
                with quiet():
                    self.provider.shutdown()
            except Exception:  # noqa: BLE001 - see flush
                pass

        thread = threading.Thread(target=work, name="agentlog-otel-shutdown", daemon=True)
        thread.start()
        thread.join(timeout_s)


def global_provider() -> Any | None:
    """The application's own TracerProvider, if it set one (not the API's proxy)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider) or type(provider).__name__ in (
        "NoOpTracerProvider", "ProxyTracerProvider"
    ):
        return None
    return provider


# -- spans -------------------------------------------------------------------------------------
class Emitter:
    """``SpanSpec`` -> SDK span: started at its recorded start, ended at its recorded end."""

    def __init__(self, tracer: trace.Tracer, ids: Ids | None) -> None:
        self.tracer = tracer
        self.ids = ids
        """Set when the provider is ours: the ids of a run's root span can be chosen."""

    def start(
        self, spec: SpanSpec, parent: SpanContext | None,
        trace_id: int | None = None, span_id: int | None = None,
    ) -> trace.Span:
        context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
        if self.ids is not None and (trace_id is not None or span_id is not None):
            self.ids.preset(trace_id, span_id)
        try:
            return self.tracer.start_span(
                spec.name, context=context,
                kind=SpanKind.CLIENT if spec.client else SpanKind.INTERNAL,
                attributes=spec.attributes, start_time=spec.start_ns,
            )
        finally:
            if self.ids is not None:
                self.ids.preset(None, None)

    @staticmethod
    def finish(span: trace.Span, spec: SpanSpec, end_ns: int | None = None,
               started: SpanSpec | None = None) -> None:
        """End ``span`` with ``spec``'s final name, attributes and status; ``started``:
        the spec it was started with (only what changed since is set again)."""
        if started is None or started.name != spec.name:
            span.update_name(spec.name)
        if started is not spec:
            before = started.attributes if started is not None else {}
            changed = {k: v for k, v in spec.attributes.items() if before.get(k) != v}
            if changed:
                span.set_attributes(changed)
        if spec.error_type is not None:
            span.set_attribute("error.type", spec.error_type)
            span.set_status(Status(StatusCode.ERROR, spec.error_message))
        end = spec.end_ns if spec.end_ns is not None else end_ns
        if end is not None:
            end = max(end, spec.start_ns)
        span.end(end_time=end)

    def emit(self, spec: SpanSpec, parent: SpanContext | None, end_ns: int | None = None) -> (
        SpanContext
    ):
        """A finished span in one go (an action, a one-shot call); its context."""
        span = self.start(spec, parent)
        self.finish(span, spec, end_ns, spec)
        return span.get_span_context()
