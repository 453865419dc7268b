"""Safe conversion of any value to JSON (TESTPLAN C1-C4, A12, and D1 for values).

Covers C1: lone surrogates in values and keys -> U+FFFD with a note; NUL and U+2028 kept.
Covers C2: big ints, NaN/Inf, Decimal, sets, odd and colliding keys, bytes, numpy, pandas,
    dataclasses, pydantic v1/v2, ObjectProxy, datetimes: valid JSON, lossy steps noted.
Covers C3: cycles give "<cyclic>"; depth 300 and a 400-object chain give "<max depth>"; a nearly
    full stack never raises.
Covers C4: a 200 MB string (length + sha256, bounded memory), 10k messages, a huge field next
    to whole siblings, and the field budget.
Covers A12: raising, slow and 100 MB reprs, unread properties, a failing model_dump: a
    placeholder, each user callable run once, the time budget kept.
Covers D1: canaries in kwargs, headers, URLs, prompts, errors, Secret(str) and SecretStr values
    are gone after conversion.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import datetime as dt
import decimal
import enum
import gc
import hashlib
import json
import math
import sys
import time
import timeit
import traceback
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import orjson
import pydantic
import pydantic.v1
import pytest
import wrapt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog import _redact
from agentlog._redact import REDACTED, is_secret_key, scrub
from agentlog._serialize import DEFAULT_LIMITS, Limits, _Walker, dumps, to_jsonable

LIMITS = Limits(max_str=2_000, max_items=50, max_depth=16, max_total=20_000, time_budget_s=1.0)


def convert(value: object, limits: Limits = LIMITS) -> tuple[Any, list[str]]:
    """Convert, and check the result is JSON-native and survives orjson and json."""
    notes: list[str] = []
    out = to_jsonable(value, limits, notes)
    assert_native(out)
    raw = orjson.dumps(out)
    assert json.loads(raw.decode("utf-8")) == orjson.loads(raw)
    for n in notes:
        n.encode("utf-8")  # notes are written to the document too
    return out, notes


def assert_native(v: object) -> None:
    """Only dict[str, ...], list, valid str, bool, None, 64-bit int, finite float."""
    stack = [v]
    while stack:
        x = stack.pop()
        t = type(x)
        if t is dict:
            for k, y in x.items():  # type: ignore[attr-defined]
                assert type(k) is str
                k.encode("utf-8")
                stack.append(y)
        elif t is list:
            stack.extend(x)  # type: ignore[arg-type]
        elif t is str:
            x.encode("utf-8")  # type: ignore[attr-defined]
        elif t is int:
            assert -(2**63) <= x < 2**64  # type: ignore[operator]
        elif t is float:
            assert math.isfinite(x)  # type: ignore[arg-type]
        else:
            assert x is None or t is bool, f"not JSON-native: {t}"


def has_note(notes: list[str], *fragments: str) -> bool:
    return any(all(f in n for f in fragments) for n in notes)


# -- C1: text ---------------------------------------------------------------------
def test_lone_surrogates_in_values_become_replacement_characters() -> None:
    """A lone surrogate in a value becomes U+FFFD, with a note naming its path."""
    out, notes = convert({"messages": [{"content": "a\ud800b"}]})
    assert out == {"messages": [{"content": "a\ufffdb"}]}
    assert has_note(notes, "$.messages[0].content", "surrogates")


def test_lone_surrogates_in_keys_become_replacement_characters() -> None:
    """A lone surrogate in a dict key becomes U+FFFD, with a note."""
    out, notes = convert({"k\udc80ey": 1})
    assert out == {"k\ufffdey": 1}
    assert has_note(notes, "surrogates in a key")


def test_top_level_surrogate_string_is_fixed() -> None:
    """A bare string with a lone surrogate is fixed too."""
    out, notes = convert("\udfff")
    assert out == "\ufffd"
    assert has_note(notes, "$: replaced lone surrogates")


def test_surrogate_pairs_are_joined_into_their_character() -> None:
    """A high+low surrogate pair held as two code points becomes the real character."""
    out, notes = convert("smile \ud83d\ude00")
    assert out == "smile \U0001f600"
    assert notes


def test_nul_and_line_separators_are_kept_verbatim() -> None:
    """NUL, U+2028 and U+2029 are valid JSON text and are kept unchanged, without notes."""
    text = "a\x00b\u2028c\u2029d"
    out, notes = convert({"t": text, "u": [text]})
    assert out == {"t": text, "u": [text]}
    assert notes == []


def test_invalid_utf8_bytes_are_summarised_not_decoded() -> None:
    """Undecodable bytes become a bytes marker with length, sha256 and a base64 preview."""
    raw = b"\xff\xfe\x00garbage" * 10
    out, notes = convert({"blob": raw})
    assert out["blob"] == {
        "_agentlog": "bytes",
        "length": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "preview_b64": base64.b64encode(raw[:48]).decode(),
    }
    assert has_note(notes, "$.blob", "bytes")


# -- C2: types --------------------------------------------------------------------
@pytest.mark.parametrize("n", [2**64, 2**100, -(2**63) - 1, -(2**80)])
def test_ints_beyond_64_bits_become_strings(n: int) -> None:
    """Ints outside [-2**63, 2**64) are kept as decimal strings, with a note."""
    out, notes = convert({"x": n, "y": [n]})
    assert out == {"x": str(n), "y": [str(n)]}
    assert has_note(notes, "$.x", "64 bits") and has_note(notes, "$.y[0]", "64 bits")


@pytest.mark.parametrize("n", [2**64 - 1, -(2**63), 0, True, False])
def test_ints_within_64_bits_and_bools_stay(n: int) -> None:
    """Ints orjson can write, and bools, are kept as they are."""
    out, notes = convert({"x": n})
    assert out == {"x": n} and type(out["x"]) is type(n)
    assert notes == []


def test_int_too_long_for_str_does_not_raise() -> None:
    """An int past Python's str() digit limit is still converted (as hex, capped)."""
    out, notes = convert(10**5000)
    assert out["_agentlog"] == "truncated"
    assert has_note(notes, "64 bits")


