"""google-genai adapter: translation only (lifecycle in ``_llm``).

Patches the per-request methods of ``Models`` and ``AsyncModels``: ``_generate_content``,
``_generate_content_stream`` and ``_embed_content``. Every public form goes through them
(``generate_content``, ``generate_content_stream``, the ``client.aio`` twins, chats'
``send_message``/``send_message_stream``, automatic function calling, continuation), one
HTTP request each: so each request is one record, a chat turn is never counted twice, and
the user's tools that automatic function calling runs between requests are not inside a
recorded call. An SDK without those methods gets its public ones patched instead.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._patching import Patches
from . import _llm
from ._llm import Outcome, Request, count, get

PATCHES = Patches()

# Not request parameters: content (system_instruction), or things that may hold secrets
# (http_options carries headers) or opaque bytes (continuation_token).
_SKIP = frozenset({"system_instruction", "http_options", "continuation_token"})

def _server(client: Any) -> tuple[str, str | None]:
    """(provider, server address) of an API client: Vertex AI or the Gemini API."""
    provider = "google-vertex" if getattr(client, "vertexai", False) else "google"
    base = getattr(getattr(client, "_http_options", None), "base_url", None)
    if not isinstance(base, str):
        return provider, None
    return provider, _llm.address(base)[1] or None


def _model(name: Any) -> str | None:
    """``models/gemini-2.5-flash`` or a Vertex resource name -> ``gemini-2.5-flash``, the
    name prices are known by."""
    if not isinstance(name, str):
        return None
    if name.startswith("models/"):
        return name[7:]
    _, found, tail = name.rpartition("/models/")
    return tail if found else name


def _tools(tools: Any) -> list[dict[str, Any]]:
    """One entry per function offered (what ``params`` shows as tool names), built-in
    tools (search, code execution) by their kind."""
    out: list[dict[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        if callable(tool) and not hasattr(tool, "model_fields"):
            out.append({"name": getattr(tool, "__name__", None)})
            continue
        declarations = get(tool, "function_declarations")
        if declarations:
            for fd in declarations:
                out.append({"name": get(fd, "name"), "description": get(fd, "description"),
                            "parameters": get(fd, "parameters")})
            continue
        fields = tool.items() if isinstance(tool, dict) else (
            (k, getattr(tool, k, None)) for k in getattr(tool, "model_fields_set", ()))
        out.extend({"type": k} for k, v in fields if v is not None)
    return out


def _params(config: Any) -> dict[str, Any]:
    """The config fields the caller set (a fresh dict: later changes do not reach it)."""
    if config is None:
        return {}
    if isinstance(config, dict):
        data = {k: v for k, v in config.items() if v is not None}
    else:
        data = {k: v for k in getattr(config, "model_fields_set", ())
                if (v := getattr(config, k, None)) is not None}
    if data.get("tools"):
        data["tools"] = _tools(data["tools"])
    return data


class GoogleTranslator:
    """One per patched method: the method says the operation and whether it streams."""

    name = "google-genai"

    def __init__(self, operation: str, streamed: bool) -> None:
        self.operation = operation
        self.streamed = streamed

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request | None:
        client = getattr(args[0], "_api_client", None) if args else None
        _llm.note_keys(getattr(client, "api_key", None))
        provider, address = _server(client)
        config = kwargs.get("config")
        if self.operation == "embeddings":
            content = kwargs.get("contents") or kwargs.get("content") or kwargs.get(
                "batch_contents")
        else:
            content = kwargs.get("contents")
            # The SDK's automatic function calling appends to this list between requests.
            if isinstance(content, list):
                content = list(content)
            system = get(config, "system_instruction")
            if system is not None:
                content = [{"role": "system", "content": system},
                           *(content if isinstance(content, list) else [content])]
        return Request(provider, self.operation, _model(kwargs.get("model")), content,
                       _params(config), _SKIP, self.streamed, address)

    def response(self, req: Request, obj: Any) -> Outcome:
        if req.operation == "embeddings":
            return _embeddings(obj)
        acc = _Fold()
        acc.add(obj)
        return acc.outcome()

    def accumulator(self, req: Request) -> Any:
        return _Fold()


def usage(u: Any) -> dict[str, Any] | None:
    """``usage_metadata``: the prompt count already includes cached tokens; thoughts are
    billed as output, and counted in it here as OpenAI counts reasoning."""
    if u is None:
        return None
    prompt = count(get(u, "prompt_token_count"))
    tool_prompt = count(get(u, "tool_use_prompt_token_count"))
    candidates = count(get(u, "candidates_token_count"))
    thoughts = count(get(u, "thoughts_token_count"))
    return _llm.usage(
        None if prompt is None else prompt + (tool_prompt or 0),
        None if candidates is None and thoughts is None
        else (candidates or 0) + (thoughts or 0),
        cache_read=count(get(u, "cached_content_token_count")), reasoning=thoughts)


def _reason(value: Any) -> str:
    return str(getattr(value, "value", value))


class _Fold:
    """Candidates' parts folded per candidate index: a whole response is one item, a
    stream's chunks are many (text comes in pieces, function calls whole)."""

    __slots__ = ("cands", "id", "model", "reasons", "usage")

    def __init__(self) -> None:
        self.cands: dict[int, tuple[list[str], list[str], list[dict[str, Any]]]] = {}
        self.reasons: dict[int, str] = {}
        self.model: Any = None
        self.id: Any = None
        self.usage: Any = None

    def add(self, chunk: Any) -> None:
        # getattr with defaults: a field the SDK left unset must not stop the fold.
        if self.model is None:
            self.model = getattr(chunk, "model_version", None)
            self.id = getattr(chunk, "response_id", None)
        for cand in getattr(chunk, "candidates", None) or ():
            index = getattr(cand, "index", None) or 0
            fold = self.cands.get(index)
            if fold is None:
                fold = self.cands[index] = ([], [], [])
            for part in getattr(getattr(cand, "content", None), "parts", None) or ():
                text = getattr(part, "text", None)
                if text:
                    fold[1 if getattr(part, "thought", None) else 0].append(text)
                fc = getattr(part, "function_call", None)
                if fc is not None:
                    args = getattr(fc, "args", None)
                    fold[2].append({"id": getattr(fc, "id", None),
                                    "name": getattr(fc, "name", None),
                                    "arguments": _llm.json_text(args)})
            reason = getattr(cand, "finish_reason", None)
            if reason is not None:
                self.reasons[index] = _reason(reason)
        found = getattr(chunk, "usage_metadata", None)
        if found is not None:  # a stream's last chunk has the final counts
            self.usage = found

    def outcome(self) -> Outcome:
        outputs = []
        for index in sorted(self.cands):
            texts, thoughts, fcs = self.cands[index]
            msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
            if thoughts:
                msg["thinking"] = "".join(thoughts)
            if fcs:
                msg["tool_calls"] = fcs
            outputs.append(msg)
        return {"response_model": self.model, "response_id": self.id,
                "finish_reasons": [self.reasons[i] for i in sorted(self.reasons)],
                "usage": usage(self.usage), **_llm.messages_output(outputs)}


