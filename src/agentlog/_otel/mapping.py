"""agentlog's records as span descriptions, after the OpenTelemetry GenAI conventions.

One mapping, ``describe``, serves both exports: live export feeds it nodes built from
journal events as they come, ``agentlog export`` feeds it the nodes of a document.
A node has the document's shape (``agent_name``, ``llm``, ``error`` ...) but its times
are integer nanoseconds since the epoch: the recorded times become the span times.

- run -> ``invoke_workflow {workflow}``
- iteration -> ``iteration {n}``
- interaction -> ``invoke_agent {agent}`` (``gen_ai.agent.name``)
- LLM call (an action, or the interaction agentlog opened around a bare call) ->
  ``{operation} {model}``: ``chat gpt-4o-mini``, ``embeddings ...``
- tool action (``tool:NAME``) -> ``execute_tool NAME``; any other action keeps its name

Content (``gen_ai.input.messages`` / ``gen_ai.output.messages``, tool arguments and
results) goes out only when the caller says content capture is on, and never when the
record holds the not-captured placeholder.

No OpenTelemetry import here: the attribute values are plain str/bool/int/float or
lists of str, which is what the SDK accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

AttrValue = str | bool | int | float | list[str]
Node = dict[str, Any]

NOT_CAPTURED_PREFIX = "<content not captured"
"""The recorder's placeholder when ``AGENTLOG_CAPTURE_CONTENT=0``: never content."""

_PROVIDERS = {
    # agentlog's provider names -> gen_ai.provider.name well-known values
    "mistral": "mistral_ai",
    "x-ai": "x_ai",
    "google": "gcp.gemini",
    "google-vertex": "gcp.vertex_ai",
    "azure": "azure.ai.openai",
    "aws-bedrock": "aws.bedrock",
}
_OPERATIONS = {
    # the OpenAI Responses API is a chat in the conventions' terms
    "responses": "chat",
    "messages": "chat",
}
_PARAMS = (
    # (agentlog params key, gen_ai.request.* attribute, kind)
    ("temperature", "gen_ai.request.temperature", float),
    ("top_p", "gen_ai.request.top_p", float),
    ("top_k", "gen_ai.request.top_k", int),
    ("max_tokens", "gen_ai.request.max_tokens", int),
    ("max_completion_tokens", "gen_ai.request.max_tokens", int),
    ("max_output_tokens", "gen_ai.request.max_tokens", int),
    ("frequency_penalty", "gen_ai.request.frequency_penalty", float),
    ("presence_penalty", "gen_ai.request.presence_penalty", float),
    ("seed", "gen_ai.request.seed", int),
    ("n", "gen_ai.request.choice.count", int),
)
_USAGE = (
    ("input_tokens", "gen_ai.usage.input_tokens"),
    ("output_tokens", "gen_ai.usage.output_tokens"),
    ("cache_read_input_tokens", "gen_ai.usage.cache_read.input_tokens"),
    ("cache_write_input_tokens", "gen_ai.usage.cache_creation.input_tokens"),
    ("reasoning_output_tokens", "gen_ai.usage.reasoning.output_tokens"),
)
_FAILED = frozenset({"failed", "crashed", "terminated", "interrupted", "incomplete"})
"""Statuses that make a span's status ERROR (``error.type`` names the status)."""


@dataclass
class SpanSpec:
    """What one span says: the SDK side (``sdk.Emitter``) turns it into a span."""

    name: str
    start_ns: int
    end_ns: int | None
    client: bool = False
    """Span kind CLIENT (a call to a model service) rather than INTERNAL."""
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None


def describe(kind: str, node: Node, content: bool) -> SpanSpec:
    """The span for one ``run``, ``iteration``, ``interaction`` or ``action`` node."""
    if kind == "run":
        return _run(node)
    if kind == "iteration":
        return _iteration(node)
    if isinstance(node.get("llm"), dict):
        return _llm_call(node, content, kind)
    if kind == "interaction":
        return _interaction(node, content)
    return _action(node, content)


# -- the nodes -------------------------------------------------------------------------------
def _times(node: Node, start_key: str) -> tuple[int, int | None]:
    start = node.get(start_key)
    end = node.get("end_time")
    start_ns = start if isinstance(start, int) else 0
    return start_ns, end if isinstance(end, int) else None


def _status(spec: SpanSpec, status: Any) -> None:
    if isinstance(status, str):
        spec.attributes["agentlog.status"] = status
        if status in _FAILED and spec.error_type is None:
            spec.error_type = status


def _error(spec: SpanSpec, error: Any) -> None:
    if isinstance(error, dict):
        spec.error_type = str(error.get("type") or "Error")
        message = error.get("error")
        spec.error_message = message if isinstance(message, str) else None