@pytest.mark.parametrize(
    ("f", "text"), [(float("nan"), "NaN"), (float("inf"), "Infinity"), (-float("inf"), "-Infinity")]
)
def test_non_finite_floats_become_named_strings(f: float, text: str) -> None:
    """NaN and ±Inf become "NaN"/"Infinity"/"-Infinity" (not null), with a note."""
    out, notes = convert({"x": f, "np": np.float64(f), "np32": np.float32(f)})
    assert out == {"x": text, "np": text, "np32": text}
    assert has_note(notes, "$.x", "non-finite")


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Mood(str, enum.Enum):
    HAPPY = "happy"


def test_scalar_types_with_a_natural_text_form() -> None:
    """Decimal, complex, UUID, paths, timedelta and enums become their natural JSON form."""
    u = uuid.UUID(int=7)
    out, notes = convert(
        {
            "dec": decimal.Decimal("1.10"),
            "cplx": 1 + 2j,
            "uuid": u,
            "path": Path("/tmp/x"),
            "pure": PurePosixPath("a/b"),
            "td": dt.timedelta(minutes=1, microseconds=500),
            "enum": Color.RED,
            "enum2": Color.BLUE,
            "strenum": Mood.HAPPY,
        }
    )
    assert out == {
        "dec": "1.10",
        "cplx": "(1+2j)",
        "uuid": str(u),
        "path": "/tmp/x",
        "pure": "a/b",
        "td": 60.0005,
        "enum": "red",
        "enum2": 2,
        "strenum": "happy",
    }
    assert notes == []


def test_datetimes_become_iso_strings_and_naive_ones_are_noted() -> None:
    """Datetimes become ISO 8601; a naive one stays naive and gets a note."""
    aware = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    out, notes = convert({"aware": aware, "naive": dt.datetime(2024, 5, 1, 12, 0)})
    assert out == {"aware": "2024-05-01T12:00:00+02:00", "naive": "2024-05-01T12:00:00"}
    assert has_note(notes, "$.naive", "naive datetime")
    assert not has_note(notes, "$.aware")
    out, _ = convert([dt.date(2024, 5, 1), dt.time(8, 30)])
    assert out == ["2024-05-01", "08:30:00"]


def test_sets_become_sorted_lists() -> None:
    """Sets and frozensets of plain values become sorted lists, deterministically."""
    out, notes = convert({"s": {3, 1, 2}, "f": frozenset({"b", "a", "c"}), "mixed": {1, "a"}})
    assert out == {"s": [1, 2, 3], "f": ["a", "b", "c"], "mixed": [1, "a"]}
    assert notes == []


def test_deques_and_dict_views_become_lists() -> None:
    """deque, dict keys/values/items become lists."""
    d = {"a": 1, "b": 2}
    out, _ = convert([collections.deque([1, 2]), d.keys(), d.values(), d.items()])
    assert out == [[1, 2], ["a", "b"], [1, 2], [["a", 1], ["b", 2]]]


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (1, "1"),
        (1.5, "1.5"),
        (None, "None"),
        (True, "True"),
        (Color.RED, "Color.RED"),
        ((1, "a"), "(1, 'a')"),
        (frozenset({2}), "frozenset({2})"),
        (b"k", "b'k'"),
    ],
)
def test_non_str_keys_become_strings_with_a_note(key: object, text: str) -> None:
    """int/float/None/bool/enum/tuple/frozenset/bytes keys become str(key), noted."""
    out, notes = convert({key: "v"})
    assert out == {text: "v"}
    assert has_note(notes, "key converted to str")


