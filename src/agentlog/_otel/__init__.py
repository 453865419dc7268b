"""OpenTelemetry export (the ``agentlog[otel]`` extra): live, and after the fact.

- ``mapping``: agentlog's records -> span descriptions (GenAI semantic conventions);
  pure Python, no OpenTelemetry import.
- ``sdk``: span descriptions -> SDK spans with the recorded times; the OTLP exporter.
- ``live``: a recorder sink that exports while the run goes (``AGENTLOG_OTLP_ENDPOINT``).
- ``replay``: ``agentlog export otlp``: a finished or recovered run's document.

Nothing here is imported unless export is asked for: ``import agentlog`` stays light.
"""
