"""litellm adapter: ``completion``/``acompletion`` (streamed or not), ``embedding``/``aembedding``.

Wrapped, not fed by litellm's callbacks: those run later on litellm's logging threads,
outside the caller's context (no interaction to attach the call to), never hear of a
stream closed early, and cannot mark the call as recorded while litellm calls the openai
SDK beneath it. The wrapper sets ``IN_CALL`` around litellm's own work, so that SDK call
and litellm's own HTTP requests stay quiet: one logical call, one record.

A stream stays litellm's ``CustomStreamWrapper``: it is its own iterator, so its class's
``__next__``/``__anext__``/``close``/``aclose`` are patched once and feed the call of each
stream returned by a recorded call. The provider is the one litellm resolved, read from
what it returns (resolving it beforehand would print to stdout for unknown models).
"""

from __future__ import annotations

import functools
import weakref
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from .._patching import Patches
from . import _llm
from ._llm import G_FINISH, IN_CALL, Call, FunctionHooks, Outcome, Request, get
from ._resources import QUIET

PATCHES = Patches()

# litellm's provider names -> the names the other adapters use (and genai-prices knows).
_PROVIDERS = {
    "bedrock": "aws-bedrock", "bedrock_converse": "aws-bedrock", "sagemaker": "aws-sagemaker",
    "vertex_ai": "google-vertex", "vertex_ai_beta": "google-vertex", "gemini": "google",
    "text-completion-openai": "openai", "azure_ai": "azure", "together_ai": "together",
    "fireworks_ai": "fireworks", "xai": "x-ai", "cohere_chat": "cohere",
    "ollama_chat": "ollama", "mistral": "mistral",
}
_KEYS = ("api_key", "aws_secret_access_key", "aws_session_token", "azure_ad_token")
_NOT_PARAMS = frozenset({
    "model", "messages", "input", "stream", "api_base", "base_url", "custom_llm_provider",
    "client", "litellm_logging_obj", "extra_headers", "headers", "aws_access_key_id",
    "aws_region_name", "aws_bedrock_runtime_endpoint", "api_version", *_KEYS,
})
_known: frozenset[str] = frozenset()
"""litellm's provider prefixes (``anthropic/claude-...``), read once at install."""


def _provider(name: Any) -> str | None:
    return _PROVIDERS.get(name, name) if isinstance(name, str) and name else None


def _server(api_base: Any) -> str | None:
    if not isinstance(api_base, str) or not api_base:
        return None
    try:
        return urlsplit(api_base).netloc.rpartition("@")[2] or None
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _usage(u: Any) -> dict[str, Any] | None:
    """litellm's OpenAI-shaped usage (prompt tokens include cached ones); ``None`` for its
    ``UnreportedUsage`` placeholder, which means the provider said nothing."""
    if u is None or type(u).__name__ == "UnreportedUsage":
        return None
    prompt = get(u, "prompt_tokens_details")
    return {
        "input_tokens": _int(get(u, "prompt_tokens")),
        "output_tokens": _int(get(u, "completion_tokens")),
        "cache_read_input_tokens": _int(get(prompt, "cached_tokens")),
        "cache_write_input_tokens": _int(get(prompt, "cache_write_tokens")),
        "reasoning_output_tokens": _int(
            get(get(u, "completion_tokens_details"), "reasoning_tokens")),
    }


def _tool_call(tc: Any) -> dict[str, Any]:
    fn = get(tc, "function")
    return {"id": get(tc, "id"), "name": get(fn, "name"), "arguments": get(fn, "arguments")}