def _embeddings(obj: Any) -> Outcome:
    items = get(obj, "embeddings") or []
    out: Outcome = {"output": _llm.embeddings_output(items, "values")}
    u = get(obj, "usage_metadata")
    tokens = count(get(u, "prompt_token_count")) if u is not None else None
    if tokens is None:  # Vertex AI counts per embedding
        counts = [get(get(e, "statistics"), "token_count") for e in items]
        if counts and all(isinstance(c, (int, float)) for c in counts):
            tokens = int(sum(counts))
    if tokens is None:
        out["usage"] = None
        out["usage_missing_reason"] = "the provider reported no token usage for embeddings"
    else:
        out["usage"] = _llm.usage(tokens, 0)
    return out


# (private per-request method, public fallback, operation, streamed)
_METHODS = (
    ("_generate_content", "generate_content", "generate_content", False),
    ("_generate_content_stream", "generate_content_stream", "generate_content", True),
    ("_embed_content", "embed_content", "embeddings", False),
)


def install(module: ModuleType) -> None:
    """Called once ``google.genai`` is imported."""
    from google.genai import models

    _llm.install()
    for cls in (models.Models, models.AsyncModels):
        for private, public, operation, streamed in _METHODS:
            name = private if private in cls.__dict__ else public
            _llm.patch(PATCHES, cls, name, GoogleTranslator(operation, streamed))


def uninstall() -> None:
    PATCHES.remove()
