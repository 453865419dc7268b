"""LLM-call overhead against the bare SDK, as ratios measured side by side in one run.

    python benchmarks/bench_llm.py [--quick]

The real ``openai`` and ``anthropic`` SDKs call an in-process ``httpx2.MockTransport``
(no sockets), so the SDK's own work is all that is left to compare with. Three modes
alternate round by round, so that all of them see the same noise:

- bare: agentlog uninstalled (the SDK's original methods);
- v1: recording at verbosity 1;
- v0: patched, at verbosity 0 (the fast path);
- otel: v1 with live OpenTelemetry export on (``AGENTLOG_OTLP_ENDPOINT``) to a no-op
  OTLP/HTTP collector on loopback, in a process of its own (skipped without the SDK).

Reports per call: openai chat non-streamed, anthropic messages non-streamed; and per
chunk for streams: the slope between a short and a long stream, so the per-call part
cancels out. Cost is priced when the document is folded, at exit, not per call (live
export prices each call when its span is made, off the caller's thread).

Live export does its work where records are journaled (LLM records: in batches, on the
flusher thread) and exports on the SDK's batch thread: the side-by-side figure is what
the host sees; the work itself, per span, is reported apart.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("AGENTLOG_DIR", tempfile.mkdtemp(prefix="agentlog-bench-"))

_COLLECTOR = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""
"""A no-op OTLP/HTTP collector: answers every export with 200, in its own process so
that its work is not the host's."""
_collector: subprocess.Popen[str] | None = None
if importlib.util.find_spec("opentelemetry.sdk") is not None:
    _collector = subprocess.Popen([sys.executable, "-c", _COLLECTOR], stdout=subprocess.PIPE,
                                  text=True)
    assert _collector.stdout is not None
    os.environ["AGENTLOG_OTLP_ENDPOINT"] = f"http://127.0.0.1:{_collector.stdout.readline()}"

# Imported after the endpoint is set: agentlog reads its settings once, at import.
import anthropic  # noqa: E402
import httpx2  # noqa: E402
import openai  # noqa: E402

import agentlog  # noqa: E402

_MODEL = "gpt-4o-mini-2024-07-18"


def _chat_json(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json={
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": _MODEL,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Paris."}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    })


def _chat_sse(chunks: int) -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None) -> str:
        body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                "model": _MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    parts = [chunk({"role": "assistant", "content": ""}, None)]
    parts += [chunk({"content": "word "}, None) for _ in range(chunks - 2)]
    parts.append(chunk({}, "stop"))
    usage = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
             "model": _MODEL, "choices": [],
             "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 99}}
    parts.append(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n")
    return "".join(parts).encode()


def _anthropic_json(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json={
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": "Paris."}], "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 2, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 0},
    })


def _clients() -> dict[str, Callable[[], object]]:
    sse = {n: _chat_sse(n) for n in (20, 420)}

    def stream_handler(n: int) -> Callable[[httpx2.Request], httpx2.Response]:
        def handler(request: httpx2.Request) -> httpx2.Response:
            return httpx2.Response(200, content=sse[n],
                                   headers={"content-type": "text/event-stream"})
        return handler

    def oa(handler: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
        return openai.OpenAI(api_key="sk-bench", max_retries=0,
                             http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))

    chat, s20, s420 = oa(_chat_json), oa(stream_handler(20)), oa(stream_handler(420))
    ant = anthropic.Anthropic(
        api_key="sk-ant-bench", max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(_anthropic_json)))
    messages = [{"role": "user", "content": "What is the capital of France?"}]

    def chat_call() -> object:
        return chat.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]

    def stream(client: openai.OpenAI) -> Callable[[], object]:
        def call() -> object:
            return list(client.chat.completions.create(  # type: ignore[call-overload]
                model="gpt-4o-mini", messages=messages, stream=True,
                stream_options={"include_usage": True},
            ))
        return call

    def anthropic_call() -> object:
        return ant.messages.create(model="claude-sonnet-4-6", max_tokens=64,
                                   messages=messages)  # type: ignore[arg-type]

    return {"openai.chat": chat_call, "openai.stream20": stream(s20),
            "openai.stream420": stream(s420), "anthropic.messages": anthropic_call}


