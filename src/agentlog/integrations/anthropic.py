"""Anthropic SDK adapter: translation only (lifecycle in ``_llm``, patching in ``_stainless``).

Covers ``messages.create`` (plain, streamed, tool use, thinking) and ``messages.stream``,
sync and async, and the Bedrock and Vertex clients, which share the base client.
``count_tokens`` is not an LLM call and is not recorded.
"""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Any

from . import _llm, _stainless
from ._llm import Outcome, Request, count, get, given

_NOT_PARAMS = frozenset({"messages", "system", "model", "stream"})


def _is_messages(options: Any) -> bool:
    if getattr(options, "method", "").lower() != "post":
        return False
    return str(getattr(options, "url", "")).split("?", 1)[0].endswith("/messages")


def usage(u: Any) -> dict[str, Any] | None:
    """Anthropic counts cached input apart; ours includes it, as OpenTelemetry does.
    Thinking is billed within output_tokens: no reasoning count of its own."""
    if u is None:
        return None
    fresh = count(get(u, "input_tokens"))
    read = count(get(u, "cache_read_input_tokens"))
    write = count(get(u, "cache_creation_input_tokens"))
    return _llm.usage(None if fresh is None else fresh + (read or 0) + (write or 0),
                      count(get(u, "output_tokens")), read, write)


def _blocks(content: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content or ():
        kind = get(block, "type")
        if kind == "text":
            texts.append(get(block, "text") or "")
        elif kind == "thinking":
            thinking.append(get(block, "thinking") or "")
        elif kind in ("tool_use", "server_tool_use"):
            arguments = get(block, "input")
            calls.append({"id": get(block, "id"), "name": get(block, "name"),
                          "arguments": arguments if isinstance(arguments, str)
                          else json.dumps(arguments)})
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thinking:
        out["thinking"] = "".join(thinking)
    if calls:
        out["tool_calls"] = calls
    return out, calls


class AnthropicTranslator:
    name = "anthropic"

    def request(self, client: Any, options: Any, stream: bool, server: tuple[str, str]
                ) -> Request | None:
        if not _is_messages(options):
            return None
        data = getattr(options, "json_data", None)
        if not isinstance(data, dict):
            data = {}
        provider = server[0]
        kind = type(client).__name__.lower()
        if "bedrock" in kind:
            provider = "aws-bedrock"
        elif "vertex" in kind:
            provider = "google-vertex"
        messages = data.get("messages")
        system = data.get("system")
        if system is not None and given(system):
            messages = [{"role": "system", "content": system},
                        *(messages if isinstance(messages, list) else [messages])]
        model = data.get("model")
        return Request(provider, "chat", model if isinstance(model, str) else None, messages,
                       data, _NOT_PARAMS, stream, server[1])

    def response(self, req: Request, obj: Any) -> Outcome:
        output, calls = _blocks(get(obj, "content"))
        reason = get(obj, "stop_reason")
        out: Outcome = {
            "response_model": get(obj, "model"),
            "response_id": get(obj, "id"),
            "output": output,
            "finish_reasons": [str(reason)] if reason else [],
            "usage": usage(get(obj, "usage")),
        }
        if calls:
            out["tool_calls"] = calls
        return out

    def accumulator(self, req: Request) -> Any:
        return _MessageStream()


class _MessageStream:
    """Raw message events: the start, content block deltas, the closing delta."""

    __slots__ = ("blocks", "id", "model", "reason", "stopped", "usage")

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.model: Any = None
        self.id: Any = None
        self.reason: Any = None
        self.usage: dict[str, Any] = {}
        self.stopped = False

    def add(self, event: Any) -> None:
        # getattr with defaults: an event the SDK left partly unset must not stop the fold.
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            delta = getattr(event, "delta", None)
            index = getattr(event, "index", 0)
            block = self.blocks.get(index)
            if block is None:
                block = self.blocks[index] = {"type": "text", "text": ""}
            dkind = getattr(delta, "type", None)
            if dkind == "text_delta":
                block["text"] = block.get("text", "") + (getattr(delta, "text", None) or "")
            elif dkind == "input_json_delta":
                block["input"] = block.get("input", "") + (
                    getattr(delta, "partial_json", None) or "")
            elif dkind == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + (
                    getattr(delta, "thinking", None) or "")
        elif kind == "content_block_start":
            cb = getattr(event, "content_block", None)
            block = {"type": getattr(cb, "type", None)}
            if block["type"] in ("tool_use", "server_tool_use"):
                block.update(id=getattr(cb, "id", None), name=getattr(cb, "name", None),
                             input="")
            self.blocks[getattr(event, "index", 0)] = block
        elif kind == "message_start":
            message = getattr(event, "message", None)
            self.model = getattr(message, "model", None)
            self.id = getattr(message, "id", None)
            self._usage(getattr(message, "usage", None))
        elif kind == "message_delta":
            self.reason = getattr(getattr(event, "delta", None), "stop_reason", None)
            self._usage(getattr(event, "usage", None))
        elif kind == "message_stop":
            self.stopped = True

    def _usage(self, u: Any) -> None:
        if u is None:
            return
        for name in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                     "cache_creation_input_tokens"):
            value = getattr(u, name, None)
            if value is not None:  # message_delta repeats only what changed
                self.usage[name] = value

    def outcome(self) -> Outcome:
        blocks = [self.blocks[i] for i in sorted(self.blocks)]
        output, calls = _blocks(blocks)
        out: Outcome = {
            "response_model": self.model,
            "response_id": self.id,
            "output": output,
            "finish_reasons": [str(self.reason)] if self.reason else [],
            "usage": usage(self.usage) if "output_tokens" in self.usage or self.stopped
            else None,
        }
        if out["usage"] is None:
            out["usage_missing_reason"] = "the stream ended before message_delta"
        if calls:
            out["tool_calls"] = calls
        return out


TRANSLATOR = AnthropicTranslator()


def install(module: ModuleType) -> None:
    """Called once ``anthropic`` is imported."""
    _stainless.install(TRANSLATOR, importlib.import_module("anthropic._base_client"))
    try:
        helper = importlib.import_module("anthropic.lib.streaming")
    except ImportError:  # an SDK without the helper: nothing to hook
        return
    _stainless.hook_helper_streams(
        helper, ("MessageStream", "AsyncMessageStream", "BetaMessageStream",
                 "BetaAsyncMessageStream"))