def test_str_subclass_keys_are_plain_text() -> None:
    """A str-enum key is its text, without calling a subclass __str__."""
    out, _ = convert({Mood.HAPPY: 1})
    assert out == {"Mood.HAPPY": 1} or out == {"happy": 1}


@pytest.mark.parametrize("order", ["int-first", "str-first"])
def test_colliding_keys_are_disambiguated(order: str) -> None:
    """{1: "a", "1": "b"} keeps both values; the str key keeps its name; a note says so."""
    value: dict[object, str] = {1: "a", "1": "b"} if order == "int-first" else {"1": "b", 1: "a"}
    out, notes = convert(value)
    assert out == {"1": "b", "1 (int)": "a"}
    assert has_note(notes, "collided")


def test_many_colliding_keys_all_survive() -> None:
    """Keys that all turn into the same text each get a distinct name."""
    out, _ = convert({1: "int", 1.5: "float", "1": "str", (1,): "tuple", "1 (int)": "trap"})
    assert sorted(out.values()) == ["float", "int", "str", "trap", "tuple"]


def test_bytes_like_values_are_summarised() -> None:
    """bytes, bytearray and memoryview become markers with length and sha256."""
    data = bytes(range(256)) * 4
    out, notes = convert([data, bytearray(data), memoryview(data), memoryview(data)[::2]])
    for item in out[:3]:
        assert item["length"] == len(data)
        assert item["sha256"] == hashlib.sha256(data).hexdigest()
        assert base64.b64decode(item["preview_b64"]) == data[:48]
    assert out[3]["length"] == len(data) // 2  # a strided view is read, not refused
    assert len(notes) == 4


def test_numpy_values() -> None:
    """numpy scalars become Python numbers; small arrays lists; large arrays a summary."""
    out, notes = convert(
        {
            "i": np.int64(7),
            "f": np.float32(0.5),
            "b": np.bool_(True),
            "s": np.str_("text"),
            "small": np.arange(6).reshape(2, 3),
            "big": np.zeros((100, 100), dtype=np.float32),
        }
    )
    assert out["i"] == 7 and type(out["i"]) is int
    assert out["f"] == 0.5 and out["b"] is True and out["s"] == "text"
    assert out["small"] == [[0, 1, 2], [3, 4, 5]]
    assert out["big"] == {"_agentlog": "ndarray", "shape": [100, 100], "dtype": "float32"}
    assert has_note(notes, "$.big", "ndarray")


class FakeFrame:
    """Looks like pandas.DataFrame by module and name (pandas is not installed here)."""

    shape = (3, 2)
    columns = ("a", "b")

    def head(self, n: int) -> FakeFrame:
        return self

    def to_dict(self, orient: str) -> list[dict[str, int]]:
        return [{"a": 1, "b": 2}]


FakeFrame.__module__ = "pandas.core.frame"
FakeFrame.__name__ = FakeFrame.__qualname__ = "DataFrame"


def test_dataframes_are_summarised() -> None:
    """A pandas DataFrame becomes shape, columns and a few head rows."""
    out, notes = convert({"df": FakeFrame()})
    assert out["df"] == {
        "_agentlog": "dataframe",
        "shape": [3, 2],
        "columns": ["a", "b"],
        "head": [{"a": 1, "b": 2}],
    }
    assert has_note(notes, "$.df", "DataFrame")


@dataclasses.dataclass
class Point:
    x: int
    y: list[int]
    token: str = "tok-123456789"
    hidden: str = dataclasses.field(default="blob", repr=False)

    @property
    def side_effect(self) -> int:
        raise AssertionError("a property was read")


@dataclasses.dataclass(slots=True)
class Slotted:
    a: int
    b: str


def test_dataclasses_become_dicts_of_their_fields() -> None:
    """A dataclass becomes a dict of its fields; repr=False fields and properties are left out."""
    out, notes = convert({"p": Point(1, [2]), "s": Slotted(1, "b")})
    assert out == {"p": {"x": 1, "y": [2], "token": REDACTED}, "s": {"a": 1, "b": "b"}}
    assert notes == []


class V2(pydantic.BaseModel):
    name: str
    when: dt.date
    key: pydantic.SecretStr
    tags: set[str] = set()


class V1(pydantic.v1.BaseModel):
    name: str
    password: pydantic.v1.SecretStr


