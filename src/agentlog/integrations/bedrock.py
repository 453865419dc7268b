"""Amazon Bedrock Runtime through boto3: ``converse``, ``converse_stream``, ``invoke_model``
and ``invoke_model_with_response_stream``.

boto3 builds its client classes at runtime, one per service; every operation of every one
goes through ``botocore.client.BaseClient._make_api_call``, which is patched and lets
anything but these four bedrock-runtime operations straight through.

The caller gets boto3's own dict back. A stream is the botocore ``EventStream`` in it,
observed when the caller iterates it (``EventStream.__iter__`` is patched once) and cut by
its ``close()``. ``invoke_model``'s body is a ``StreamingBody`` only the caller may read:
the record closes when the call returns, with the token counts Bedrock puts in the
response headers, and no output.
"""

from __future__ import annotations

import functools
import importlib
import json
import weakref
from types import ModuleType
from typing import Any

from .._patching import Patches
from . import _llm
from ._llm import G_FINISH, Call, Outcome, Request, count, get

PATCHES = Patches()
PROVIDER = "aws-bedrock"  # genai-prices calls it "aws" (mapped in _pricing)

# operation -> (record's operation, streamed)
_OPERATIONS = {
    "Converse": ("chat", False),
    "ConverseStream": ("chat", True),
    "InvokeModel": ("invoke_model", False),
    "InvokeModelWithResponseStream": ("invoke_model", True),
}
_NOT_PARAMS = frozenset({"messages", "system", "modelId", "body", "prompt", "inputText"})


def _server(client: Any) -> str | None:
    url = getattr(getattr(client, "meta", None), "endpoint_url", None)
    if not isinstance(url, str):
        return None
    return url.split("://", 1)[-1].split("/", 1)[0] or None


def _note_keys(client: Any) -> None:
    # The private names: the public properties of refreshable credentials may refresh
    # them (a network call) when they are due.
    creds = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    if creds is not None:
        found = vars(creds)
        _llm.note_keys(found.get("secret_key"), found.get("_secret_key"),
                       found.get("token"), found.get("_token"))


