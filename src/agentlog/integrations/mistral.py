"""mistralai adapter: translation only (lifecycle in ``_llm``).

Patches ``Chat`` and ``Agents`` (``complete``, ``stream`` and their ``_async`` twins;
``parse`` goes through them) and ``Embeddings.create``, for the Mistral client and its
Azure and Google Cloud variants: mistralai 3.x keeps them in ``mistralai.client``,
``mistralai.azure.client`` and ``mistralai.gcp.client`` (``mistralai`` itself is a
namespace package, imported before any of them), 1.x in ``mistralai``. Streams keep their
type (``EventStream``/``EventStreamAsync``): the observer takes the place of their
``generator``, and their ``close`` (which ``with`` calls) closes the record.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from .._imports import forget, when_imported
from .._patching import Patches
from . import _llm
from ._llm import Call, FunctionHooks, Outcome, Request, count, get

PATCHES = Patches()

# (package, provider): 3.x layouts first, then 1.x's.
_PACKAGES = (
    ("mistralai.client", "mistral"),
    ("mistralai.azure.client", "azure"),
    ("mistralai.gcp.client", "google-vertex"),
    ("mistralai", "mistral"),
)
# module -> (class, operation); each class has ``<method>`` and ``<method>_async``.
_CLASSES = (("chat", "Chat", "chat"), ("agents", "Agents", "chat"),
            ("embeddings", "Embeddings", "embeddings"))
_METHODS = {"chat": (("complete", False), ("stream", True)),
            "embeddings": (("create", False),)}
# Not parameters: content, or per-call transport settings (headers may carry keys).
_SKIP = frozenset({"messages", "inputs", "model", "stream", "retries", "server_url",
                   "timeout_ms", "http_headers"})

def _address(sdk: Any, server_url: Any) -> str | None:
    url = server_url
    if not isinstance(url, str):
        config = getattr(sdk, "sdk_configuration", None)
        try:
            url = config.get_server_details()[0]  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - an odd configuration: the address is optional
            return None
    return _llm.address(url)[1] or None


def _tools(tools: Any) -> Any:
    """Tools as given; SDK objects as dicts of what ``params`` shows (their names)."""
    if not isinstance(tools, list) or all(isinstance(t, dict) for t in tools):
        return tools
    out = []
    for tool in tools:
        fn = get(tool, "function")
        out.append(tool if isinstance(tool, dict) else {
            "type": "function", "function": {"name": get(fn, "name"),
                                             "description": get(fn, "description"),
                                             "parameters": get(fn, "parameters")}})
    return out


class MistralTranslator:
    name = "mistralai"

    def __init__(self, provider: str, operation: str, streamed: bool) -> None:
        self.provider = provider
        self.operation = operation
        self.streamed = streamed

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request | None:
        sdk = args[0] if args else None
        security = getattr(getattr(sdk, "sdk_configuration", None), "security", None)
        _llm.note_keys(getattr(security, "api_key", None))
        content = kwargs.get("inputs" if self.operation == "embeddings" else "messages")
        if isinstance(content, list):  # agent loops append to it after the call
            content = list(content)
        data = {k: v for k, v in kwargs.items()
                if v is not None and type(v).__name__ != "Unset"}
        if "tools" in data:
            data["tools"] = _tools(data["tools"])
        model = kwargs.get("model")
        return Request(self.provider, self.operation, model if isinstance(model, str) else None,
                       content, data, _SKIP, self.streamed,
                       _address(sdk, kwargs.get("server_url")))

    def response(self, req: Request, obj: Any) -> Outcome:
        out: Outcome = {"response_model": get(obj, "model"), "response_id": get(obj, "id"),
                        "usage": usage(get(obj, "usage"))}
        if req.operation == "embeddings":
            out["output"] = _llm.embeddings_output(get(obj, "data") or [], "embedding")
            return out
        fold = _Choices()
        for choice in get(obj, "choices") or ():
            index = get(choice, "index") or 0
            message = get(choice, "message")
            fold.content(index, get(message, "content"))
            for tc in get(message, "tool_calls") or ():
                fold.tool_call(index, tc)
            fold.finish(index, get(choice, "finish_reason"))
        return {**out, **fold.outcome()}

    def accumulator(self, req: Request) -> Any:
        return _Stream()


def usage(u: Any) -> dict[str, Any] | None:
    """OpenAI's shape; cached prompt tokens (already in prompt_tokens) when reported."""
    if u is None:
        return None
    return _llm.usage(count(get(u, "prompt_tokens")), count(get(u, "completion_tokens")),
                      count(get(get(u, "prompt_tokens_details"), "cached_tokens")))