def _run(node: Node) -> SpanSpec:
    start, end = _times(node, "start_time")
    name = str(node.get("workflow_name") or "workflow")
    spec = SpanSpec(f"invoke_workflow {name}", start, end)
    attrs = spec.attributes
    attrs["gen_ai.operation.name"] = "invoke_workflow"
    attrs["gen_ai.workflow.name"] = name
    for key in ("run_id", "parent_run_id", "pid", "exit_code", "agentlog_version", "python"):
        value = node.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            attrs[f"agentlog.{key}"] = value
    status = node.get("final_status")
    if isinstance(status, str):
        attrs["agentlog.final_status"] = status
        if status in _FAILED:
            spec.error_type = status
            _error(spec, node.get("error"))  # the uncaught exception that ended it
    cost = node.get("cost_usd")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        attrs["agentlog.cost_usd"] = float(cost)
    return spec


def _iteration(node: Node) -> SpanSpec:
    start, end = _times(node, "start_time")
    number = node.get("iteration_number")
    spec = SpanSpec(f"iteration {number}", start, end)
    if isinstance(number, int):
        spec.attributes["agentlog.iteration_number"] = number
    spec.attributes["agentlog.iteration.auto"] = bool(node.get("auto"))
    _status(spec, node.get("status"))
    return spec


def _interaction(node: Node, content: bool) -> SpanSpec:
    start, end = _times(node, "start_time")
    agent = str(node.get("agent_name") or "agent")
    spec = SpanSpec(f"invoke_agent {agent}", start, end)
    attrs = spec.attributes
    attrs["gen_ai.operation.name"] = "invoke_agent"
    attrs["gen_ai.agent.name"] = agent
    if isinstance(node.get("interaction_id"), int):
        attrs["agentlog.interaction_id"] = node["interaction_id"]
    _error(spec, node.get("error"))
    _status(spec, node.get("status"))
    if content:
        _content(attrs, "gen_ai.input.messages", node.get("input_data"), "user")
        _content(attrs, "gen_ai.output.messages", node.get("output_data"), "assistant")
    return spec


def _action(node: Node, content: bool) -> SpanSpec:
    start, end = _times(node, "timestamp")
    name = str(node.get("action_name") or "action")
    if name.startswith("tool:"):
        tool = name[5:] or "tool"
        spec = SpanSpec(f"execute_tool {tool}", start, end)
        attrs = spec.attributes
        attrs["gen_ai.operation.name"] = "execute_tool"
        attrs["gen_ai.tool.name"] = tool
        attrs["gen_ai.tool.type"] = "function"
        if content:
            _text(attrs, "gen_ai.tool.call.arguments", node.get("input_data"))
            _text(attrs, "gen_ai.tool.call.result", node.get("output_data"))
    else:
        spec = SpanSpec(name, start, end)
        spec.attributes["agentlog.action_name"] = name
        if content:
            _text(spec.attributes, "agentlog.input", node.get("input_data"))
            _text(spec.attributes, "agentlog.output", node.get("output_data"))
    _error(spec, node.get("error"))
    return spec


def _llm_call(node: Node, content: bool, kind: str) -> SpanSpec:
    llm: Node = node["llm"]
    start, end = _times(node, "timestamp" if kind == "action" else "start_time")
    raw_op = str(llm.get("operation") or "chat")
    operation = _OPERATIONS.get(raw_op, raw_op)
    model = llm.get("request_model") or llm.get("response_model")
    spec = SpanSpec(f"{operation} {model}" if model else operation, start, end, client=True)
    attrs = spec.attributes
    attrs["gen_ai.operation.name"] = operation
    provider = str(llm.get("provider") or "unknown")
    attrs["gen_ai.provider.name"] = _PROVIDERS.get(provider, provider)
    _put_str(attrs, "gen_ai.request.model", llm.get("request_model"))
    _put_str(attrs, "gen_ai.response.model", llm.get("response_model"))
    _put_str(attrs, "gen_ai.response.id", llm.get("response_id"))
    if llm.get("streamed") is True:
        attrs["gen_ai.request.stream"] = True
    reasons = llm.get("finish_reasons")
    if isinstance(reasons, list) and reasons:
        attrs["gen_ai.response.finish_reasons"] = [str(r) for r in reasons]
    usage = llm.get("usage")
    if isinstance(usage, dict):
        for key, attr in _USAGE:
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                attrs[attr] = value
    ttft = llm.get("ttft_ms")
    if isinstance(ttft, (int, float)) and not isinstance(ttft, bool):
        attrs["gen_ai.response.time_to_first_chunk"] = ttft / 1e3  # seconds
    cost = llm.get("cost_usd")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        attrs["agentlog.cost_usd"] = float(cost)
    _put_str(attrs, "agentlog.pricing_source", llm.get("pricing_source"))
    _server(attrs, llm.get("server_address"))
    _params(attrs, llm.get("params"))
    if llm.get("incomplete") is True:
        attrs["agentlog.incomplete"] = True
        _put_str(attrs, "agentlog.incomplete_reason", llm.get("incomplete_reason"))
    status = llm.get("http_status")
    if isinstance(status, int) and not isinstance(status, bool):
        attrs["http.response.status_code"] = status
    agent = node.get("agent_name")
    if kind == "interaction" and isinstance(agent, str) and agent != f"{provider}:{model}":
        attrs["gen_ai.agent.name"] = agent  # the innermost @agent, not a made-up name
    _error(spec, node.get("error"))
    if content:
        _content(attrs, "gen_ai.input.messages", node.get("input_data"), "user")
        if operation != "embeddings":
            first = attrs.get("gen_ai.response.finish_reasons")
            finish = first[0] if isinstance(first, list) else None
            _content(attrs, "gen_ai.output.messages", node.get("output_data"), "assistant",
                     finish)
    return spec


