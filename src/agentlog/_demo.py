"""``agentlog demo``: a small agent on the real ``openai`` SDK, against a fake server.

The server speaks just enough of the OpenAI chat completions API (JSON and SSE, with
usage, tool calls and cached tokens) for the SDK to take it for the real thing, so the
demo needs no key and no network, and shows what agentlog records for real traffic. It
uses only the standard library and binds to loopback on a free port.

The agent is ordinary user code on the public API: a workflow name, one iteration, a
``planner`` that gets a tool call back and runs the tool, a ``writer`` that streams the
answer, and one bare call outside any agent (its own interaction, in auto mode).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import api
from ._guard import Guard

WORKFLOW = "agentlog-demo"
MODEL = "gpt-4o-mini"
API_KEY = "sk-demo-not-a-real-key"
"""Shaped like a real key on purpose: it must reach no document and no output."""

INSTALL_HINT = 'agentlog: the demo needs the openai SDK: pip install "agentlog[demo]"'

SYSTEM = "You are agentlog's demo agent. Use the lookup tool, then answer in one sentence."
QUESTION = "What does agentlog record?"
FACT = (
    "agentlog records every LLM call (model, parameters, tokens, timing and cost), "
    "every tool call and every error, in one JSON document per run."
)
TITLE_REQUEST = "Give that answer a title of at most five words."
TITLE = "One document per run"
LOOKUP_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a topic up in agentlog's notes.",
        "parameters": {
            "type": "object",
            "properties": {"topic": {"type": "string", "description": "what to look up"}},
            "required": ["topic"],
        },
    },
}
CHAT_CALLS = 3
"""Chat completions the demo makes: planner (tool call), writer (streamed), title."""


_G_DEMO = Guard("demo.failure")


class DemoFailed(RuntimeError):
    """The demo stopped midway; its document (status ``failed``) was still written."""


# -- the fake server ----------------------------------------------------------------------
RESPONSE_MODELS = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18"}
_REPLIES = {TITLE_REQUEST: TITLE}
"""The fake model's answers to plain prompts, keyed by the last user message."""
_FALLBACK = "I am agentlog's demo model: I only know the lines of the demo."
Reply = tuple[str, Any]
"""``("tool", (name, arguments))`` or ``("text", text)``."""