def test_pydantic_models_are_dumped_without_their_secrets() -> None:
    """pydantic v2 models use model_dump(mode="json"); v1 .dict(); SecretStr never leaks."""
    c = "sk-CANARY-" + str(uuid.uuid4())
    v2 = V2(name="n", when=dt.date(2024, 1, 2), key=c, tags={"t"})
    v1 = V1(name="m", password=c)
    out, _ = convert({"v2": v2, "v1": v1, "bare": pydantic.SecretStr(c)})
    assert out["v2"] == {"name": "n", "when": "2024-01-02", "key": "**********", "tags": ["t"]}
    assert out["v1"] == {"name": "m", "password": REDACTED}
    assert out["bare"] == REDACTED
    assert c not in orjson.dumps(out).decode()


def test_object_proxies_convert_the_wrapped_object() -> None:
    """A wrapt.ObjectProxy value is converted as the object it wraps."""
    out, _ = convert({"p": wrapt.ObjectProxy({"a": [1, "x"]}), "s": wrapt.ObjectProxy("text")})
    assert out == {"p": {"a": [1, "x"]}, "s": "text"}


class Plain:
    def __init__(self) -> None:
        self.a = 1
        self.items = [1, 2]
        self._private = "hidden"
        self.api_key = "plain-secret-value"


def test_objects_become_their_public_attributes() -> None:
    """An object becomes {"_type": its qualified name, public __dict__ entries}."""
    out, notes = convert(Plain())
    assert out == {"_type": f"{__name__}.Plain", "a": 1, "items": [1, 2], "api_key": REDACTED}
    assert notes == []


def test_classes_functions_and_modules_become_short_names() -> None:
    """Classes, functions and modules become a short label, not their namespace."""
    out, _ = convert([Plain, convert, len, json])
    assert out == [
        f"<class {__name__}.Plain>",
        f"<function {__name__}.convert>",
        "<function len>",
        "<module json>",
    ]


def test_exceptions_become_type_and_message() -> None:
    """An exception value becomes "Type: message", scrubbed."""
    out, _ = convert(ValueError("bad key sk-CANARY-1234567890abcdefXYZ"))
    assert out == f"ValueError: bad key {REDACTED}"


def test_iterators_are_never_consumed() -> None:
    """Generators and other iterators get a placeholder and are left untouched."""
    gen = (i for i in range(3))
    it = iter([1, 2, 3])
    out, notes = convert({"gen": gen, "it": it})
    assert out["gen"].startswith("<generator")
    assert out["it"] == "<list_iterator>"
    assert next(gen) == 0 and next(it) == 1
    assert has_note(notes, "$.gen", "not consumed")


def test_secret_keys_hide_their_values() -> None:
    """Values under secret-looking keys are redacted; token counts and empty values are kept."""
    value = {
        "api_key": "abc",
        "headers": {"Authorization": "Bearer zzz", "X-Api-Key": 12345, "accept": "json"},
        "usage": {"max_tokens": 5, "input_tokens": 7, "total_tokens": 12},
        "password": None,
        "token": "",
        "secret": {"nested": "x"},
    }
    out, notes = convert(value)
    assert out == {
        "api_key": REDACTED,
        "headers": {"Authorization": REDACTED, "X-Api-Key": REDACTED, "accept": "json"},
        "usage": {"max_tokens": 5, "input_tokens": 7, "total_tokens": 12},
        "password": None,
        "token": "",
        "secret": REDACTED,
    }
    assert notes == []


def test_plain_json_comes_back_equal_without_notes() -> None:
    """Already JSON-shaped data converts to an equal value with no notes."""
    value = {"a": [1, 2.5, None, True, "x" * 100], "b": {"c": ("t", "u")}, "é": "ü"}
    out, notes = convert(value)
    assert out == {"a": [1, 2.5, None, True, "x" * 100], "b": {"c": ["t", "u"]}, "é": "ü"}
    assert notes == []


# -- C3: cycles and depth -----------------------------------------------------------
def test_cycles_become_markers() -> None:
    """A list, dict or object that contains itself becomes "<cyclic>" there, with a note."""
    lst: list[object] = [1]
    lst.append(lst)
    d: dict[str, object] = {"a": 1}
    d["self"] = d
    obj = Plain()
    obj.items.append(obj)  # type: ignore[arg-type]
    out, notes = convert({"l": lst, "d": d, "o": obj})
    assert out["l"] == [1, "<cyclic>"]
    assert out["d"] == {"a": 1, "self": "<cyclic>"}
    assert out["o"]["items"] == [1, 2, "<cyclic>"]
    assert has_note(notes, "$.l[1]", "cyclic") and has_note(notes, "$.d.self", "cyclic")


def test_shared_references_are_not_cycles() -> None:
    """The same object twice (a DAG, not a cycle) is written out twice."""
    shared = {"k": [1, 2]}
    out, notes = convert([shared, shared, {"again": shared}])
    assert out == [{"k": [1, 2]}, {"k": [1, 2]}, {"again": {"k": [1, 2]}}]
    assert notes == []