class Translator:
    """One entry point: ``chat`` (completion) or ``embeddings``."""

    name = "litellm"

    def __init__(self, operation: str, content_key: str) -> None:
        self.operation = operation
        self.content_key = content_key

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request | None:
        model = args[0] if args else kwargs.get("model")
        content = args[1] if len(args) > 1 else kwargs.get(self.content_key)
        if isinstance(content, list):
            content = list(content)  # the caller often appends the reply to it afterwards
        key = kwargs.get("api_key")
        if key is not None:
            _llm.note_keys(key)
        if "aws_secret_access_key" in kwargs or "azure_ad_token" in kwargs:
            _llm.note_keys(*(kwargs.get(k) for k in _KEYS))
        provider = kwargs.get("custom_llm_provider")
        if not isinstance(model, str):
            model = None
        elif not provider:
            prefix, slash, rest = model.partition("/")
            if slash and prefix in _known:  # litellm's routing prefix, not the model's name
                provider, model = prefix, rest
        return Request(_provider(provider) or "litellm", self.operation, model, content,
                       kwargs, _NOT_PARAMS,
                       self.operation == "chat" and bool(kwargs.get("stream")),
                       _server(kwargs.get("api_base") or kwargs.get("base_url")
                               or kwargs.get("aws_bedrock_runtime_endpoint")))

    def response(self, req: Request, obj: Any) -> Outcome:
        out: Outcome = {"response_model": get(obj, "model"), "response_id": get(obj, "id"),
                        "usage": _usage(get(obj, "usage"))}
        if req.operation == "embeddings":
            items = get(obj, "data") or []
            first = get(items[0], "embedding") if items else None
            out["output"] = {"embeddings": len(items),
                             "dimensions": len(first) if isinstance(first, list) else None}
            return out
        outputs = []
        calls: list[dict[str, Any]] = []
        reasons = []
        for choice in get(obj, "choices") or ():
            reason = get(choice, "finish_reason")
            if reason is not None:
                reasons.append(str(reason))
            message = get(choice, "message")
            msg: dict[str, Any] = {"role": get(message, "role") or "assistant",
                                   "content": get(message, "content")}
            tcs = [_tool_call(tc) for tc in get(message, "tool_calls") or ()]
            if tcs:
                msg["tool_calls"] = tcs
                calls.extend(tcs)
            outputs.append(msg)
        out["output"] = outputs[0] if len(outputs) == 1 else outputs
        out["finish_reasons"] = reasons
        if calls:
            out["tool_calls"] = calls
        return out

    def accumulator(self, req: Request) -> _Chunks:
        return _Chunks()


class _Chunks:
    """``ModelResponseStream`` chunks, kept as they pass and folded when the record is
    written: reading a litellm chunk's fields costs microseconds each, too much per chunk."""

    __slots__ = ("items", "reported")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.reported: Any = None

    def add(self, chunk: Any) -> None:
        self.items.append(chunk)
        # Without stream_options, litellm puts what the provider reported on the last
        # chunk's hidden params, and replaces it with its own estimate once the stream
        # has ended: read it now, while it is still the provider's.
        hidden = _hidden(chunk)
        if hidden:
            usage = hidden.get("usage")
            if usage is not None:
                self.reported = usage

    def outcome(self) -> Outcome:
        text: dict[int, list[str]] = {}
        calls: dict[tuple[int, int], dict[str, Any]] = {}
        reasons: dict[int, str] = {}
        usage = None
        for chunk in self.items:
            for choice in getattr(chunk, "choices", None) or ():
                index = getattr(choice, "index", None) or 0
                delta = getattr(choice, "delta", None)
                piece = getattr(delta, "content", None)
                if piece:
                    text.setdefault(index, []).append(piece)
                for d in getattr(delta, "tool_calls", None) or ():
                    call = calls.setdefault((index, getattr(d, "index", None) or 0),
                                            {"id": None, "name": None, "arguments": ""})
                    if getattr(d, "id", None):
                        call["id"] = d.id
                    fn: Any = getattr(d, "function", None)
                    if getattr(fn, "name", None):
                        call["name"] = fn.name
                    if getattr(fn, "arguments", None):
                        call["arguments"] += fn.arguments
                reason = getattr(choice, "finish_reason", None)
                if reason:
                    reasons[index] = reason
            usage = getattr(chunk, "usage", None) or usage
        first = self.items[0] if self.items else None
        outputs: list[Any] = []
        all_calls = []
        for i in sorted(set(text) | set(reasons) | {i for i, _ in calls}):
            msg: dict[str, Any] = {"role": "assistant", "content": "".join(text.get(i, ())) or None}
            mine = [c for (ci, _), c in sorted(calls.items()) if ci == i]
            if mine:
                msg["tool_calls"] = mine
                all_calls.extend(mine)
            outputs.append(msg)
        out: Outcome = {
            "response_model": getattr(first, "model", None),
            "response_id": getattr(first, "id", None),
            "output": outputs[0] if len(outputs) == 1 else outputs or None,
            "finish_reasons": [reasons[i] for i in sorted(reasons)],
            "usage": _usage(usage or self.reported),
        }
        if all_calls:
            out["tool_calls"] = all_calls
        if out["usage"] is None:
            out["usage_missing_reason"] = (
                "the provider reported no usage in the stream (litellm's own estimate is "
                "not recorded; stream_options.include_usage asks the provider for it)")
        return out


