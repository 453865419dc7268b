"""Property-based: any nested hostile value is recorded as valid JSON, and every lossy
conversion says so (TESTPLAN C1-C4, A12 for values).

One Hypothesis strategy builds nested mixes of hostile values: lone surrogates in values
and in keys, ``\\x00``, U+2028, ints beyond 64 bits, NaN and infinities, ``Decimal``,
sets, tuple / int / None / enum / bool / float / frozenset keys, keys that collide once
converted (``1`` and ``"1"``), cycles, nesting 300 deep, bytes / bytearray / memoryview,
numpy arrays and scalars, pandas frames, PIL images, pydantic v1 and v2 models,
dataclasses, ``wrapt.ObjectProxy`` values, datetimes, objects whose ``repr`` raises or
sleeps, and a property and ``__getattr__`` that must never run. Each example goes through
the public API (``agentlog.log_interaction`` inside ``agentlog.testing.capture()``, folded
into a document and checked against the schema) and through ``to_jsonable`` directly.

The oracle is a small reference converter: it either says exactly what the recorded value
must be, or that the value cannot be kept as it is (then a ``lossy`` note must be there),
or that it cannot tell (sets whose order is not defined, a time budget overrun).

Covers C1: surrogates in values and keys -> U+FFFD + note; \x00, U+2028 kept; UTF-8 JSON.
Covers C2: big ints, NaN, Decimal, sets, odd/colliding keys, bytes, numpy, pydantic...: noted.
Covers C3: generated cycles and 300-deep nesting end as "<cyclic>"/"<max depth>", noted.
Covers C4: strings past the field cap are truncated and noted (caps, siblings: test_serialize).
Covers A12: raising/sleeping reprs never break log_interaction; repr runs once; 1 s repr cut.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import threading
import time
import uuid
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import orjson
import pandas as pd
import PIL.Image
import pydantic
import pydantic.v1
import pytest
import wrapt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentlog
from agentlog import api
from agentlog._redact import REDACTED, is_secret_key, scrub
from agentlog._serialize import TIME_EXCEEDED, Limits, to_jsonable
from agentlog.testing import capture
from helpers import validate_document

MAX_EXAMPLES = 300


# -- hostile values ----------------------------------------------------------------------
class Color(enum.Enum):
    RED = 1
    BLUE = "blue"


class BadRepr:
    """No attributes, and a repr that raises: only a placeholder can stand in."""

    __slots__ = ()

    def __repr__(self) -> str:
        raise KeyError("hostile repr")


class SlowRepr:
    """No attributes; its repr sleeps a little and counts how often it ran."""

    __slots__ = ("calls", "tag")

    def __init__(self, tag: int) -> None:
        self.tag = tag
        self.calls = 0

    def __repr__(self) -> str:
        self.calls += 1
        time.sleep(0.0002)
        return f"<SlowRepr {self.tag}>"


class Spy:
    """Public attributes, plus a property and ``__getattr__`` that must never run."""

    def __init__(self, name: str, n: int) -> None:
        self.name = name
        self.n = n
        self._private = "kept out"

    @property
    def effect(self) -> int:
        raise AssertionError("a property was read")

    def __getattr__(self, item: str) -> Any:
        raise AssertionError(f"__getattr__({item!r}) was called")


class Secret(str):
    """A user's Secret(str) subclass: redacted whatever its text."""


@dataclasses.dataclass
class Point:
    x: int
    label: str
    hidden: str = dataclasses.field(default="HIDDEN-FIELD", repr=False)


class V2(pydantic.BaseModel):
    a: int
    b: str
    key: pydantic.SecretStr = pydantic.SecretStr("pydantic-secret-value")


class V1(pydantic.v1.BaseModel):
    a: int
    b: str