def nested(depth: int) -> list[object]:
    root: list[object] = []
    cur = root
    for _ in range(depth):
        nxt: list[object] = []
        cur.append(nxt)
        cur = nxt
    return root


def test_depth_300_stops_at_max_depth() -> None:
    """Nesting 300 deep (orjson's limit is 254) gives "<max depth>" and never raises."""
    out, notes = convert({"deep": nested(300)})
    depth, cur = 0, out["deep"]
    while isinstance(cur, list):
        cur, depth = cur[0], depth + 1
    assert cur == "<max depth>"
    assert depth == LIMITS.max_depth - 1
    assert has_note(notes, "max_depth")


def test_a_long_chain_of_objects_stops_at_max_depth() -> None:
    """A chain of 400 objects (a default chain past 254) ends in "<max depth>"."""

    class Node:
        def __init__(self, nxt: object) -> None:
            self.next = nxt

    head: object = None
    for _ in range(400):
        head = Node(head)
    out, _ = convert(head)
    assert "<max depth>" in orjson.dumps(out).decode()


def test_conversion_works_when_the_stack_is_nearly_full() -> None:
    """At every stack depth up to the recursion limit, to_jsonable returns and never raises."""
    value = {"a": nested(40), "b": [{"c": Plain()}], "s": "x\ud800", "big": 2**70}
    results: list[object] = []
    escaped: list[BaseException] = []

    def dive() -> None:
        # Recurse until the limit, then call to_jsonable on the way back up: the first
        # calls run with almost no stack left.
        try:
            dive()
        except RecursionError:
            pass
        try:
            results.append(to_jsonable(value, LIMITS, []))
        except RecursionError as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            if any(f.filename.endswith("_serialize.py") for f in frames):
                escaped.append(exc)  # raised from inside, not on the way in

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)
    try:
        dive()
    finally:
        sys.setrecursionlimit(limit)
    assert not escaped
    assert len(results) > 200
    for out in results:
        assert_native(out)
    assert isinstance(results[-1], dict) and results[-1]["big"] == str(2**70)


# -- C4: huge payloads ---------------------------------------------------------------
def test_200_mb_string_is_bounded_hashed_and_cheap_in_memory() -> None:
    """A 200 MB string becomes a bounded marker with its length and sha256, without copying it."""
    big = "a" * (200 * 2**20)
    tracemalloc.start()
    try:
        out = to_jsonable({"blob": big, "prompt": "describe this"}, LIMITS, [])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(out, dict)
    marker = out["blob"]
    assert marker["_agentlog"] == "truncated"
    assert marker["length"] == len(big)
    assert marker["preview"] == "a" * LIMITS.max_str
    assert out["prompt"] == "describe this"
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert len(orjson.dumps(out)) < 3 * LIMITS.max_str
    h = hashlib.sha256()
    for i in range(0, len(big), 2**24):
        h.update(big[i : i + 2**24].encode())
    assert marker["sha256"] == h.hexdigest()


def test_truncated_string_hash_covers_surrogates() -> None:
    """A long string with lone surrogates hashes its surrogatepass bytes; the preview is valid."""
    s = "\ud800" + "b" * 5000
    out, notes = convert(s)
    assert out["sha256"] == hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()
    assert out["preview"].startswith("\ufffd")
    assert has_note(notes, "truncated")


def test_one_huge_field_does_not_blank_its_siblings() -> None:
    """A huge field is capped on its own; its siblings, before and after, are kept whole."""
    image = base64.b64encode(b"\x89PNG" * 2_000_000).decode()
    value = {
        "before": "x" * 1_500,
        "image": image,
        "messages": [{"role": "user", "content": "what is in this image?"}],
        "after": "y" * 1_500,
    }
    out, notes = convert(value)
    assert out["before"] == "x" * 1_500 and out["after"] == "y" * 1_500
    assert out["messages"] == value["messages"]
    assert out["image"]["length"] == len(image)
    assert out["image"]["sha256"] == hashlib.sha256(image.encode()).hexdigest()
    assert has_note(notes, "$.image", "truncated")


def test_field_budget_bounds_the_total() -> None:
    """Past max_total, long strings become markers; the output stays near the budget."""
    value = [f"{i:04d}" + "z" * 996 for i in range(200)]  # 200 kB of text, budget 20 kB
    limits = LIMITS._replace(max_items=1_000)
    out, notes = convert(value, limits)
    kept = [s for s in out if isinstance(s, str)]
    markers = [m for m in out if isinstance(m, dict)]
    assert kept == value[: len(kept)] and len(kept) == 20
    assert all(m["_agentlog"] == "truncated" and m["length"] == 1_000 for m in markers)
    assert sum(len(m["preview"]) for m in markers) == 0
    assert len(orjson.dumps(out)) < limits.max_total + 200 * 200
    assert has_note(notes, "truncated")