# -- the entry points ------------------------------------------------------------------
class _Hooks(FunctionHooks):
    """The usual mapping, with the provider litellm resolved read off the result."""

    __slots__ = ()

    def returned(self, call: Call, args: tuple[Any, ...], result: Any) -> Any:
        req = call.req
        hidden = _hidden(result)
        if req.streamed:
            resolved = getattr(result, "custom_llm_provider", None)
        else:
            resolved = hidden.get("custom_llm_provider") if hidden else None
        _resolved(req, resolved, hidden.get("api_base") if hidden else None)
        if req.streamed:
            if type(result) in _stream_classes:
                _watch(result, call, self.tr.accumulator(req))
            else:
                _llm.warn_once("litellm.stream", f"cannot observe {type(result).__name__}")
                call.cut("agentlog could not observe this stream")
            return result
        call.done(self.tr.response, result)
        return result

    def raised(self, call: Call, args: tuple[Any, ...], exc: BaseException) -> None:
        _resolved(call.req, getattr(exc, "llm_provider", None), None)
        call.failed(exc)


def _hidden(obj: Any) -> dict[str, Any] | None:
    """litellm's ``_hidden_params``: straight from pydantic's private storage on its
    response models (the attribute itself costs microseconds there)."""
    private = getattr(obj, "__pydantic_private__", None)
    found = (private.get("_hidden_params") if isinstance(private, dict)
             else getattr(obj, "_hidden_params", None))
    return found if isinstance(found, dict) else None


def _resolved(req: Request, provider: Any, api_base: Any) -> None:
    """Known only once litellm has routed the call: the provider, and where it went."""
    name = _provider(provider)
    if name is not None:
        req.provider = name
    if req.server is None:
        req.server = _server(api_base)


# -- CustomStreamWrapper: its own iterator -------------------------------------------------
class _Watch:
    __slots__ = ("busy", "call")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.busy = False


_watched: weakref.WeakKeyDictionary[Any, _Watch] = weakref.WeakKeyDictionary()
_stream_classes: set[type] = set()


def _watch(stream: Any, call: Call, acc: Any) -> None:
    call.acc = acc
    _watched[stream] = _Watch(call)
    call.finalizer = fin = weakref.finalize(stream, _collected, call)
    fin.atexit = False  # at exit the run closes open calls itself


def _collected(call: Call) -> None:
    with G_FINISH:
        call.cut("the stream was garbage-collected before its end")


def _ended(stream: Any, watch: _Watch, exc: BaseException | None) -> None:
    with G_FINISH:
        _watched.pop(stream, None)
        if exc is None:
            acc = watch.call.acc
            if isinstance(acc, _Chunks):
                acc.reported = _reported(stream) or acc.reported
            watch.call.done()
        else:
            watch.call.failed(exc)