# -- requests ----------------------------------------------------------------------------
def _converse_request(params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    messages = params.get("messages")
    content: Any = list(messages) if isinstance(messages, list) else messages
    system = params.get("system")
    if system:
        content = [{"role": "system", "content": system}, *(content or ())]
    data: dict[str, Any] = {k: v for k, v in params.items() if k not in _NOT_PARAMS}
    config = data.pop("inferenceConfig", None)
    if isinstance(config, dict):
        data.update(config)
    tools = data.pop("toolConfig", None)
    if isinstance(tools, dict):
        data["tools"] = [{"name": get(get(t, "toolSpec"), "name")}
                         for t in tools.get("tools") or ()]
        if "toolChoice" in tools:
            data["tool_choice"] = next(iter(tools["toolChoice"]), None)
    return content, data


def _invoke_request(params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The model's own JSON body (Anthropic, Nova, Titan, Llama...): its input, and the
    rest as params."""
    try:
        body = json.loads(params.get("body") or b"")
    except (TypeError, ValueError):
        return None, {}
    if not isinstance(body, dict):
        return body, {}
    content: Any = None
    for key in ("messages", "prompt", "inputText", "texts"):
        if key in body:
            content = body[key]
            break
    system = body.get("system")
    if system and isinstance(content, list):
        content = [{"role": "system", "content": system}, *content]
    data = {k: v for k, v in body.items() if k not in _NOT_PARAMS and k != "texts"}
    inference = data.pop("inferenceConfig", None)  # Nova's body
    if isinstance(inference, dict):
        data.update(inference)
    return content, data


# -- responses ---------------------------------------------------------------------------
def _usage(u: Any) -> dict[str, Any] | None:
    if not isinstance(u, dict):
        return None
    read = count(u.get("cacheReadInputTokens"))
    write = count(u.get("cacheWriteInputTokens"))
    given = count(u.get("inputTokens"))
    # Bedrock's inputTokens leave out cached ones (as Anthropic's do).
    return _llm.usage(None if given is None else given + (read or 0) + (write or 0),
                      count(u.get("outputTokens")), read, write)


def _message(texts: list[str], calls: list[dict[str, Any]]) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _converse_outcome(req: Request, obj: Any) -> Outcome:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in get(get(get(obj, "output"), "message"), "content") or ():
        if "text" in block:
            texts.append(block["text"])
        use = block.get("toolUse")
        if isinstance(use, dict):
            args = use.get("input")
            calls.append({"id": use.get("toolUseId"), "name": use.get("name"),
                          "arguments": args if isinstance(args, str) else json.dumps(args)})
    out: Outcome = {"output": _message(texts, calls), "usage": _usage(obj.get("usage")),
                    "finish_reasons": [obj["stopReason"]] if obj.get("stopReason") else [],
                    "response_id": _request_id(obj)}
    if calls:
        out["tool_calls"] = calls
    return out


def _request_id(obj: Any) -> Any:
    return get(get(obj, "ResponseMetadata"), "RequestId")


def _invoke_outcome(req: Request, obj: Any) -> Outcome:
    headers = get(get(obj, "ResponseMetadata"), "HTTPHeaders") or {}
    given = headers.get("x-amzn-bedrock-input-token-count")
    made = headers.get("x-amzn-bedrock-output-token-count")
    out: Outcome = {"response_id": _request_id(obj), "output": None}
    if isinstance(given, str) and given.isdigit() and isinstance(made, str) and made.isdigit():
        out["usage"] = _llm.usage(int(given), int(made))
    else:
        out["usage"] = None
        out["usage_missing_reason"] = "Bedrock sent no token-count headers"
    return out


class _ConverseEvents:
    """ConverseStream events, kept as they pass and folded when the record is written."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[Any] = []

    def add(self, event: Any) -> None:
        self.events.append(event)

    def outcome(self) -> Outcome:
        texts: dict[int, list[str]] = {}
        calls: dict[int, dict[str, Any]] = {}
        reasons: list[str] = []
        usage = None
        for event in self.events:
            if "contentBlockDelta" in event:
                body = event["contentBlockDelta"]
                index, delta = body.get("contentBlockIndex", 0), body.get("delta") or {}
                if "text" in delta:
                    texts.setdefault(index, []).append(delta["text"])
                elif "toolUse" in delta and index in calls:
                    calls[index]["arguments"] += delta["toolUse"].get("input") or ""
            elif "contentBlockStart" in event:
                body = event["contentBlockStart"]
                use = get(body.get("start"), "toolUse")
                if isinstance(use, dict):
                    calls[body.get("contentBlockIndex", 0)] = {
                        "id": use.get("toolUseId"), "name": use.get("name"), "arguments": ""}
            elif "messageStop" in event:
                reasons.append(event["messageStop"].get("stopReason"))
            elif "metadata" in event:
                usage = event["metadata"].get("usage")
        tool_calls = [calls[i] for i in sorted(calls)]
        out: Outcome = {
            "output": _message([t for i in sorted(texts) for t in texts[i]], tool_calls),
            "finish_reasons": [r for r in reasons if r], "usage": _usage(usage)}
        if tool_calls:
            out["tool_calls"] = tool_calls
        if usage is None:
            out["usage_missing_reason"] = "the stream ended before its metadata event"
        return out


class _InvokeEvents:
    """InvokeModelWithResponseStream chunks: the model's own JSON events, base64-free
    bytes; Bedrock adds its token counts to the last one."""

    __slots__ = ("chunks",)

    def __init__(self) -> None:
        self.chunks: list[Any] = []

    def add(self, event: Any) -> None:
        self.chunks.append(event)

    def outcome(self) -> Outcome:
        texts: list[str] = []
        reasons: list[str] = []
        model = metrics = None
        for event in self.chunks:
            raw = get(get(event, "chunk"), "bytes")
            try:
                item = json.loads(raw) if raw else None
            except ValueError:
                continue
            if not isinstance(item, dict):
                continue
            metrics = item.get("amazon-bedrock-invocationMetrics") or metrics
            delta = item.get("delta")
            if isinstance(delta, dict):  # Anthropic
                if isinstance(delta.get("text"), str):
                    texts.append(delta["text"])
                if delta.get("stop_reason"):
                    reasons.append(delta["stop_reason"])
            model = model or get(item.get("message"), "model")
            for key in ("outputText", "generation", "completion"):  # Titan, Llama, others
                if isinstance(item.get(key), str):
                    texts.append(item[key])
        out: Outcome = {"response_model": model, "output": _message(texts, []),
                        "finish_reasons": reasons, "usage": None}
        if isinstance(metrics, dict):
            out["usage"] = _llm.usage(count(metrics.get("inputTokenCount")),
                                      count(metrics.get("outputTokenCount")))
        else:
            out["usage_missing_reason"] = "the stream ended before Bedrock's invocation metrics"
        return out


# -- the choke point ---------------------------------------------------------------------
class Hooks:
    """The lifecycle's view of ``_make_api_call(self, operation_name, api_params)``."""

    __slots__ = ()

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        found = _OPERATIONS.get(args[1]) if len(args) > 2 else None
        if found is None:
            return None
        client, params = args[0], args[2]
        if client.meta.service_model.service_name != "bedrock-runtime":
            return None
        operation, streamed = found
        if not isinstance(params, dict):
            params = {}
        if operation == "chat":
            content, data = _converse_request(params)
        else:
            content, data = _invoke_request(params)
        model = params.get("modelId")
        return _llm.begin(Request(PROVIDER, operation, model if isinstance(model, str) else None,
                                  content, data, _NOT_PARAMS, streamed, _server(client)))

    def returned(self, call: Call, args: tuple[Any, ...], result: Any) -> Any:
        _note_keys(args[0])
        req = call.req
        if not req.streamed:
            call.done(_converse_outcome if req.operation == "chat" else _invoke_outcome,
                      result)
            return result
        stream = result.get("stream" if req.operation == "chat" else "body")
        if type(stream) not in _stream_classes:
            _llm.cannot_observe(call, "bedrock", type(stream))
            return result
        acc = _ConverseEvents() if req.operation == "chat" else _InvokeEvents()
        _watched[stream] = [call, acc]
        _llm.cut_when_collected(stream, call)
        return result

    def raised(self, call: Call, args: tuple[Any, ...], exc: BaseException) -> None:
        _note_keys(args[0])
        status = get(get(getattr(exc, "response", None), "ResponseMetadata"), "HTTPStatusCode")
        if type(status) is int:
            call.read = lambda req, _: {"http_status": status}
        call.failed(exc)


_watched: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
"""EventStream -> [its call, its accumulator (None once iteration began)]."""
_stream_classes: set[type] = set()


def _iter_hook(original: Any) -> Any:
    @functools.wraps(original)
    def __iter__(self: Any) -> Any:
        events = original(self)
        if _watched:
            with G_FINISH:
                found = _watched.get(self)
                if found is not None and found[1] is not None:
                    call, acc = found
                    found[1] = None  # iterated twice: the second one is not observed
                    # From here the iterator is what ends early or is dropped; the stream
                    # itself goes as soon as its generator ends, before the call closes.
                    if call.finalizer is not None:
                        call.finalizer.detach()
                    return _llm.observe(events, call, acc, "bedrock")
        return events

    return __iter__


def _closed(stream: Any) -> None:
    if _watched:
        with G_FINISH:
            found = _watched.pop(stream, None)
            if found is not None:
                found[0].cut("closed before its end")  # a no-op once it has ended


def install(module: ModuleType) -> None:
    """Called once ``botocore.client`` is imported."""
    eventstream = importlib.import_module("botocore.eventstream")  # no stubs: untyped
    _llm.install()
    cls = eventstream.EventStream
    _stream_classes.add(cls)
    PATCHES.apply(cls, "__iter__", _iter_hook)
    PATCHES.apply(cls, "close", _llm.closed_by(_closed))
    PATCHES.apply(module.BaseClient, "_make_api_call", _llm.sync_wrapper(Hooks()))


def uninstall() -> None:
    PATCHES.remove()
    _stream_classes.clear()