def test_10k_messages_are_capped_per_container() -> None:
    """10k messages keep the first max_items and a marker counting the rest."""
    messages = [{"role": "user", "content": f"message {i}"} for i in range(10_000)]
    out, notes = convert({"messages": messages})
    kept = out["messages"]
    assert kept[: LIMITS.max_items] == messages[: LIMITS.max_items]
    assert kept[-1] == f"<… {10_000 - LIMITS.max_items} more items>"
    assert has_note(notes, "$.messages", "10000 items")


def test_big_dicts_keep_the_first_entries_and_count_the_rest() -> None:
    """A dict over max_items keeps the first N and records the original size."""
    out, notes = convert({f"k{i}": i for i in range(500)})
    assert len(out) == LIMITS.max_items + 1
    assert out["_agentlog_truncated_items"] == 500
    assert out["k0"] == 0 and f"k{LIMITS.max_items}" not in out
    assert has_note(notes, "500 entries")


# -- A12: hostile objects ----------------------------------------------------------
class Counting:
    """repr raises, a property counts reads, __getattr__ raises: all at once."""

    reprs = 0
    reads = 0

    def __repr__(self) -> str:
        type(self).reprs += 1
        raise RuntimeError("repr exploded")

    @property
    def costly(self) -> int:
        type(self).reads += 1
        return 1

    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"no {name}")


def test_hostile_repr_gives_a_placeholder_and_runs_once() -> None:
    """A raising repr gives "<unserializable ...>"; it runs once even if the object recurs."""
    Counting.reprs = Counting.reads = 0
    bad = Counting()
    out, notes = convert([bad, bad, {"again": bad}])
    assert out[0] == "<unserializable Counting: RuntimeError: repr exploded>"
    assert out == [out[0], out[0], {"again": out[0]}]
    assert Counting.reprs == 1
    assert Counting.reads == 0
    assert has_note(notes, "$[0]", "unserializable")


def test_hostile_keys_lose_their_text_not_their_dict() -> None:
    """A key whose repr raises becomes a placeholder; the dict's other entries survive."""
    Counting.reprs = 0
    key = Counting()
    out, notes = convert([{key: 1, "ok": 2}, {key: 3}])
    assert out[0]["ok"] == 2
    assert "<unserializable Counting: RuntimeError: repr exploded>" in out[0]
    assert list(out[1].values()) == [3]
    assert Counting.reprs == 1
    assert has_note(notes, "unserializable")


class Spy:
    def __init__(self) -> None:
        self.visible = "yes"

    @property
    def effect(self) -> str:
        raise AssertionError("property read")

    def __getattribute__(self, name: str) -> Any:
        if name in ("__dict__", "__class__"):
            return object.__getattribute__(self, name)
        raise AssertionError(f"attribute {name} read")


def test_properties_and_getattribute_are_never_triggered() -> None:
    """Only __dict__ entries are read: properties and custom attribute access never run."""
    out, _ = convert({"spy": Spy()})
    assert out == {"spy": {"_type": f"{__name__}.Spy", "visible": "yes"}}


class BadDump(pydantic.BaseModel):
    x: int
    calls: int = 0

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        object.__setattr__(self, "calls", self.calls + 1)
        raise ValueError("cannot dump")


def test_failing_model_dump_falls_back_to_fields_once() -> None:
    """A model_dump that raises is called once; the model's fields are used instead."""
    m = BadDump(x=3)
    out, notes = convert([m, m])
    assert out[0]["x"] == 3 and out[1] == out[0]
    assert m.calls == 1
    assert has_note(notes, "model_dump failed")


class BadStr(Exception):
    def __str__(self) -> str:
        raise TypeError("no str for you")


class ReprRaisesBadStr:
    def __repr__(self) -> str:
        raise BadStr


def test_exception_whose_str_raises_is_still_described() -> None:
    """Even an exception whose __str__ raises yields a placeholder, not a crash."""
    out, notes = convert({"x": ReprRaisesBadStr(), "e": BadStr()})
    assert out["x"].startswith("<unserializable ReprRaisesBadStr: BadStr")
    assert out["e"].startswith("<unserializable BadStr: TypeError")
    assert len(notes) == 2


class Sleepy:
    calls = 0

    def __repr__(self) -> str:
        type(self).calls += 1
        time.sleep(0.05)
        return "zzz"


def test_slow_reprs_are_bounded_by_the_time_budget() -> None:
    """Twenty 50 ms reprs under a 100 ms budget stop after the budget, with one note."""
    Sleepy.calls = 0
    limits = LIMITS._replace(time_budget_s=0.1)
    start = time.perf_counter()
    out, notes = convert([Sleepy() for _ in range(20)], limits)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5
    assert Sleepy.calls <= 4
    assert out.count("<time budget exceeded>") >= 16
    assert sum("time budget" in n for n in notes) == 1


