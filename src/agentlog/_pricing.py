"""Cost from token usage, by ``genai-prices`` (offline data, no network).

Priced when a document is folded, not on the hot path: a price lookup costs far more
than recording the call, and the journal keeps the usage it needs. ``genai_prices`` is
imported on the first document that has usage, never at ``import agentlog``.
"""

from __future__ import annotations

import datetime
from typing import Any

_PROVIDER_IDS = {"aws-bedrock": "aws", "google-vertex": "google"}
_MAX_MEMO = 4096

_module: Any = None
_failure: str | None = None
_prices: dict[tuple[str | None, str, datetime.date], Any] = {}
_costs: dict[tuple[int, tuple[int, ...]], float] = {}


def _load() -> Any:
    global _module, _failure
    if _module is None and _failure is None:
        try:
            import genai_prices
            from genai_prices import data_snapshot

            data_snapshot.get_snapshot()  # the bundled data; nothing is fetched
            _module = genai_prices
        except Exception as exc:  # noqa: BLE001 - absent (Python 3.10) or broken: no cost
            _failure = f"genai-prices unavailable ({type(exc).__name__})"
    return _module


def _model_price(provider: str | None, model: str, when: datetime.datetime) -> Any:
    """The price entry for a model, or the reason there is none (a str)."""
    key = (provider, model, when.date())
    found = _prices.get(key)
    if found is None:
        from genai_prices import data_snapshot

        try:
            _, entry = data_snapshot.get_snapshot().find_provider_model(model, None, provider,
                                                                        None)
            found = entry.get_prices(when)
        except LookupError:
            found = f"no price known for model {model!r}"
        if len(_prices) > _MAX_MEMO:
            _prices.clear()
            _costs.clear()  # keyed by id(): ids of dropped entries may come back
        _prices[key] = found
    return found


def apply(llm: dict[str, Any], t_ns: int) -> None:
    """Set ``cost_usd`` and ``pricing_source`` (or ``cost_missing_reason``) in place."""
    if "cost_usd" in llm:
        return
    usage = llm.get("usage")
    model = llm.get("response_model") or llm.get("request_model")
    reason = None
    if not isinstance(usage, dict):
        reason = "no usage to price"
    elif not isinstance(model, str):
        reason = "no model to price"
    elif _load() is None:
        reason = _failure
    if reason is not None:
        llm["cost_usd"] = None
        llm["cost_missing_reason"] = reason
        return
    assert isinstance(usage, dict) and isinstance(model, str)
    provider = llm.get("provider")
    provider_id = _PROVIDER_IDS.get(str(provider), provider)
    when = datetime.datetime.fromtimestamp(t_ns / 1e9, datetime.timezone.utc)
    price = _model_price(provider_id, model, when)
    source = f"genai-prices {_module.__version__}"
    if isinstance(price, str) and provider_id is not None:
        # A provider it does not list (a proxy, a local server): the model may say it.
        price = _model_price(None, model, when)
        source += " (matched by model name)"
    if isinstance(price, str):
        llm["cost_usd"] = None
        llm["cost_missing_reason"] = price
        return
    counts = tuple(
        usage.get(k) or 0
        for k in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                  "cache_write_input_tokens")
    )
    memo = (id(price), counts)
    cost = _costs.get(memo)
    if cost is None:
        tokens = _module.Usage(input_tokens=counts[0], output_tokens=counts[1],
                               cache_read_tokens=counts[2], cache_write_tokens=counts[3])
        cost = float(price.calc_price(tokens)["total_price"])
        if len(_costs) > _MAX_MEMO:
            _costs.clear()
        _costs[memo] = cost
    llm["cost_usd"] = round(cost, 10)
    llm["pricing_source"] = source
