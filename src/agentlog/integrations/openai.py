"""OpenAI SDK adapter: translation only (lifecycle in ``_llm``, patching in ``_stainless``).

Covers Chat Completions (``create``, ``stream``, ``parse``), the Responses API, embeddings
and legacy completions, for ``OpenAI``, ``AzureOpenAI``, their async twins and any
OpenAI-compatible ``base_url`` (the provider then comes from the host).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from . import _llm, _stainless
from ._llm import Outcome, Request, count, get, given

_OPERATIONS = (
    ("/chat/completions", "chat"),
    ("/responses", "responses"),
    ("/embeddings", "embeddings"),
    ("/completions", "text_completion"),
)
_CONTENT_KEYS = frozenset({"messages", "input", "prompt", "instructions"})
_NOT_PARAMS = _CONTENT_KEYS | {"model", "stream"}


def _operation(options: Any) -> str | None:
    if getattr(options, "method", "").lower() != "post":
        return None
    url = str(getattr(options, "url", "")).split("?", 1)[0]
    for suffix, operation in _OPERATIONS:
        if url.endswith(suffix):
            return operation
    return None


class OpenAITranslator:
    name = "openai"

    def request(self, client: Any, options: Any, stream: bool, server: tuple[str, str]
                ) -> Request | None:
        operation = _operation(options)
        if operation is None:
            return None
        data = getattr(options, "json_data", None)
        if not isinstance(data, dict):
            data = {}
        provider = server[0]
        if provider == "openai" and "azure" in type(client).__name__.lower():
            provider = "azure"
        if operation == "chat":
            content: Any = data.get("messages")
        elif operation == "responses":
            content = _responses_input(data)
        elif operation == "text_completion":
            content = data.get("prompt")
        else:
            content = data.get("input")
        model = data.get("model")
        return Request(provider, operation, model if isinstance(model, str) else None, content,
                       data, _NOT_PARAMS, stream, server[1])

    def response(self, req: Request, obj: Any) -> Outcome:
        if req.operation == "responses":
            return _response_outcome(obj)
        out: Outcome = {"response_model": get(obj, "model"), "response_id": get(obj, "id"),
                        "usage": usage(get(obj, "usage"))}
        if req.operation == "embeddings":
            out["output"] = _llm.embeddings_output(get(obj, "data") or [], "embedding")
            return out
        return {**out, **choices_outcome(get(obj, "choices"), req.operation == "text_completion")}

    def accumulator(self, req: Request) -> Any:
        if req.operation == "responses":
            return _ResponsesStream()
        return _ChoicesStream(req.operation == "text_completion", req.data)


def _responses_input(data: dict[str, Any]) -> Any:
    raw = data.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else raw
    instructions = data.get("instructions")
    if instructions and given(instructions):
        head = [{"role": "system", "content": instructions}]
        return head + list(items) if isinstance(items, list) else [*head, items]
    return items


def choices_outcome(choices: Any, legacy: bool = False, refusals: bool = True) -> Outcome:
    """A whole response's ``choices``: their messages (texts, for legacy completions),
    finish reasons and tool calls."""
    outputs = []
    reasons = []
    for choice in choices or ():
        reason = get(choice, "finish_reason")
        if reason is not None:
            reasons.append(str(reason))
        if legacy:
            outputs.append(get(choice, "text"))
            continue
        message = get(choice, "message")
        msg: dict[str, Any] = {"role": get(message, "role") or "assistant",
                               "content": get(message, "content")}
        refusal = get(message, "refusal") if refusals else None
        if refusal:
            msg["refusal"] = refusal
        tcs = [_llm.function_call(tc) for tc in get(message, "tool_calls") or ()]
        if tcs:
            msg["tool_calls"] = tcs
        outputs.append(msg)
    out = _llm.messages_output(outputs)
    if not outputs:  # no choices at all: recorded as the empty list the response had
        out["output"] = outputs
    out["finish_reasons"] = reasons
    return out


def usage(u: Any) -> dict[str, Any] | None:
    """Chat/completions/embeddings usage; prompt tokens already include cached ones."""
    if u is None:
        return None
    prompt = get(u, "prompt_tokens")
    if prompt is None:  # the Responses API's names
        return _responses_usage(u)
    return _llm.usage(
        count(prompt), count(get(u, "completion_tokens")),
        cache_read=count(get(get(u, "prompt_tokens_details"), "cached_tokens")),
        reasoning=count(get(get(u, "completion_tokens_details"), "reasoning_tokens")))


def _responses_usage(u: Any) -> dict[str, Any]:
    return _llm.usage(
        count(get(u, "input_tokens")), count(get(u, "output_tokens")),
        cache_read=count(get(get(u, "input_tokens_details"), "cached_tokens")),
        reasoning=count(get(get(u, "output_tokens_details"), "reasoning_tokens")))


def _response_outcome(obj: Any) -> Outcome:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in get(obj, "output") or ():
        kind = get(item, "type")
        if kind == "message":
            for part in get(item, "content") or ():
                text = get(part, "text")
                if isinstance(text, str):
                    texts.append(text)
        elif kind == "function_call":
            calls.append({"id": get(item, "call_id"), "name": get(item, "name"),
                          "arguments": get(item, "arguments")})
    status = get(obj, "status")
    reason = get(get(obj, "incomplete_details"), "reason")
    output: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        output["tool_calls"] = calls
    out: Outcome = {
        "response_model": get(obj, "model"),
        "response_id": get(obj, "id"),
        "output": output,
        "finish_reasons": [str(reason or status)] if (reason or status) else [],
        "usage": None if get(obj, "usage") is None else _responses_usage(get(obj, "usage")),
    }
    if calls:
        out["tool_calls"] = calls
    return out


class _ChoicesStream:
    """Chat and legacy completion chunks, folded per choice index."""

    __slots__ = ("calls", "id", "legacy", "model", "reasons", "text", "usage", "wants_usage")

    def __init__(self, legacy: bool, data: dict[str, Any]) -> None:
        self.legacy = legacy
        self.text: dict[int, list[str]] = {}
        self.calls: dict[tuple[int, int], dict[str, Any]] = {}
        self.reasons: dict[int, str] = {}
        self.model: Any = None
        self.id: Any = None
        self.usage: Any = None
        options = data.get("stream_options")
        self.wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))

    def add(self, chunk: Any) -> None:
        # getattr with defaults: a field the SDK left unset must not stop the fold.
        if self.model is None:
            self.model = getattr(chunk, "model", None)
            self.id = getattr(chunk, "id", None)
        for choice in getattr(chunk, "choices", None) or ():
            index = getattr(choice, "index", None) or 0  # None from some servers
            if self.legacy:
                text = getattr(choice, "text", None)
            else:
                delta = getattr(choice, "delta", None)
                text = getattr(delta, "content", None)
                tool_calls = getattr(delta, "tool_calls", None)
                if tool_calls:
                    self._tool_deltas(index, tool_calls)
            if text:
                parts = self.text.get(index)
                if parts is None:
                    parts = self.text[index] = []
                parts.append(text)
            reason = getattr(choice, "finish_reason", None)
            if reason:
                self.reasons[index] = reason
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = usage

    def _tool_deltas(self, index: int, deltas: Any) -> None:
        for d in deltas:
            key = (index, getattr(d, "index", None) or 0)
            call = self.calls.get(key)
            if call is None:
                call = self.calls[key] = {"id": None, "name": None, "arguments": ""}
            if getattr(d, "id", None):
                call["id"] = d.id
            fn = getattr(d, "function", None)
            if fn is not None:
                if getattr(fn, "name", None):
                    call["name"] = fn.name
                if getattr(fn, "arguments", None):
                    call["arguments"] += fn.arguments

    def choices(self) -> Outcome:
        """The choices folded so far: output, finish reasons, tool calls."""
        indexes = sorted(set(self.text) | set(self.reasons) | {i for i, _ in self.calls})
        outputs: list[Any] = []
        for i in indexes:
            text = "".join(self.text.get(i, ())) or None
            if self.legacy:
                outputs.append(text)
                continue
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            calls = [c for (ci, _), c in sorted(self.calls.items()) if ci == i]
            if calls:
                msg["tool_calls"] = calls
            outputs.append(msg)
        out = _llm.messages_output(outputs)
        out["finish_reasons"] = [self.reasons[i] for i in sorted(self.reasons)]
        return out

    def outcome(self) -> Outcome:
        out: Outcome = {"response_model": self.model, "response_id": self.id,
                        "usage": usage(self.usage), **self.choices()}
        if self.usage is None:
            out["usage_missing_reason"] = (
                "the stream ended before its usage chunk" if self.wants_usage
                else "streamed without stream_options.include_usage: the provider sent none")
        return out


class _ResponsesStream:
    """Responses API events: text deltas, then the whole response in the last event."""

    __slots__ = ("final", "model", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.final: Any = None
        self.model: Any = None

    def add(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind == "response.output_text.delta":
            self.text.append(getattr(event, "delta", None) or "")
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.final = getattr(event, "response", None)
        elif kind == "response.created":
            self.model = getattr(getattr(event, "response", None), "model", None)

    def outcome(self) -> Outcome:
        if self.final is not None:
            return _response_outcome(self.final)
        return {"response_model": self.model,
                "output": {"role": "assistant", "content": "".join(self.text) or None},
                "usage": None,
                "usage_missing_reason": "the stream ended before response.completed"}


TRANSLATOR = OpenAITranslator()
_HELPER_STREAMS = (
    ("openai.lib.streaming.chat._completions",
     ("ChatCompletionStream", "AsyncChatCompletionStream")),
    ("openai.lib.streaming.responses._responses", ("ResponseStream", "AsyncResponseStream")),
)


def install(module: ModuleType) -> None:
    """Called once ``openai`` is imported."""
    _stainless.install(TRANSLATOR, importlib.import_module("openai._base_client"))
    for name, classes in _HELPER_STREAMS:
        try:
            helper = importlib.import_module(name)
        except ImportError:  # an SDK without that helper: nothing to hook
            continue
        _stainless.hook_helper_streams(helper, classes)
