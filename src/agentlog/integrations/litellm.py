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

from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from .._patching import Patches
from . import _llm
from ._llm import Call, FunctionHooks, Outcome, Request, count, get
from .openai import _ChoicesStream, choices_outcome

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


def _usage(u: Any) -> dict[str, Any] | None:
    """litellm's OpenAI-shaped usage (prompt tokens include cached ones); ``None`` for its
    ``UnreportedUsage`` placeholder, which means the provider said nothing."""
    if u is None or type(u).__name__ == "UnreportedUsage":
        return None
    prompt = get(u, "prompt_tokens_details")
    return _llm.usage(
        count(get(u, "prompt_tokens")), count(get(u, "completion_tokens")),
        count(get(prompt, "cached_tokens")), count(get(prompt, "cache_write_tokens")),
        count(get(get(u, "completion_tokens_details"), "reasoning_tokens")))


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
            out["output"] = _llm.embeddings_output(get(obj, "data") or [], "embedding")
            return out
        # litellm's messages have a ``refusal`` field, but the record has never shown it.
        return {**out, **choices_outcome(get(obj, "choices"), refusals=False)}

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
        fold = _ChoicesStream(False, {})
        for chunk in self.items:
            fold.add(chunk)
        first = self.items[0] if self.items else None
        out: Outcome = {"response_model": getattr(first, "model", None),
                        "response_id": getattr(first, "id", None),
                        "usage": _usage(fold.usage or self.reported), **fold.choices()}
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
                _llm.watch_iterator(result, call, self.tr.accumulator(req), _ending)
            else:
                _llm.cannot_observe(call, "litellm", type(result))
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
_stream_classes: set[type] = set()


def _ending(stream: Any, call: Call) -> None:
    acc = call.acc
    if isinstance(acc, _Chunks):
        acc.reported = _reported(stream) or acc.reported


def _reported(stream: Any) -> Any:
    """The last usage the provider sent, from the chunks the stream keeps: a chunk that
    carries only usage (Bedrock's metadata event) is kept there but never handed out."""
    for chunk in reversed(getattr(stream, "chunks", None) or ()):
        extra = getattr(chunk, "__pydantic_extra__", None)
        usage = extra.get("usage") if isinstance(extra, dict) else None
        if usage is not None and type(usage).__name__ != "UnreportedUsage":
            return usage
    return None


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
    _llm.hook_iterator_class(PATCHES, cls)


def uninstall() -> None:
    PATCHES.remove()
    _stream_classes.clear()