# More clients, one module each (``make_call()`` -> one non-streamed call, no sockets).
_FORMS = {"google-genai.generate": "_forms_google_genai", "litellm.completion": "_forms_litellm"}
_MORE_FORMS = {"groq.chat": "_forms_groq", "cohere.chat": "_forms_cohere",
               "ollama.chat": "_forms_ollama"}


def _forms(more: bool) -> dict[str, Callable[[], object]]:
    calls = {}
    for name, module in {**_FORMS, **(_MORE_FORMS if more else {})}.items():
        try:
            calls[name] = importlib.import_module(module).make_call()
        except ImportError as exc:  # that SDK is not installed: say so, measure the rest
            print(f"skipping {name}: {exc}")
    return calls


def _per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000


def _export(on: bool) -> None:
    """Live export's sink in or out (installed at import: the endpoint is set)."""
    live = sys.modules.get("agentlog._otel.live")
    if live is None:
        return
    if on:
        live.install(agentlog.api.RECORDER, os.environ["AGENTLOG_OTLP_ENDPOINT"])
    else:
        live.uninstall(agentlog.api.RECORDER)


def _mode(enabled: bool, verbosity: int = 1, export: bool = False) -> Callable[[], None]:
    def set_mode() -> None:
        agentlog.set_logging(enabled, verbosity=verbosity)
        _export(export)
    return set_mode


_MODES = {
    "bare": _mode(False),
    "v1": _mode(True, 1),
    "v0": _mode(True, 0),
}
if _collector is not None:
    _MODES["otel"] = _mode(True, 1, export=True)


def _isolated_chunk_ns(rounds: int) -> tuple[float, float]:
    """Per-chunk cost of the stream observer and fold alone, on chunks already parsed by
    the SDK: the stream figures above are within the SDK's own noise (~120 µs a chunk)."""
    from openai.types.chat import ChatCompletionChunk

    from agentlog.integrations import _llm
    from agentlog.integrations import openai as adapter

    chunks = [ChatCompletionChunk.model_validate(json.loads(line[6:]))
              for line in _chat_sse(1000).decode().split("\n\n")
              if line.startswith("data: {")]
    req = _llm.Request("openai", "chat", "gpt-4o-mini", [], {"stream": True}, frozenset(),
                       True, None)
    bare, observed = [], []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _item in iter(chunks):
            pass
        bare.append((time.perf_counter_ns() - start) / len(chunks))
        call = _llm.Call(req, _llm.current.get())
        call.acc = adapter.TRANSLATOR.accumulator(req)
        start = time.perf_counter_ns()
        for _item in _llm._SyncObserver(iter(chunks), call):
            pass
        observed.append((time.perf_counter_ns() - start) / len(chunks))
    return statistics.median(bare), statistics.median(observed)