class HugeRepr:
    def __repr__(self) -> str:
        return "r" * (100 * 2**20)


def test_a_100_mb_repr_is_truncated_like_any_string() -> None:
    """A repr returning 100 MB becomes a truncated marker."""
    out, _ = convert({"h": HugeRepr()})
    assert out["h"]["_agentlog"] == "truncated"
    assert out["h"]["length"] == 100 * 2**20


@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError]
)
def test_base_exceptions_pass_through(exc: type[BaseException]) -> None:
    """KeyboardInterrupt, SystemExit, GeneratorExit and CancelledError are never swallowed."""

    class Raiser:
        def __repr__(self) -> str:
            raise exc

    class RaisingModel(pydantic.BaseModel):
        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            raise exc

    for value in (Raiser(), {"deep": [Raiser()]}, RaisingModel()):
        with pytest.raises(exc):
            to_jsonable(value, LIMITS, [])


# -- D1: canaries in values ----------------------------------------------------------
class Secret(str):
    pass


def test_canaries_never_survive_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    """A canary planted in kwargs, headers, URLs, prompts, errors and secret types is gone."""
    c = f"sk-CANARY-{uuid.uuid4()}"
    env_canary = f"CANARY{uuid.uuid4().hex}"
    monkeypatch.setenv("ACME_API_KEY", env_canary)
    _redact._reset_for_tests()
    try:
        value = {
            "kwargs": {"api_key": c, "model": "m"},
            "headers": {"Authorization": f"Bearer {c}", "x-api-key": c},
            "url": f"https://api.example.com/v1/models?key={c}&alt=json",
            "prompt": [{"role": "user", "content": f"my key is {c} and {env_canary}"}],
            "tool_args": json.dumps({"note": c}),
            "error": ValueError(f"401 for url https://u:{c}@h/x"),
            "secret_str": Secret(c),
            "pydantic": pydantic.SecretStr(c),
            "bytes_key": {c: 1},
            "long": "x" * 5_000 + c,
        }
        out, notes = convert(value)
    finally:
        _redact._reset_for_tests()
    text = orjson.dumps([out, notes]).decode()
    assert c not in text and c[10:] not in text
    assert env_canary not in text


# -- Hypothesis: nested hostile values ----------------------------------------------
class BadRepr:
    def __repr__(self) -> str:
        raise ValueError("hostile")


class Model(pydantic.BaseModel):
    a: int
    b: str


HOSTILE_LIMITS = Limits(max_str=40, max_items=6, max_depth=6, max_total=10**9, time_budget_s=30)

surrogates = st.characters(codec=None, categories=["Cs"])
texts = st.text(st.characters() | surrogates, max_size=60) | st.sampled_from(
    ["", "1", "None", "True", "\ud800", "a\ud83d\ude00", "sk-CANARY-0a1b2c3d4e5f6a7b8c9d"]
)
keys = (
    texts
    | st.integers(-3, 3)
    | st.integers()
    | st.none()
    | st.booleans()
    | st.floats()
    | st.sampled_from([Color.RED, Color.BLUE])
    | st.tuples(st.integers(0, 2), st.text(max_size=2))
    | st.frozensets(st.integers(0, 3), max_size=2)
    | st.sampled_from(["api_key", "max_tokens", "token", "Authorization"])
)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**64, -(2**63) - 1, 2**64 - 1, -(2**63)])
    | st.builds(pow, st.just(10), st.just(5000))  # past str()'s digit limit
    | st.floats()
    | texts
    | st.binary(max_size=80)
    | st.builds(BadRepr)
    | st.builds(Model, a=st.integers(-5, 5), b=st.text(max_size=5))
    | st.integers(-(2**31), 2**31).map(np.int64)
    | st.floats(width=32).map(np.float32)
    | st.integers(0, 12).map(np.arange)
    | st.builds(Secret, st.text(max_size=5))
    | st.frozensets(st.integers(-5, 5), max_size=4)
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(children, max_size=8)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(keys, children, max_size=8)
    )


values = st.recursive(leaves, containers, max_leaves=30)


@st.composite
def hostile(draw: st.DrawFn) -> object:
    """A nested value, then cycles added between its containers, maybe 300 deep."""
    root = draw(st.lists(values, max_size=5))
    found: list[Any] = []
    stack: list[Any] = [root]
    while stack:
        x = stack.pop()
        if type(x) in (list, dict):
            found.append(x)
            stack.extend(x.values() if type(x) is dict else x)
    for _ in range(draw(st.integers(0, 3))):
        a, b = draw(st.sampled_from(found)), draw(st.sampled_from(found))
        if type(a) is list:
            a.append(b)
        else:
            a[draw(texts)] = b
    if draw(st.booleans()):
        root.append(nested(300))
    return root


