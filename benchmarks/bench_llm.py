"""LLM-call overhead against the bare SDK, as ratios measured side by side in one run.

    python benchmarks/bench_llm.py [--quick]

The real ``openai`` and ``anthropic`` SDKs call an in-process ``httpx2.MockTransport``
(no sockets), so the SDK's own work is all that is left to compare with. Three modes
alternate round by round, so that all of them see the same noise:

- bare: agentlog uninstalled (the SDK's original methods);
- v1: recording at verbosity 1;
- v0: patched, at verbosity 0 (the fast path).

Reports per call: openai chat non-streamed, anthropic messages non-streamed; and per
chunk for streams: the slope between a short and a long stream, so the per-call part
cancels out. Cost is priced when the document is folded, at exit, not per call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("AGENTLOG_DIR", tempfile.mkdtemp(prefix="agentlog-bench-"))

import anthropic
import httpx2
import openai

import agentlog

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


def _per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000


_MODES = {
    "bare": lambda: agentlog.set_logging(False),
    "v1": lambda: agentlog.set_logging(True, verbosity=1),
    "v0": lambda: agentlog.set_logging(True, verbosity=0),
}


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    args = parser.parse_args()
    rounds, n = (3, 30) if args.quick else (15, 200)
    calls = _clients()
    times: dict[tuple[str, str], list[float]] = {}
    for fn in calls.values():  # warm up every path once (imports, pydantic caches)
        for set_mode in _MODES.values():
            set_mode()
            fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            for mode, set_mode in _MODES.items():
                set_mode()
                reps = max(n // 10, 5) if name == "openai.stream420" else n
                times.setdefault((name, mode), []).append(_per_call_us(fn, reps))
    agentlog.set_logging(True, verbosity=1)
    med = {key: statistics.median(values) for key, values in times.items()}

    print(f"python {sys.version.split()[0]}, openai {openai.__version__}, "
          f"anthropic {anthropic.__version__}; {rounds} interleaved rounds, medians")
    print(f"{'call':<22}{'bare µs':>10}{'v1 µs':>10}{'v1 +µs':>9}{'v1 ratio':>10}"
          f"{'v0 +µs':>9}{'v0 ratio':>10}")
    for name in ("openai.chat", "anthropic.messages", "openai.stream20", "openai.stream420"):
        bare, v1, v0 = (med[(name, m)] for m in _MODES)
        print(f"{name:<22}{bare:>10.1f}{v1:>10.1f}{v1 - bare:>+9.2f}{v1 / bare:>10.3f}"
              f"{v0 - bare:>+9.2f}{v0 / bare:>10.3f}")
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
    main()