def _tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters a token."""
    return max(1, (len(text) + 3) // 4)


def _text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        )
    return ""


class _Model:
    """The fake model: deterministic replies, and a prompt cache shared by all requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = itertools.count(1)
        self._cached_prefixes: set[str] = set()

    def next_id(self) -> str:
        with self._lock:
            return f"agentlogdemo{next(self._count):06d}"

    def usage(self, body: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        prompt = 3 + sum(4 + _tokens(_text(m.get("content"))) for m in messages)
        if body.get("tools"):
            prompt += _tokens(json.dumps(body["tools"]))
        cached = 0
        if messages:
            # Like the real cache: a prefix seen before is read from it the next time.
            prefix = _text(messages[0].get("content"))
            with self._lock:
                if prefix in self._cached_prefixes:
                    cached = 4 + _tokens(prefix)
                self._cached_prefixes.add(prefix)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    @staticmethod
    def reply(body: dict[str, Any]) -> Reply:
        """``("tool", (name, arguments))`` or ``("text", words)``: what the model says."""
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
        tool_results = [_text(m.get("content")) for m in messages if m.get("role") == "tool"]
        last_user = next(
            (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        if tools and not tool_results:
            fn = tools[0].get("function") or {}
            params = fn.get("parameters") or {}
            names = list(params.get("required") or params.get("properties") or ["input"])
            arguments = json.dumps({names[0]: last_user}, separators=(",", ":"))
            return "tool", (str(fn.get("name", "tool")), arguments)
        if tool_results and messages[-1].get("role") == "tool":
            return "text", tool_results[-1]
        return "text", _REPLIES.get(last_user, _FALLBACK)


class _Handler(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions``, as JSON or as a server-sent event stream."""

    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one small write per word must not wait for an ACK
    timeout = 5.0
    """A client that never closes its keep-alive connection cannot hold up the stop."""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # stdout and stderr belong to the demo's story, not to an access log

    def version_string(self) -> str:
        return "agentlog-demo"

    def do_GET(self) -> None:
        self._error(404, f"no route for GET {self.path} on agentlog's demo server")

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?", 1)[0].rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route for POST {self.path} on agentlog's demo server")
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._error(400, "the body must be a JSON object with a 'messages' list")
            return
        rid = self.server.model.next_id()
        try:
            said = _Model.reply(body)  # before any header: a failure can still be a 500
            if body.get("stream"):
                self._stream(rid, body, said)
            else:
                self._json(200, self._completion(rid, body, said), rid)
        except OSError:
            self.close_connection = True  # the client went away mid-answer
        except Exception as exc:  # noqa: BLE001 - the client gets a 500, as from the real one
            self._error(500, f"the demo server failed: {type(exc).__name__}: {exc}")

    # -- responses --------------------------------------------------------------------
    @staticmethod
    def _head(rid: str, body: dict[str, Any], obj: str) -> dict[str, Any]:
        request_model = str(body.get("model") or MODEL)
        return {
            "id": f"chatcmpl-{rid}",
            "object": obj,
            "created": int(time.time()),
            "model": RESPONSE_MODELS.get(request_model, request_model),
            "service_tier": "default",
            "system_fingerprint": "fp_agentlogdemo",
        }

    def _completion(self, rid: str, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        out = self._head(rid, body, "chat.completion")
        kind, said = reply
        message: dict[str, Any] = {"role": "assistant", "refusal": None, "annotations": []}
        if kind == "tool":
            name, arguments = said
            message["content"] = None
            message["tool_calls"] = [{
                "id": f"call_{rid}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }]
            finish, completion = "tool_calls", 5 + _tokens(arguments)
        else:
            message["content"] = said
            finish, completion = "stop", len(said.split())
        out["choices"] = [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        ]
        out["usage"] = self.server.model.usage(body, completion)
        return out

    def _stream(self, rid: str, body: dict[str, Any], reply: Reply) -> None:
        events = list(self._events(rid, body, reply))  # any failure is still a clean 500
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("x-request-id", f"req_{rid}")
        self.end_headers()
        for event in events:
            data = f"data: {event}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")

    def _events(self, rid: str, body: dict[str, Any], reply: Reply) -> Iterator[str]:
        """One chunk per word, the finish chunk, usage if asked for, then ``[DONE]``."""
        head = self._head(rid, body, "chat.completion.chunk")
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        if with_usage:
            head["usage"] = None  # as the real service sends it on every other chunk

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return json.dumps({**head, "choices": [choice]})

        kind, said = reply
        if kind == "tool":
            name, arguments = said
            yield chunk({"role": "assistant", "content": None})
            yield chunk({"tool_calls": [{
                "index": 0, "id": f"call_{rid}", "type": "function",
                "function": {"name": name, "arguments": ""},
            }]})
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]})
            finish, completion = "tool_calls", 5 + _tokens(arguments)
        else:
            words = said.split()
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            for i, word in enumerate(words):
                yield chunk({"content": word if i == 0 else " " + word})
            finish, completion = "stop", len(words)
        yield chunk({}, finish)
        if with_usage:
            yield json.dumps({**head, "choices": [], "usage": self.server.model.usage(
                body, completion)})
        yield "[DONE]"

    def _json(self, status: int, payload: dict[str, Any], rid: str = "") -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{rid or self.server.model.next_id()}")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._json(status, {"error": {"message": message, "type": kind, "param": None,
                                      "code": None}})


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # tracked, so that ``server_close`` joins every handler thread
    model: _Model

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-stream is the client's business; no traceback


class FakeOpenAI:
    """The fake OpenAI server on ``127.0.0.1:<free port>``; stopping it joins its threads."""

    def __init__(self) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.model = _Model()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name="agentlog-demo-server", daemon=True,
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> FakeOpenAI:
        try:
            self._thread.start()
        except BaseException:
            self._httpd.server_close()
            raise
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the agent ----------------------------------------------------------------------------
def _say(text: str = "", end: str = "\n") -> None:
    print(text, end=end, flush=True)


def _workflow(client: Any) -> str:
    """Plan with a tool, write the answer as a stream, then one bare call for a title."""
    import agentlog

    @agentlog.tool
    def lookup(topic: str) -> str:
        return FACT

    @agentlog.agent("planner")
    def plan(question: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
        ]
        response = client.chat.completions.create(
            model=MODEL, messages=messages, tools=[LOOKUP_TOOL]
        )
        message = response.choices[0].message
        calls = message.tool_calls or []
        messages.append({"role": "assistant", "content": message.content,
                         "tool_calls": [call.model_dump() for call in calls]})
        for call in calls:
            arguments = json.loads(call.function.arguments)
            _say(f"planner: the model asked for {call.function.name}({arguments})")
            result = lookup(**arguments)
            _say(f"tool:    {call.function.name} -> {result}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        return messages

    @agentlog.agent("writer")
    def write(messages: list[dict[str, Any]]) -> str:
        _say("writer:  ", end="")
        parts: list[str] = []
        stream = client.chat.completions.create(
            model=MODEL, messages=messages, stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        parts.append(choice.delta.content)
                        _say(choice.delta.content, end="")
        _say()
        return "".join(parts)

    with agentlog.iteration():
        messages = plan(QUESTION)
        answer = write(messages)
        # Outside any agent: agentlog makes this call an interaction of its own.
        response = client.chat.completions.create(
            model=MODEL,
            messages=[*messages, {"role": "assistant", "content": answer},
                      {"role": "user", "content": TITLE_REQUEST}],
        )
        _say(f"title:   {response.choices[0].message.content}")
    return answer


# -- the command ----------------------------------------------------------------------------
def openai_missing() -> bool:
    """True, said in one line on stderr, when the optional SDK is absent; it stays unimported.

    Importing it is left to ``run_demo``, once recording has resumed, so that the
    integration patches it as it would in any recorded program.
    """
    try:
        missing = importlib.util.find_spec("openai") is None
    except (ImportError, ValueError):
        missing = True
    if missing:
        print(INSTALL_HINT, file=sys.stderr)
    return missing


def _plural(n: Any, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _summary(doc: dict[str, Any]) -> str:
    """One line from the document as written: what a reader of the file will find."""
    t = doc.get("metadata", {}).get("totals", {})
    tokens = f"tokens {t.get('input_tokens', 0):,} in"
    if t.get("cache_read_input_tokens"):
        tokens += f" ({t['cache_read_input_tokens']:,} cached)"
    tokens += f" / {t.get('output_tokens', 0):,} out"
    cost = t.get("cost_usd")
    parts = [
        _plural(t.get("iterations", 0), "iteration"),
        _plural(t.get("interactions", 0), "interaction"),
        _plural(t.get("llm_calls", 0), "LLM call"),
        tokens,
        f"cost ${cost:.6f}" if cost else "cost unknown",
        _plural(t.get("errors", 0), "error"),
    ]
    return f"{', '.join(parts)}; final_status {doc.get('final_status')}"


def run_demo(log_dir: str | None = None) -> Path | None:
    """Run the demo agent and write its document (to ``log_dir`` if given).

    Returns the document's path; None when ``openai`` is missing or no document was
    written (recording is off).
    A failure midway still writes the document (status ``failed``), then raises
    ``DemoFailed`` saying where it is.
    """
    try:
        import openai
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return None

    # What ``logs_dir=`` does for the loggers: name the workflow, send documents there.
    api._adopt(WORKFLOW, None if log_dir is None else Path(log_dir).expanduser().absolute())
    failure: BaseException | None = None
    try:
        with FakeOpenAI() as server:
            _say(f"agentlog demo: the openai SDK against a fake OpenAI server at "
                 f"{server.base_url} (no key, no network)")
            _say(f"question: {QUESTION}")
            with openai.OpenAI(
                base_url=server.base_url, api_key=API_KEY, max_retries=0,
                http_client=openai.DefaultHttpxClient(trust_env=False),  # never a proxy
            ) as client:
                _workflow(client)
    except BaseException as exc:  # noqa: BLE001 - recorded, then raised again below
        failure = exc
        with _G_DEMO:
            api.record_error(exc, source="uncaught")  # once: the scopes may have logged it
            api.RECORDER.current().exit_code = 130 if isinstance(exc, KeyboardInterrupt) else 1

    status = api._status_of(failure)
    api.finalize_workflow(status)
    path = api.RECORDER.last_document
    if path is None or api.RECORDER.run.document_path != path:
        path = None
        why = "recording is off (AGENTLOG=0 or AGENTLOG_VERBOSITY=0)" \
            if api.RECORDER.verbosity == 0 else "agentlog could not write it"
        print(f"agentlog: the demo wrote no document: {why}", file=sys.stderr)
    else:
        _say()
        _say(f"document: {path}")
        try:
            _say(f"  {_summary(json.loads(path.read_bytes()))}")
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            _say(f"  (could not read it back: {exc})")
        _say(f"see it: agentlog view {'last' if log_dir is None else path}")
    if failure is not None:
        if not isinstance(failure, Exception):
            raise failure  # Ctrl-C and friends keep their meaning
        what = " ".join(str(failure).split())  # one line, whatever the message
        where = f"; its document is {path}" if path is not None else ""
        raise DemoFailed(f"the demo failed: {type(failure).__name__}: {what}{where}") \
            from failure
    return path