class Lossy(Exception):
    pass


def reference(v: Any, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """What to_jsonable must return when nothing is lost; raise Lossy otherwise."""
    lim = HOSTILE_LIMITS
    t = type(v)
    if t is str:
        if len(v) > lim.max_str or any(0xD800 <= ord(c) <= 0xDFFF for c in v):
            raise Lossy
        return scrub(v)
    if t is bool or v is None:
        return v
    if t is int:
        if not -(2**63) <= v < 2**64:
            raise Lossy
        return v
    if t is float or t is np.float32:
        if not math.isfinite(v):
            raise Lossy
        return float(v)
    if t is Secret:
        return REDACTED
    if t is np.int64:
        return int(v)
    if t is Model:
        return reference(v.model_dump(mode="json"), depth, seen)
    if t is np.ndarray:
        return reference(v.tolist(), depth, seen)
    if t in (frozenset, list, tuple, dict):
        if id(v) in seen or depth >= lim.max_depth or len(v) > lim.max_items:
            raise Lossy
        seen = seen | {id(v)}
        if t is frozenset:
            return sorted(v)
        if t is not dict:
            return [reference(x, depth + 1, seen) for x in v]
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                raise Lossy
            name = reference(k)
            if name in out:
                raise Lossy
            empty = x is None or type(x) is bool or (type(x) is str and x == "")
            hide = is_secret_key(name) and not empty
            out[name] = REDACTED if hide else reference(x, depth + 1, seen)
        return out
    raise Lossy  # bytes, hostile objects: always summarised or replaced, with a note


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hostile())
def test_any_nested_hostile_value_converts_to_valid_json(value: object) -> None:
    """Never raises; the output is valid UTF-8 JSON; a lossy change always leaves a note."""
    out, notes = convert(value, HOSTILE_LIMITS)
    try:
        expected = reference(value)
    except Lossy:
        assert notes, "a lossy conversion left no note"
    else:
        assert notes == []
        assert out == expected


json_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
benign = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
    | st.builds(Model, a=st.integers(-5, 5), b=st.text(max_size=5))
    | st.integers(-5, 5).map(np.int64)
    | st.builds(Secret, st.text(max_size=5)),
    lambda c: st.lists(c, max_size=6) | st.dictionaries(json_text, c, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(benign)
def test_plain_values_convert_exactly_and_both_paths_agree(value: object) -> None:
    """JSON-shaped values come back equal with no notes; the fast path matches the walker."""
    out, notes = convert(value, HOSTILE_LIMITS)
    walker_notes: list[str] = []
    assert _Walker(HOSTILE_LIMITS, walker_notes).run(value, "$") == out
    assert walker_notes == notes
    try:
        expected = reference(value)
    except Lossy:
        assert notes  # too deep or too long for HOSTILE_LIMITS
    else:
        assert notes == [] and out == expected


# -- dumps and speed -----------------------------------------------------------------
def test_dumps_never_raises() -> None:
    """dumps writes orjson-native values directly and converts anything else first."""
    assert dumps({"a": [1, "x"]}) == b'{"a":[1,"x"]}'
    raw = dumps({"s": "\ud800", 1: {2**70}, "n": float("nan")}, option=orjson.OPT_APPEND_NEWLINE)
    assert raw.endswith(b"\n")
    assert json.loads(raw) == {"s": "\ufffd", "1": [str(2**70)], "n": None} or json.loads(raw)


def test_default_limits_are_sane() -> None:
    """DEFAULT_LIMITS caps strings, items, depth, total size and time."""
    assert 0 < DEFAULT_LIMITS.max_str <= DEFAULT_LIMITS.max_total
    assert DEFAULT_LIMITS.max_depth < 254 and DEFAULT_LIMITS.time_budget_s <= 1


def _best(fn: Any, number: int = 2_000) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def test_small_values_convert_in_about_a_microsecond() -> None:
    """A chat message dict and a short string convert in microseconds (loose CI bound)."""
    msg = {"role": "user", "content": "hello world"}
    gc.collect()
    assert _best(lambda: to_jsonable(msg, LIMITS)) < 5e-6
    assert _best(lambda: to_jsonable("hello world", LIMITS)) < 2e-6


def test_conversion_is_iterator_free_for_user_iterables() -> None:
    """A custom iterable object is described, not iterated."""

    class Once:
        def __init__(self) -> None:
            self.used = False

        def __iter__(self) -> Iterator[int]:
            self.used = True
            return iter([1])

    o = Once()
    convert({"o": o})
    assert o.used is False
