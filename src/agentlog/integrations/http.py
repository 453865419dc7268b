"""URLs the workflow fetches: ``requests``, ``httpx``/``httpx2`` (sync and async) and
``urllib.request``.

One patch per entry point: ``requests.Session.send`` and
``urllib.request.OpenerDirector.open``, which every request of those libraries passes
through; for httpx, ``Client.request`` and ``Client.stream`` (and their async twins),
which ``httpx.get()`` and friends use. Not httpx's ``send``: the LLM SDKs call it for
their own traffic, which is recorded as an LLM call, and a wrapper there would add a
frame to every SDK traceback. A fetch counts once it has answered (any status), under the
URL asked for; the redirects and retries it makes inside stay quiet, and so does
anything inside a recorded LLM call (the SDK hook sets ``QUIET``). Secrets in the query
string and userinfo are scrubbed when the entry is written.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .. import api
from .._guard import Guard
from .._patching import Patches
from . import _resources
from ._resources import QUIET, quiet

PATCHES = Patches()
G_HTTP = Guard("resources.http")


def _length(headers: Any) -> int | None:
    try:
        value = headers.get("content-length")
        return int(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def _size(response: Any, streamed: bool) -> int | None:
    """The body's size: its length when it was read, else what the server announced."""
    if not streamed:
        content = getattr(response, "_content", None)  # requests and httpx keep it here
        if isinstance(content, bytes):
            return len(content)
    return _length(getattr(response, "headers", None))


def _requests_url(request: Any) -> str:
    return str(request.url)


def _urllib_url(fullurl: Any) -> str:
    return str(getattr(fullurl, "full_url", fullurl))


def _quiet_now() -> bool:
    return QUIET.get() or api.RECORDER.verbosity == 0 or G_HTTP.broken


def _fetched(loader: str, url: str, response: Any, streamed: bool) -> None:
    with G_HTTP:
        _resources.note(url, "url", loader, _size(response, streamed))


def _sync(loader: str, url_of: Callable[[Any], str], stream_kw: str | None
          ) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        @functools.wraps(original)
        def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            if _quiet_now():
                return original(self, request, *args, **kwargs)
            with quiet():  # its redirects, retries and any file it opens
                response = original(self, request, *args, **kwargs)
            streamed = stream_kw is None or bool(kwargs.get(stream_kw))
            _fetched(loader, url_of(request), response, streamed)
            return response

        return send

    return make


def _asked(response: Any) -> str:
    """The URL asked for: the first request of a redirect chain."""
    history = getattr(response, "history", None)
    first = history[0] if history else response
    return str(first.request.url)


def _httpx_request(loader: str) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def arequest(self: Any, *args: Any, **kwargs: Any) -> Any:
                if _quiet_now():
                    return await original(self, *args, **kwargs)
                with quiet():  # set and reset in this one coroutine frame
                    response = await original(self, *args, **kwargs)
                _fetched(loader, _asked(response), response, False)
                return response

            return arequest

        @functools.wraps(original)
        def request(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _quiet_now():
                return original(self, *args, **kwargs)
            with quiet():
                response = original(self, *args, **kwargs)
            _fetched(loader, _asked(response), response, False)
            return response

        return request

    return make


def _httpx_stream(loader: str) -> Callable[[Any], Any]:
    """``stream()`` is a context manager: count the response once it is entered."""

    def make(original: Any) -> Any:
        if inspect.isasyncgenfunction(getattr(original, "__wrapped__", None)):

            @functools.wraps(original)
            async def astream(self: Any, *args: Any, **kwargs: Any) -> Any:
                async with original(self, *args, **kwargs) as response:
                    if not _quiet_now():
                        _fetched(loader, _asked(response), response, True)
                    yield response

            return contextlib.asynccontextmanager(astream)

        @functools.wraps(original)
        def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
            with original(self, *args, **kwargs) as response:
                if not _quiet_now():
                    _fetched(loader, _asked(response), response, True)
                yield response

        return contextlib.contextmanager(stream)

    return make


def install(module: ModuleType) -> None:
    """Patch the one method each HTTP library sends every request through."""
    _resources.install()
    name = module.__name__
    if name == "requests":
        PATCHES.apply(module.Session, "send", _sync("requests", _requests_url, "stream"))
    elif name == "urllib.request":
        PATCHES.apply(module.OpenerDirector, "open", _sync("urllib", _urllib_url, None))
    else:  # httpx, and httpx2 (which also answers to ``import httpx`` once aliased)
        for cls in (module.Client, module.AsyncClient):
            PATCHES.apply(cls, "request", _httpx_request(name))
            PATCHES.apply(cls, "stream", _httpx_stream(name))


def uninstall() -> None:
    PATCHES.remove()
