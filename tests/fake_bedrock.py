"""A fake Amazon Bedrock Runtime server on 127.0.0.1 for driving the real boto3 client.

boto3 reaches it through ``endpoint_url=``; it answers the four operations agentlog
records: ``Converse``, ``ConverseStream``, ``InvokeModel`` and
``InvokeModelWithResponseStream`` (Anthropic-format bodies for the last two, as Bedrock
serves Claude). Streams use AWS's binary event-stream encoding
(``application/vnd.amazon.eventstream``: a prelude with lengths and a CRC32, string
headers, the JSON payload, and a CRC32 of the whole message), one message per HTTP chunk.
Errors carry ``x-amzn-ErrorType`` as the service does. Deterministic: token counts are
word counts, ids come from a request counter.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import struct
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from fake_llm import LoopbackServer, _Server

ACCESS_KEY = "AKIAFAKEBEDROCK0000"
SECRET_KEY = "bedrock-secret-canary-0000/abcdefghijklmnop"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "amazon.nova-lite-v1:0"


@dataclass
class Reply:
    """What the server answers to the next request (any operation)."""

    status: int = 200
    text: str | None = None  # default "echo: <last user text>"
    tool_calls: list[tuple[str, str]] | None = None  # (name, arguments JSON)
    error: str = "ValidationException"  # x-amzn-ErrorType with status >= 400
    drop_after: int | None = None  # streams: cut the connection after this many events
    usage_headers: bool = True  # InvokeModel: the token-count headers


@dataclass
class Recorded:
    path: str
    operation: str
    model: str
    headers: dict[str, str]
    body: Any


# -- AWS event-stream encoding -----------------------------------------------------------
def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (struct.pack(">B", len(raw_name)) + raw_name + b"\x07"  # 7: a string value
            + struct.pack(">H", len(raw_value)) + raw_value)


def event_message(event_type: str, payload: dict[str, Any],
                  message_type: str = "event") -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32 of the
    two), headers, payload, CRC32 of everything before it."""
    headers = b"".join((
        _header(":event-type" if message_type == "event" else ":exception-type", event_type),
        _header(":content-type", "application/json"),
        _header(":message-type", message_type),
    ))
    body = json.dumps(payload, separators=(",", ":")).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


# -- answers ---------------------------------------------------------------------------------
def _words(text: str | None) -> int:
    return len(text.split()) if text else 0


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    if isinstance(value, dict):
        return [t for key in ("text", "content") if key in value for t in _texts(value[key])]
    return []


def _last_user(messages: Any) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return " ".join(_texts(message.get("content")))
    return ""