def _reported(stream: Any) -> Any:
    """The last usage the provider sent, from the chunks the stream keeps: a chunk that
    carries only usage (Bedrock's metadata event) is kept there but never handed out."""
    for chunk in reversed(getattr(stream, "chunks", None) or ()):
        extra = getattr(chunk, "__pydantic_extra__", None)
        usage = extra.get("usage") if isinstance(extra, dict) else None
        if usage is not None and type(usage).__name__ != "UnreportedUsage":
            return usage
    return None


# litellm closes the stream itself on its way out of ``__next__`` (at the end, or on an
# error): ``busy`` tells that close from the caller's, which cuts the record short.
def _next_hook(original: Any) -> Any:
    @functools.wraps(original)
    def __next__(self: Any) -> Any:
        watch = _watched.get(self) if _watched else None
        if watch is None:
            return original(self)
        # The request may be made only now (a lazily opened stream): still this call.
        watch.busy = True
        inside, quiet = IN_CALL.set(True), QUIET.set(True)
        try:
            item = original(self)
        except StopIteration:
            _ended(self, watch, None)
            raise
        except BaseException as exc:
            _ended(self, watch, exc)
            raise
        finally:
            QUIET.reset(quiet)
            IN_CALL.reset(inside)
            watch.busy = False
        _llm._chunk(watch.call, item)
        return item

    return __next__


def _anext_hook(original: Any) -> Any:
    @functools.wraps(original)
    async def __anext__(self: Any) -> Any:
        watch = _watched.get(self) if _watched else None
        if watch is None:
            return await original(self)
        watch.busy = True
        inside, quiet = IN_CALL.set(True), QUIET.set(True)
        try:
            item = await original(self)
        except StopAsyncIteration:
            _ended(self, watch, None)
            raise
        except BaseException as exc:
            _ended(self, watch, exc)
            raise
        finally:
            QUIET.reset(quiet)
            IN_CALL.reset(inside)
            watch.busy = False
        _llm._chunk(watch.call, item)
        return item

    return __anext__


def _closing(stream: Any) -> None:
    with G_FINISH:
        watch = _watched.get(stream)
        if watch is not None and not watch.busy:
            _watched.pop(stream, None)
            watch.call.cut("closed before its end")


def _close_hook(original: Any) -> Any:
    @functools.wraps(original)
    def close(self: Any) -> Any:
        try:
            return original(self)
        finally:
            _closing(self)

    return close


def _aclose_hook(original: Any) -> Any:
    @functools.wraps(original)
    async def aclose(self: Any) -> Any:
        try:
            return await original(self)
        finally:
            _closing(self)

    return aclose


_ENTRY_POINTS = (
    ("completion", Translator("chat", "messages")),
    ("acompletion", Translator("chat", "messages")),
    ("embedding", Translator("embeddings", "input")),
    ("aembedding", Translator("embeddings", "input")),
)


def install(module: ModuleType) -> None:
    """Called once ``litellm`` is imported."""
    global _known
    _llm.install()
    _known = frozenset(str(p.value if hasattr(p, "value") else p)
                       for p in getattr(module, "provider_list", ()))
    for name, tr in _ENTRY_POINTS:
        original = module.__dict__.get(name)
        if original is not None:
            PATCHES.apply(module, name, _llm.wrapper_for(original, _Hooks(tr)))
    cls = getattr(module, "CustomStreamWrapper", None)
    if not isinstance(cls, type):  # not where it has been: streams are cut, with a warning
        return
    _stream_classes.add(cls)
    for name, make in (("__next__", _next_hook), ("__anext__", _anext_hook),
                       ("close", _close_hook), ("aclose", _aclose_hook)):
        PATCHES.apply(cls, name, make)


def uninstall() -> None:
    PATCHES.remove()
    _stream_classes.clear()