surrogate = st.characters(codec=None, categories=["Cs"])
odd_chars = st.sampled_from(["\x00", "\u2028", "\u2029", "\ufffd", "\U0001f600", "é"])
texts = st.text(st.characters() | surrogate | odd_chars, max_size=40) | st.sampled_from(
    ["", "1", "None", "\ud800", "\udfff", "a\ud83d\ude00b", "x\x00y\u2028z",
     "sk-CANARY-0a1b2c3d4e5f6a7b8c9d0e1f", "api_key"]
)
keys = (
    texts
    | st.integers(-3, 3)
    | st.integers(min_value=2**64, max_value=2**70)
    | st.none()
    | st.booleans()
    | st.floats()
    | st.sampled_from([Color.RED, Color.BLUE])
    | st.tuples(st.integers(0, 2), st.text(max_size=2))
    | st.frozensets(st.integers(0, 3), max_size=2)
    | st.sampled_from(["api_key", "Authorization", "max_tokens", "token", "1"])
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**64, 2**64 - 1, -(2**63), -(2**63) - 1]),
    st.builds(pow, st.just(10), st.just(5000)),  # past str()'s digit limit
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    texts,
    st.text(max_size=3).map(lambda s: "w" * 2_100 + s),  # past the per-string cap
    st.decimals(allow_nan=True, allow_infinity=True),
    st.binary(max_size=40),
    st.binary(max_size=40).map(bytearray),
    st.binary(max_size=40).map(memoryview),
    st.sets(st.integers(-5, 5) | st.text(max_size=3), max_size=5),
    st.frozensets(st.integers(-5, 5), max_size=4),
    st.builds(BadRepr),
    st.integers(0, 99).map(SlowRepr),
    st.builds(Spy, st.text(max_size=5), st.integers(-5, 5)),
    st.builds(Secret, st.text(max_size=8)),
    st.builds(pydantic.SecretStr, st.text(max_size=8)),
    st.builds(Point, st.integers(-5, 5), texts),
    st.builds(V2, a=st.integers(-5, 5), b=st.text(max_size=5)),
    st.builds(V1, a=st.integers(-5, 5), b=st.text(max_size=5)),
    st.sampled_from([Color.RED, Color.BLUE]),
    st.integers(-(2**31), 2**31).map(np.int64),
    st.floats(width=32).map(np.float32),
    st.floats().map(np.float64),
    st.booleans().map(np.bool_),
    st.integers(0, 12).map(np.arange),
    st.integers(51, 80).map(np.zeros),  # past max_items: summarised
    st.just(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})),
    st.just(PIL.Image.new("RGB", (2, 3))),
    st.datetimes(),
    st.datetimes(timezones=st.just(dt.timezone.utc)),
    st.uuids(),
    st.text(max_size=5).map(lambda s: PurePosixPath("/tmp", s)),
    st.integers(-3, 3).map(wrapt.ObjectProxy),
    st.builds(ValueError, st.text(max_size=10)),
)


# Values that can be kept as they are (with JSON's own types): the exact half of the oracle.
plain_text = st.text(st.characters(exclude_categories=["Cs"]) | odd_chars, max_size=40)
kept = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False), plain_text,
        st.decimals(allow_nan=False, allow_infinity=False), st.uuids(),
        st.integers(0, 99).map(SlowRepr),
        st.builds(Spy, plain_text, st.integers(-5, 5)),
        st.builds(Point, st.integers(-5, 5), plain_text),
        st.builds(V2, a=st.integers(-5, 5), b=st.text(max_size=5)),
        st.builds(Secret, st.text(max_size=8)),
        st.sampled_from([Color.RED, Color.BLUE]),
        st.integers(-(2**31), 2**31).map(np.int64), st.integers(0, 12).map(np.arange),
        st.sets(st.integers(-5, 5) | st.text(max_size=3), max_size=5),
        st.integers(-3, 3).map(wrapt.ObjectProxy),
    ),
    lambda c: st.lists(c, max_size=6) | st.dictionaries(plain_text, c, max_size=6),
    max_leaves=25,
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(children, max_size=6)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(keys, children, max_size=6)
    )


def _deep(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth):
        child: list[Any] = []
        node.append(child)
        node = child
    node.append("bottom")
    return root