def _span_work_us(n: int) -> tuple[float, float]:
    """Live export's own work for one recorded call, apart, in CPU time (other processes
    on a busy machine do not count): the sink turning a call's record into a span
    (priced, mapped, handed to the batch processor) on its thread; and that plus the
    batch thread's encoding and sending, for the whole process."""
    from agentlog._otel import live

    state = live._live
    assert state is not None
    body = {"ev": "action", "t": time.time_ns(), "t_end": time.time_ns() + 1000, "ix": -1,
            "name": "llm:openai.chat",
            "input": [{"role": "user", "content": "What is the capital of France?"}],
            "output": {"role": "assistant", "content": "Paris."},
            "llm": {"provider": "openai", "operation": "chat", "request_model": "gpt-4o-mini",
                    "response_model": _MODEL, "params": {}, "streamed": False,
                    "incomplete": False, "duration_ms": 1.0, "ttft_ms": None,
                    "finish_reasons": ["stop"],
                    "usage": {"input_tokens": 12, "output_tokens": 2,
                              "cache_read_input_tokens": 0, "reasoning_output_tokens": 0}}}
    flush = state.pipeline.processor.force_flush if state.pipeline else (lambda: True)
    flush()
    thread, process = time.thread_time_ns(), time.process_time_ns()
    for _ in range(n):
        state.sink(body)
    thread = time.thread_time_ns() - thread
    flush()
    process = time.process_time_ns() - process
    return thread / n / 1000, process / n / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument("--all-clients", action="store_true",
                        help="also groq, cohere and ollama (google-genai and litellm always)")
    args = parser.parse_args()
    rounds, n = (3, 30) if args.quick else (15, 200)
    calls = {**_clients(), **_forms(args.all_clients)}
    times: dict[tuple[str, str], list[float]] = {}
    for fn in calls.values():  # warm up every path once (imports, pydantic caches)
        for set_mode in _MODES.values():
            set_mode()
            fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            for mode, set_mode in _MODES.items():
                set_mode()
                fn()  # untimed: the first call after a switch pays for the switch
                # The long stream takes fewer reps; google-genai and litellm (ms a call) too.
                reps = (max(n // 10, 5) if name == "openai.stream420" else
                        max(n // 4, 10) if name in _FORMS else n)
                times.setdefault((name, mode), []).append(_per_call_us(fn, reps))
    agentlog.set_logging(True, verbosity=1)
    med = {key: statistics.median(values) for key, values in times.items()}

    print(f"python {sys.version.split()[0]}, openai {openai.__version__}, "
          f"anthropic {anthropic.__version__}; {rounds} interleaved rounds, medians")
    otel = "otel" in _MODES
    print(f"{'call':<22}{'bare µs':>10}{'v1 µs':>10}{'v1 +µs':>9}{'v1 ratio':>10}"
          f"{'v0 +µs':>9}{'v0 ratio':>10}" + (f"{'otel +µs':>10}{'otel/v1':>9}" if otel else ""))
    for name in calls:
        bare, v1, v0 = (med[(name, m)] for m in ("bare", "v1", "v0"))
        line = (f"{name:<22}{bare:>10.1f}{v1:>10.1f}{v1 - bare:>+9.2f}{v1 / bare:>10.3f}"
                f"{v0 - bare:>+9.2f}{v0 / bare:>10.3f}")
        if otel:
            on = med[(name, "otel")]
            line += f"{on - v1:>+10.2f}{on / v1:>9.3f}"
        print(line)
    if otel:
        _export(True)
        works = [_span_work_us(1_000) for _ in range(rounds)]
        sink = statistics.median(w[0] for w in works)
        total = statistics.median(w[1] for w in works)
        print(f"live export, per recorded call, CPU time: {sink:.1f} µs to make its span (on "
              f"the thread that journals it: the flusher, for LLM calls), {total:.1f} µs with "
              "the batch thread's encoding and sending")
    bare_ns, observed_ns = _isolated_chunk_ns(rounds * 20)
    print(f"per stream chunk, observer and fold alone: {observed_ns - bare_ns:+.0f} ns "
          f"({bare_ns:.0f} ns to iterate the same parsed chunks bare)")
    for mode in ("v1", "v0"):
        short = med[("openai.stream20", mode)] - med[("openai.stream20", "bare")]
        long = med[("openai.stream420", mode)] - med[("openai.stream420", "bare")]
        bare_chunk = (med[("openai.stream420", "bare")] - med[("openai.stream20", "bare")]) / 400
        print(f"per stream chunk, {mode}: {(long - short) / 400 * 1000:+.0f} ns "
              f"(bare SDK: {bare_chunk * 1000:.0f} ns per chunk)")


if __name__ == "__main__":
    try:
        main()
    finally:
        if _collector is not None:
            _collector.terminate()