class _Answer:
    """What one request gets: text, tool calls and usage, in either API's shape."""

    def __init__(self, body: dict[str, Any], reply: Reply, num: int) -> None:
        self.reply = reply
        self.num = num
        self.tools = list(reply.tool_calls or [])
        self.text = reply.text
        if self.text is None and not self.tools:
            self.text = "echo: " + _last_user(body.get("messages"))
        said = _texts(body.get("messages")) + _texts(body.get("system"))
        self.input = sum(_words(t) for t in said)
        self.output = _words(self.text) + sum(_words(a) for _, a in self.tools)
        self.stop = "tool_use" if self.tools else "end_turn"

    def usage(self) -> dict[str, int]:
        return {"inputTokens": self.input, "outputTokens": self.output,
                "totalTokens": self.input + self.output}

    # Converse ----------------------------------------------------------------------------
    def converse(self) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if self.text is not None:
            content.append({"text": self.text})
        for k, (name, args) in enumerate(self.tools):
            content.append({"toolUse": {"toolUseId": f"tooluse_{k}", "name": name,
                                        "input": json.loads(args)}})
        return {"output": {"message": {"role": "assistant", "content": content}},
                "stopReason": self.stop, "usage": self.usage(), "metrics": {"latencyMs": 7}}

    def converse_events(self) -> list[bytes]:
        events = [event_message("messageStart", {"role": "assistant"})]
        index = 0
        if self.text is not None:
            for i, piece in enumerate(self.text.split(" ")):
                delta = {"text": piece if not i else " " + piece}
                events.append(event_message("contentBlockDelta", {
                    "contentBlockIndex": index, "delta": delta}))
            events.append(event_message("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        for k, (name, args) in enumerate(self.tools):
            events.append(event_message("contentBlockStart", {
                "contentBlockIndex": index,
                "start": {"toolUse": {"toolUseId": f"tooluse_{k}", "name": name}}}))
            for half in (args[: len(args) // 2], args[len(args) // 2:]):
                events.append(event_message("contentBlockDelta", {
                    "contentBlockIndex": index, "delta": {"toolUse": {"input": half}}}))
            events.append(event_message("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        events.append(event_message("messageStop", {"stopReason": self.stop}))
        events.append(event_message("metadata", {"usage": self.usage(),
                                                 "metrics": {"latencyMs": 7}}))
        return events

    # InvokeModel (Anthropic Messages format) -------------------------------------------
    def invoke(self, model: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if self.text is not None:
            content.append({"type": "text", "text": self.text})
        for k, (name, args) in enumerate(self.tools):
            content.append({"type": "tool_use", "id": f"toolu_{k}", "name": name,
                            "input": json.loads(args)})
        return {"id": f"msg_bdrk_{self.num}", "type": "message", "role": "assistant",
                "model": model.split(".", 1)[-1].rsplit("-v", 1)[0], "content": content,
                "stop_reason": self.stop, "stop_sequence": None,
                "usage": {"input_tokens": self.input, "output_tokens": self.output}}

    def invoke_events(self, model: str) -> list[bytes]:
        message = self.invoke(model)
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {"input_tokens": self.input, "output_tokens": 1}}
        inner: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
        if self.text is not None:
            inner.append({"type": "content_block_start", "index": 0,
                          "content_block": {"type": "text", "text": ""}})
            for i, piece in enumerate(self.text.split(" ")):
                inner.append({"type": "content_block_delta", "index": 0,
                              "delta": {"type": "text_delta", "text": piece if not i
                                        else " " + piece}})
            inner.append({"type": "content_block_stop", "index": 0})
        inner.append({"type": "message_delta",
                      "delta": {"stop_reason": self.stop, "stop_sequence": None},
                      "usage": {"output_tokens": self.output}})
        inner.append({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": self.input, "outputTokenCount": self.output,
            "invocationLatency": 7, "firstByteLatency": 3}})
        return [event_message("chunk", {"bytes": base64.b64encode(
            json.dumps(e).encode()).decode()}) for e in inner]


_OPERATIONS = {
    "converse": "Converse",
    "converse-stream": "ConverseStream",
    "invoke": "InvokeModel",
    "invoke-with-response-stream": "InvokeModelWithResponseStream",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """No per-request logging on stderr."""

    def do_POST(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        path = urlsplit(self.path).path
        parts = path.strip("/").split("/")
        model = unquote(parts[1]) if len(parts) == 3 and parts[0] == "model" else ""
        operation = _OPERATIONS.get(parts[-1], "")
        headers = {k.lower(): v for k, v in self.headers.items()}
        num, reply = fake._accept(Recorded(path, operation, model, headers, body))
        try:
            self._answer(operation, model, body, reply, num)
        except OSError:  # the client went away
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug in the fake: keep it for the test
            fake.errors.append(exc)
            self.close_connection = True

    do_GET = do_PUT = do_DELETE = do_POST

    def _send(self, status: int, body: bytes, content_type: str,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("x-amzn-RequestId", "req-bedrock-fake")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, operation: str, model: str, body: dict[str, Any], reply: Reply,
                num: int) -> None:
        if reply.status >= 400 or not operation:
            status = reply.status if reply.status >= 400 else 404
            error = reply.error if operation else "UnknownOperationException"
            self._send(status, json.dumps({"message": f"Fake {status} ({error})."}).encode(),
                       "application/json", {"x-amzn-ErrorType": f"{error}:http://fake/"})
            return
        answer = _Answer(body, reply, num)
        if operation == "Converse":
            self._send(200, json.dumps(answer.converse()).encode(), "application/json")
        elif operation == "InvokeModel":
            extra = {"X-Amzn-Bedrock-Invocation-Latency": "7"}
            if reply.usage_headers:
                extra["X-Amzn-Bedrock-Input-Token-Count"] = str(answer.input)
                extra["X-Amzn-Bedrock-Output-Token-Count"] = str(answer.output)
            self._send(200, json.dumps(answer.invoke(model)).encode(), "application/json",
                       extra)
        else:
            events = (answer.converse_events() if operation == "ConverseStream"
                      else answer.invoke_events(model))
            self._stream(events, reply)

    def _stream(self, events: list[bytes], reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("x-amzn-RequestId", "req-bedrock-fake")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, event in enumerate(events):
            if reply.drop_after is not None and i >= reply.drop_after:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class FakeBedrock(LoopbackServer):
    """``with FakeBedrock() as srv:`` serves on 127.0.0.1:<free port> until the block ends."""

    handler = _Handler
    name = "fake-bedrock"
    requests: list[Recorded]

    def count(self, operation: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if operation in (None, r.operation))

    def _reply(self) -> Reply:
        return Reply()


def bedrock_client(srv: FakeBedrock, **kw: Any) -> Any:
    """A real boto3 ``bedrock-runtime`` client pointed at the fake: explicit credentials
    (no credential chain, no instance metadata), one attempt (no retries)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "bedrock-runtime", endpoint_url=srv.url, region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}), **kw)
