"""The choke point of Stainless-generated SDKs (openai, anthropic, and others).

Every endpoint and helper of these SDKs, ``with_raw_response`` and the ``.stream()``
managers included, goes through ``SyncAPIClient.request`` / ``AsyncAPIClient.request``.
Patching those two covers them all in one place. Raw responses are parsed later, by the
caller: the owner of their ``_parse`` is hooked the first time one is seen. Streams keep
their type; ``close`` is hooked on the stream classes as they are met.
"""

from __future__ import annotations

import functools
import weakref
from types import ModuleType
from typing import Any, Protocol

import orjson

from .._patching import Patches
from . import _llm
from ._llm import G_FINISH, Accumulator, Call, Outcome, Request


class Translator(Protocol):
    """What an adapter provides: plain translation, no lifecycle."""

    name: str

    def request(self, client: Any, options: Any, stream: bool, server: tuple[str, str]
                ) -> Request | None:
        """The call about to be made, or None when it is not an LLM call."""

    def response(self, req: Request, obj: Any) -> Outcome:
        """A whole response: the SDK's object, or the same data as parsed JSON."""

    def accumulator(self, req: Request) -> Accumulator:
        """A fresh fold for one stream's items."""


PATCHES = Patches()

_servers: dict[int, tuple[Any, tuple[str, str]]] = {}

# Hosts whose provider is not the SDK's own name (OpenAI-compatible endpoints).
KNOWN_HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral",
    "api.deepseek.com": "deepseek",
    "api.together.xyz": "together",
    "api.fireworks.ai": "fireworks",
    "openrouter.ai": "openrouter",
    "api.x.ai": "x-ai",
    "api.perplexity.ai": "perplexity",
    "api.cerebras.ai": "cerebras",
    "generativelanguage.googleapis.com": "google",
    "api.cohere.ai": "cohere",
    "api.cohere.com": "cohere",
}
_SUFFIXES = (
    (".openai.azure.com", "azure"),
    (".cognitiveservices.azure.com", "azure"),
    (".services.ai.azure.com", "azure"),
    (".amazonaws.com", "aws-bedrock"),
    ("aiplatform.googleapis.com", "google-vertex"),
)


def provider_for(host: str, default: str) -> str:
    """The provider a host belongs to; an unknown host (a proxy, a local server) keeps
    the SDK's own name, and ``server_address`` says where it went."""
    known = KNOWN_HOSTS.get(host)
    if known is not None:
        return known
    for suffix, provider in _SUFFIXES:
        if host.endswith(suffix):
            return provider
    return default


def _server(client: Any, default: str) -> tuple[str, str]:
    """(provider, server address) for a client, cached per base URL object."""
    url = getattr(client, "_base_url", None)
    cached = _servers.get(id(url))
    if cached is not None and cached[0] is url:
        return cached[1]
    host = str(getattr(url, "host", "") or "")
    port = getattr(url, "port", None)
    found = (provider_for(host, default), f"{host}:{port}" if port else host)
    if len(_servers) > 256:
        _servers.clear()
    _servers[id(url)] = (url, found)
    return found


# Where the clients keep their credentials: openai/anthropic ``api_key``, anthropic
# ``auth_token`` (sent as a Bearer token), Azure's ``azure_ad_token``.
_KEY_ATTRS = ("api_key", "auth_token", "_azure_ad_token")


def _note_key(client: Any) -> None:
    _llm.note_keys(*(getattr(client, attr, None) for attr in _KEY_ATTRS))


def _begin(tr: Translator, client: Any, options: Any, stream: Any) -> Call | None:
    req = tr.request(client, options, bool(stream), _server(client, tr.name))
    return None if req is None else _llm.begin(req)


def _returned(tr: Translator, call: Call, result: Any) -> None:
    """The SDK returned: a parsed object, a stream, or a raw response parsed later."""
    try:
        _settle(tr, call, result)
    except Exception:
        call.cut("agentlog failed to read the response")  # never left open, nor lost
        raise


_raw_classes: dict[type, bool] = {}
"""Result class -> is it a raw response (parsed later by the caller)? Asked of the class,
once: on a pydantic model, a missing attribute costs microseconds each time."""


def _is_raw(cls: type) -> bool:
    raw = _raw_classes.get(cls)
    if raw is None:
        raw = _raw_classes[cls] = any("_parse" in k.__dict__ for k in cls.__mro__)
    return raw


def _settle(tr: Translator, call: Call, result: Any) -> None:
    cls = type(result)
    if _is_raw(cls) and hasattr(result, "http_response"):
        _await_parse(tr, call, result)
    elif call.req.streamed:
        _llm.observe_in_place(PATCHES, result, call, tr.accumulator(call.req), tr.name)
    else:
        call.done(tr.response, result)


class Hooks:
    """The lifecycle's view of ``request(self, cast_to, options, *, stream=...)``."""

    __slots__ = ("tr",)

    def __init__(self, tr: Translator) -> None:
        self.tr = tr

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        options = args[2] if len(args) > 2 else kwargs.get("options")
        return _begin(self.tr, args[0], options, kwargs.get("stream"))

    # Keys are noted once the request is over: a key provider (openai
    # ``api_key=<callable>``) sets the key inside it, and nothing is converted before then.
    def returned(self, call: Call, args: tuple[Any, ...], result: Any) -> Any:
        _note_key(args[0])
        _settle(self.tr, call, result)
        return result

    def raised(self, call: Call, args: tuple[Any, ...], exc: BaseException) -> None:
        _note_key(args[0])
        call.failed(exc)


# -- raw responses: ``with_raw_response`` / ``with_streaming_response`` ------------------
_pending: weakref.WeakKeyDictionary[Any, tuple[Translator, Call, weakref.finalize[Any, Any]]]
_pending = weakref.WeakKeyDictionary()


def _await_parse(tr: Translator, call: Call, raw: Any) -> None:
    owner = next((k for k in type(raw).__mro__ if "_parse" in k.__dict__), None)
    if owner is None:
        call.cut("agentlog could not observe this response")
        return
    PATCHES.apply(owner, "_parse", _parse_hook)
    # If the caller never parses it, the body may still have been read: use that.
    fin = weakref.finalize(raw, _never_parsed, tr, call, getattr(raw, "http_response", None))
    _pending[raw] = (tr, call, fin)


def _parse_hook(original: Any) -> Any:
    @functools.wraps(original)
    def _parse(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if _pending:
            with G_FINISH:
                found = _pending.pop(self, None)
                if found is not None:
                    tr, call, fin = found
                    fin.detach()
                    _returned(tr, call, result)
        return result

    return _parse


def _never_parsed(tr: Translator, call: Call, http_response: Any) -> None:
    with G_FINISH:
        try:
            data = orjson.loads(http_response.content)
        except Exception:  # noqa: BLE001 - unread, a stream, or not JSON: nothing to add
            call.cut("the caller did not read the response")
            return
        call.done(tr.response, data)


# -- closing streams --------------------------------------------------------------------
def hook_helper_streams(module: ModuleType, names: tuple[str, ...]) -> None:
    """Helper streams (``.stream()`` managers) that close their response directly."""
    for name in names:
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            _llm.hook_close(PATCHES, cls)


def install(tr: Translator, base_client: ModuleType) -> None:
    """Patch the two ``request`` methods of a Stainless SDK's base clients."""
    _llm.install()
    hooks = Hooks(tr)
    PATCHES.apply(base_client.SyncAPIClient, "request", _llm.sync_wrapper(hooks))
    PATCHES.apply(base_client.AsyncAPIClient, "request", _llm.async_wrapper(hooks))