# -- attribute helpers -------------------------------------------------------------------
def _put_str(attrs: dict[str, AttrValue], key: str, value: Any) -> None:
    if isinstance(value, str) and value:
        attrs[key] = value


def _server(attrs: dict[str, AttrValue], address: Any) -> None:
    if not isinstance(address, str) or not address:
        return
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and host:
        attrs["server.address"] = host.strip("[]")
        attrs["server.port"] = int(port)
    else:
        attrs["server.address"] = address


def _params(attrs: dict[str, AttrValue], params: Any) -> None:
    if not isinstance(params, dict):
        return
    for key, attr, kind in _PARAMS:
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attrs[attr] = kind(value)
    stop = params.get("stop", params.get("stop_sequences"))
    if isinstance(stop, str):
        attrs["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        attrs["gen_ai.request.stop_sequences"] = list(stop)


def captured(value: Any) -> bool:
    """There is content to send: not absent, not the not-captured placeholder."""
    return value is not None and not (
        isinstance(value, str) and value.startswith(NOT_CAPTURED_PREFIX)
    )


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _text(attrs: dict[str, AttrValue], key: str, value: Any) -> None:
    if captured(value):
        attrs[key] = value if isinstance(value, str) else _json(value)


def _content(
    attrs: dict[str, AttrValue], key: str, value: Any, role: str, finish: str | None = None
) -> None:
    """``value`` (a provider's messages, one message, or any value) as the conventions'
    messages JSON: ``[{"role": ..., "parts": [{"type": "text", "content": ...}]}]``."""
    if not captured(value):
        return
    if isinstance(value, list) and value and all(
        isinstance(m, dict) and "role" in m for m in value
    ):
        messages = [_message(m, role) for m in value]
    elif isinstance(value, dict) and "role" in value:
        messages = [_message(value, role)]
    else:
        messages = [{"role": role, "parts": _parts(value)}]
    if finish is not None:
        for message in messages:
            message["finish_reason"] = finish
    attrs[key] = _json(messages)


def _message(message: Node, role: str) -> Node:
    parts = _parts(message.get("content"))
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            inner = call.get("function")
            fn: Node = inner if isinstance(inner, dict) else call
            parts.append({"type": "tool_call", "id": call.get("id"), "name": fn.get("name"),
                          "arguments": fn.get("arguments")})
    out: Node = {"role": str(message.get("role") or role), "parts": parts}
    if out["role"] == "tool" and message.get("tool_call_id") is not None:
        # a tool's answer: the conventions' tool_call_response part, linked by id
        out["parts"] = [{"type": "tool_call_response", "id": message["tool_call_id"],
                         "response": message.get("content")}]
    return out


def _parts(content: Any) -> list[Node]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):
        return [_part(block) for block in content]
    return [{"type": "text", "content": _json(content)}]


def _part(block: Any) -> Node:
    """One content block (OpenAI or Anthropic shape) as a part of the conventions."""
    if isinstance(block, str):
        return {"type": "text", "content": block}
    if not isinstance(block, dict):
        return {"type": "text", "content": _json(block)}
    kind = block.get("type")
    if kind in ("text", "input_text", "output_text") and "text" in block:
        return {"type": "text", "content": block["text"]}
    if kind == "tool_use":
        return {"type": "tool_call", "id": block.get("id"), "name": block.get("name"),
                "arguments": block.get("input")}
    if kind == "tool_result":
        return {"type": "tool_call_response", "id": block.get("tool_use_id"),
                "response": block.get("content")}
    if kind in ("thinking", "reasoning"):
        return {"type": "reasoning", "content": block.get("thinking", block.get("text"))}
    return {**block, "type": str(kind or "unknown")}