class _Choices:
    """Messages folded per choice index: text and thinking in pieces, tool calls whole or
    in fragments (a call with a new id starts a new one)."""

    __slots__ = ("calls", "reasons", "text", "thinking")

    def __init__(self) -> None:
        self.text: dict[int, list[str]] = {}
        self.thinking: dict[int, list[str]] = {}
        self.calls: dict[int, list[dict[str, Any]]] = {}
        self.reasons: dict[int, str] = {}

    def content(self, index: int, content: Any) -> None:
        if isinstance(content, str):
            if content:
                self.text.setdefault(index, []).append(content)
            return
        for chunk in content if isinstance(content, list) else ():
            text = get(chunk, "text")
            if isinstance(text, str):
                self.text.setdefault(index, []).append(text)
            thinking = get(chunk, "thinking")
            if thinking is not None:  # a list of text chunks
                parts = [get(t, "text") for t in thinking] if isinstance(thinking, list) else [
                    thinking]
                self.thinking.setdefault(index, []).extend(p for p in parts if isinstance(p, str))

    def tool_call(self, index: int, tc: Any) -> None:
        calls = self.calls.setdefault(index, [])
        fn = get(tc, "function")
        tc_id = get(tc, "id")
        args = _llm.json_text(get(fn, "arguments"))
        if calls and (tc_id is None or tc_id == "null" or tc_id == calls[-1]["id"]):
            last = calls[-1]
            if isinstance(args, str):
                last["arguments"] = (last["arguments"] or "") + args
            return
        calls.append({"id": tc_id, "name": get(fn, "name"), "arguments": args})

    def finish(self, index: int, reason: Any) -> None:
        if reason is not None:
            self.reasons[index] = str(reason)

    def outcome(self) -> Outcome:
        indexes = sorted(set(self.text) | set(self.thinking) | set(self.calls) | set(self.reasons))
        outputs = []
        for i in indexes:
            msg: dict[str, Any] = {"role": "assistant",
                                   "content": "".join(self.text.get(i, ())) or None}
            if i in self.thinking:
                msg["thinking"] = "".join(self.thinking[i])
            if self.calls.get(i):
                msg["tool_calls"] = self.calls[i]
            outputs.append(msg)
        out = _llm.messages_output(outputs)
        out["finish_reasons"] = [self.reasons[i] for i in sorted(self.reasons)]
        return out


class _Stream:
    """``CompletionEvent``s: each holds an OpenAI-like chunk in ``data``; usage comes in
    the last one."""

    __slots__ = ("choices", "id", "model", "usage")

    def __init__(self) -> None:
        self.choices = _Choices()
        self.model: Any = None
        self.id: Any = None
        self.usage: Any = None

    def add(self, event: Any) -> None:
        chunk = getattr(event, "data", event)
        if self.model is None:
            self.model = getattr(chunk, "model", None)
            self.id = getattr(chunk, "id", None)
        choices = self.choices
        for choice in getattr(chunk, "choices", None) or ():
            index = getattr(choice, "index", None) or 0
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None)
            if content:
                choices.content(index, content)
            for tc in getattr(delta, "tool_calls", None) or ():
                choices.tool_call(index, tc)
            choices.finish(index, getattr(choice, "finish_reason", None))
        found = getattr(chunk, "usage", None)
        if found is not None:
            self.usage = found

    def outcome(self) -> Outcome:
        out: Outcome = {"response_model": self.model, "response_id": self.id,
                        "usage": usage(self.usage), **self.choices.outcome()}
        if self.usage is None:
            out["usage_missing_reason"] = "the stream ended before its usage chunk"
        return out


class _Hooks(FunctionHooks):
    """``FunctionHooks``, but a stream is observed in place: the SDK's object, its type,
    its ``with`` and ``close`` stay as they are."""

    __slots__ = ()

    def returned(self, call: Call, args: tuple[Any, ...], result: Any) -> Any:
        if not call.req.streamed:
            call.done(self.tr.response, result)
            return result
        _llm.observe_in_place(PATCHES, result, call, self.tr.accumulator(call.req),
                              "mistralai", "generator")
        return result


def _patch(provider: str, cls_name: str, operation: str, module: ModuleType) -> None:
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        return
    for method, streamed in _METHODS[operation]:
        tr = MistralTranslator(provider, operation, streamed)
        for name in (method, method + "_async"):
            original = cls.__dict__.get(name)
            if original is not None:
                PATCHES.apply(cls, name, _llm.wrapper_for(original, _Hooks(tr)))


def _hooked() -> list[str]:
    return [f"{pkg}.{mod}" for pkg, _ in _PACKAGES for mod, _, _ in _CLASSES]


def install(module: ModuleType) -> None:
    """Called once ``mistralai`` is imported: its modules are patched as they are."""
    _llm.install()
    for pkg, provider in _PACKAGES:
        for mod, cls_name, operation in _CLASSES:
            when_imported(f"{pkg}.{mod}", functools.partial(_patch, provider, cls_name,
                                                            operation))


def uninstall() -> None:
    for name in _hooked():
        forget(name)
    PATCHES.remove()