@st.composite
def hostile(draw: st.DrawFn) -> list[Any]:
    """A nested value; then maybe cycles between its containers, colliding keys, depth 300."""
    root: list[Any] = draw(st.lists(st.recursive(leaves, _containers, max_leaves=25),
                                    max_size=4))
    found: list[Any] = []
    stack: list[Any] = [root]
    while stack:
        x = stack.pop()
        if type(x) in (list, dict):
            found.append(x)
            stack.extend(x.values() if type(x) is dict else x)
    for _ in range(draw(st.integers(0, 2))):
        a, b = draw(st.sampled_from(found)), draw(st.sampled_from(found))
        if type(a) is list:
            a.append(b)
        else:
            a[draw(texts)] = b
    if draw(st.booleans()):
        root.append({1: "int one", "1": "str one", 1.5: "float", "1.5": "str float"})
    if draw(st.integers(0, 4)) == 0:
        root.append(_deep(300))
    return root


# -- the reference converter --------------------------------------------------------------
class Lossy(Exception):
    """The value cannot be recorded as it is: a note must say so."""


class Unknown(Exception):
    """The reference cannot predict the exact output (but nothing is known to be lost)."""


_ORDERABLE = (str, int)


def reference(v: Any, lim: Limits, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """What ``to_jsonable`` must return when nothing is lost; raise Lossy / Unknown."""
    t = type(v)
    if t is str or t is np.str_:
        if len(v) > lim.max_str or any(0xD800 <= ord(c) <= 0xDFFF for c in v):
            raise Lossy
        return scrub(str(v))
    if t in (Secret, pydantic.SecretStr):
        return REDACTED
    if v is None or t is bool:
        return v
    if t is np.bool_:
        return bool(v)
    if t in (int, np.int64):
        if not -(2**63) <= int(v) < 2**64:
            raise Lossy
        return int(v)
    if t in (float, np.float32, np.float64):
        if not math.isfinite(v):
            raise Lossy
        return float(v)
    if t is Color:
        return reference(v.value, lim, depth, seen)
    if t is decimal.Decimal or t is uuid.UUID or isinstance(v, PurePosixPath):
        return reference(str(v), lim, depth, seen)
    if t is dt.datetime:
        if v.tzinfo is None:
            raise Lossy  # "naive datetime"
        return reference(v.isoformat(), lim, depth, seen)  # the string cap applies too
    if isinstance(v, wrapt.ObjectProxy):
        return reference(v.__wrapped__, lim, depth, seen)
    if t is ValueError:
        return scrub(f"ValueError: {v}")
    if t is SlowRepr:
        return reference(f"<SlowRepr {v.tag}>", lim, depth, seen)  # repr() would count
    if t is Spy:
        return reference({"_type": f"{__name__}.Spy", "name": v.name, "n": v.n}, lim, depth, seen)
    if t is Point:
        return reference({"x": v.x, "label": v.label}, lim, depth, seen)
    if t is V2:
        return reference(v.model_dump(mode="json"), lim, depth, seen)
    if t is V1:
        return reference(v.dict(), lim, depth, seen)
    if t is np.ndarray:
        if v.size > lim.max_items:
            raise Lossy  # "ndarray summarised"
        return reference(v.tolist(), lim, depth, seen)
    if t in (bytes, bytearray, memoryview, BadRepr, pd.DataFrame, PIL.Image.Image):
        raise Lossy  # summarised, or a placeholder
    if t in (set, frozenset, list, tuple, dict):
        if id(v) in seen or depth >= lim.max_depth or len(v) > lim.max_items:
            raise Lossy  # "<cyclic>", "<max depth>", or cut
        seen = seen | {id(v)}
        if t is dict:
            return _reference_dict(v, lim, depth, seen)
        items = list(v)
        if t in (set, frozenset):
            if not all(type(x) in _ORDERABLE for x in items):
                _children(items, lim, depth, seen)
                raise Unknown  # the walker keeps set order: not predictable here
            items = sorted(items, key=lambda x: (type(x).__name__, x))
        return _children(items, lim, depth, seen)
    raise AssertionError(f"the reference does not know {t}")


def _children(items: list[Any], lim: Limits, depth: int, seen: frozenset[int]) -> list[Any]:
    out, unknown = [], False
    for x in items:
        try:
            out.append(reference(x, lim, depth + 1, seen))
        except Unknown:
            unknown = True  # keep looking: a Lossy sibling decides
    if unknown:
        raise Unknown
    return out


def _reference_dict(v: dict[Any, Any], lim: Limits, depth: int, seen: frozenset[int]) -> Any:
    out: dict[str, Any] = {}
    unknown = lossy = False
    for k, x in v.items():
        if type(k) is not str:
            lossy = True  # "<type> key converted to str"
            continue
        try:
            name = reference(k, lim)
        except Lossy:
            lossy = True
            continue
        if name in out:
            lossy = True  # two keys scrub to the same text: renamed
        empty = x is None or type(x) is bool or (type(x) is str and x == "")
        if is_secret_key(name) and not empty:
            out[name] = REDACTED
            continue
        try:
            out[name] = reference(x, lim, depth + 1, seen)
        except Lossy:
            lossy = True
        except Unknown:
            unknown = True
    if lossy:
        raise Lossy
    if unknown:
        raise Unknown
    return out


def _expect(value: Any, lim: Limits) -> tuple[str, Any]:
    try:
        return "exact", reference(value, lim)
    except Lossy:
        return "lossy", None
    except Unknown:
        return "unknown", None


def _slow_reprs(value: Any) -> list[SlowRepr]:
    found, stack, seen = [], [value], set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if type(x) is SlowRepr:
            found.append(x)
        elif type(x) in (list, tuple):
            stack.extend(x)
        elif type(x) is dict:
            stack.extend(x.values())
    return found


def _assert_utf8_json(value: object) -> bytes:
    raw = orjson.dumps(value)
    assert json.loads(raw.decode("utf-8")) == orjson.loads(raw)
    return raw


def _check(out: Any, notes: list[str], expected: tuple[str, Any], where: str) -> None:
    kind, exact = expected
    timed_out = any("time budget" in n for n in notes) or TIME_EXCEEDED in json.dumps(out)
    if kind == "lossy":
        assert any(n.startswith(where) for n in notes), f"a lossy conversion left no note: {out!r}"
    elif kind == "exact" and not timed_out:
        assert not [n for n in notes if n.startswith(where)], notes
        assert out == exact


# -- the properties ------------------------------------------------------------------------
def test_log_interaction_records_any_hostile_value_as_valid_noted_json() -> None:
    """Through the public API: log_interaction never raises, the event and the document
    are valid UTF-8 JSON that passes the schema, and every lossy conversion is noted."""
    rec = api.RECORDER
    assert rec.verbosity in (1, 2), "the suite runs at the default verbosity"
    lim = rec.limits
    examples = [0]
    lossy_seen = [0]
    exact_seen = [0]

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(hostile(), hostile() | kept, texts)
    def prop(input_data: Any, output_data: Any, agent: str) -> None:
        examples[0] += 1
        expected_in, expected_out = _expect(input_data, lim), _expect(output_data, lim)
        marker = f"prop-{examples[0]}-{threading.get_ident()}"
        with capture() as logs:
            agentlog.log_interaction(marker + agent, input_data, output_data)
        (event,) = [e for e in logs if str(e.get("agent", "")).startswith(marker)]
        raw = _assert_utf8_json(event)
        assert b"sk-CANARY" not in raw and b"pydantic-secret-value" not in raw
        assert b"HIDDEN-FIELD" not in raw
        notes = event.get("lossy", [])
        _check(event["input"], notes, expected_in, "$.input_data")
        _check(event["output"], notes, expected_out, "$.output_data")
        lossy_seen[0] += "lossy" in (expected_in[0], expected_out[0])
        exact_seen[0] += "exact" in (expected_in[0], expected_out[0])
        for obj in _slow_reprs(input_data) + _slow_reprs(output_data):
            assert obj.calls <= 1, "a user repr ran twice for one value"
            obj.calls = 0
        doc = validate_document(logs.document())
        _assert_utf8_json(doc)

    prop()
    print(f"\nhypothesis examples through log_interaction: {examples[0]} "
          f"({lossy_seen[0]} with a lossy part, {exact_seen[0]} with an exact one)")
    assert examples[0] >= MAX_EXAMPLES // 2
    assert lossy_seen[0] > 0 and exact_seen[0] > 0


def test_to_jsonable_converts_any_hostile_value_to_valid_noted_json() -> None:
    """The serializer directly, with small caps so truncation, depth and item caps are
    hit often: never raises, JSON-native output, every lossy step noted, repr once."""
    lim = Limits(max_str=30, max_items=5, max_depth=6, max_total=400, time_budget_s=5.0)
    examples = [0]

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(hostile() | kept)
    def prop(value: Any) -> None:
        examples[0] += 1
        expected = _expect(value, lim)
        notes: list[str] = []
        out = to_jsonable(value, lim, notes, "$")
        _assert_utf8_json([out, notes])
        if expected[0] == "exact" and sum(len(s) for s in _strings(out)) > lim.max_total:
            expected = ("unknown", None)  # the shared field budget may have cut a string
        _check(out, notes, expected, "$")
        for obj in _slow_reprs(value):
            assert obj.calls <= 1
            obj.calls = 0

    prop()
    print(f"\nhypothesis examples through to_jsonable: {examples[0]}")
    assert examples[0] >= MAX_EXAMPLES // 2


def _strings(v: Any) -> list[str]:
    found, stack = [], [v]
    while stack:
        x = stack.pop()
        if type(x) is str:
            found.append(x)
        elif type(x) is list:
            stack.extend(x)
        elif type(x) is dict:
            stack.extend(x.values())
            found.extend(x)
    return found


class OneSecondRepr:
    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0

    def __repr__(self) -> str:
        self.calls += 1
        time.sleep(1.0)
        return "<slow>"


def test_a_one_second_repr_is_cut_by_the_time_budget() -> None:
    """Ten objects whose repr takes 1 s each: log_interaction returns after about one of
    them (the budget is checked after each user call), notes the overrun, and the
    document is still valid."""
    slow = [OneSecondRepr() for _ in range(10)]
    t0 = time.perf_counter()
    with capture() as logs:
        agentlog.log_interaction("slow-repr", {"objects": slow, "q": "VISIBLE"}, "done")
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.5, f"serialization took {elapsed:.1f} s"
    assert sum(o.calls for o in slow) == 1
    (event,) = [e for e in logs if e.get("agent") == "slow-repr"]
    assert event["input"]["q"] == "VISIBLE" and event["output"] == "done"
    assert any("time budget exceeded" in n for n in event["lossy"])
    assert TIME_EXCEEDED in json.dumps(event["input"])
    validate_document(logs.document())


@pytest.mark.parametrize("budget", [0.05, 0.25])
def test_time_budget_holds_for_many_slightly_slow_reprs(budget: float) -> None:
    """2,000 reprs of 2 ms each would take 4 s: the conversion stops near its budget."""

    calls = [0]

    class Slow:
        __slots__ = ()

        def __repr__(self) -> str:
            calls[0] += 1
            time.sleep(0.002)
            return "<slow>"

    lim = Limits(max_str=100, max_items=5_000, max_depth=8, max_total=10**6,
                 time_budget_s=budget)
    notes: list[str] = []
    out = to_jsonable([Slow() for _ in range(2_000)], lim, notes)
    # Counted, not timed (the machine is shared): each repr sleeps at least 2 ms, so no
    # more than the budget's worth of them may run, plus the one that crossed it.
    assert calls[0] <= budget / 0.002 + 1, calls[0]
    assert TIME_EXCEEDED in out
    assert any("time budget exceeded" in n for n in notes)
