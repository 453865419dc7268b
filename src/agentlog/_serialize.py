"""Safe conversion of any Python value into JSON-native data.

``to_jsonable`` never raises and never runs away: its output holds only dicts with str
keys, lists, valid UTF-8 strings, bools, ``None``, ints that fit 64 bits and finite
floats, so ``orjson.dumps`` of it cannot fail. Every lossy step leaves a note.

The walker is iterative (an explicit stack), so nesting depth never meets Python's
recursion limit, whatever the depth of the caller's stack. User code (``repr``,
``model_dump``, ``.item()``, ...) runs at most once per object per conversion: its
result is memoised by identity, which also lets cycles through such objects show up as
``"<cyclic>"``. Only ``__dict__`` entries are read, never properties, so reading an
object cannot trigger its side effects.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as _dt
import enum
import functools
import hashlib
import math
import re
import sys
import types
from collections import deque
from collections.abc import Iterator, Mapping
from itertools import islice
from pathlib import PurePath
from time import perf_counter
from typing import Any, NamedTuple

import orjson

from ._redact import REDACTED, is_secret_key, scrub

__all__ = ["DEFAULT_LIMITS", "Limits", "dumps", "to_jsonable"]


class Limits(NamedTuple):
    """Caps for one conversion."""

    max_str: int
    """Per-string cap, in characters."""
    max_items: int
    """Per-container cap (list/tuple/set/dict entries)."""
    max_depth: int
    """Containers nested deeper than this become ``"<max depth>"``."""
    max_total: int
    """Characters of strings allowed for one converted value (the field budget)."""
    time_budget_s: float
    """Wall-clock budget for one conversion."""


DEFAULT_LIMITS = Limits(
    max_str=16_384, max_items=1_000, max_depth=32, max_total=1_048_576, time_budget_s=0.25
)
_GENEROUS = Limits(
    max_str=1 << 24, max_items=1 << 20, max_depth=64, max_total=1 << 27, time_budget_s=5.0
)

CYCLIC = "<cyclic>"
MAX_DEPTH = "<max depth>"
TIME_EXCEEDED = "<time budget exceeded>"
TRUNCATED_ITEMS_KEY = "_agentlog_truncated_items"

_INT_MIN = -(1 << 63)
_INT_END = 1 << 64  # exclusive: orjson takes up to u64
_SCRUB_MIN = 8  # scrub() returns shorter strings unchanged; skip the call
_SMALL_STR = 64  # past the budget, strings this short are kept: a marker would be bigger
_SCRUB_MARGIN = 4096  # a secret cut by the preview's end is still seen whole
_HASH_SLICE = 1 << 20
_PREVIEW_BYTES = 48
_MAX_NOTES = 100
_MAX_REPLACEMENTS = 8  # proxy of a proxy of ...: stop somewhere
_MSG_CAP = 200
_SURROGATE = re.compile("[\ud800-\udfff]")
_EXIT = object()
_NOTHING = object()


def _is_proxy(t: type) -> bool:
    # A wrapt proxy can only exist once wrapt is imported; importing it ourselves
    # would cost more than agentlog's whole import budget.
    wrapt = sys.modules.get("wrapt")
    if wrapt is None:
        return False
    proxy = getattr(wrapt, "BaseObjectProxy", None) or getattr(wrapt, "ObjectProxy", None)
    return isinstance(proxy, type) and issubclass(t, proxy)


def fix_surrogates(s: str) -> str:
    # The UTF-16 round trip joins proper high+low pairs into one character and turns
    # each lone surrogate into U+FFFD.
    return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _sha256_text(s: str) -> str:
    # Slices keep the extra memory at a few MiB even for a string of hundreds of MiB.
    h = hashlib.sha256()
    for i in range(0, len(s), _HASH_SLICE):
        h.update(s[i : i + _HASH_SLICE].encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _plain_text(s: str, cap: int = _MSG_CAP) -> str:
    """Short, valid, scrubbed text for placeholders and notes."""
    if len(s) > cap:
        s = s[:cap] + "…"
    if not s.isascii() and _SURROGATE.search(s):
        s = fix_surrogates(s)
    return scrub(s)


def _qualname(t: type) -> str:
    try:
        module, name = t.__module__, t.__qualname__
    except Exception:  # noqa: BLE001 - a metaclass may refuse; fall back to the C name
        return type.__repr__(t)
    if not isinstance(module, str) or not isinstance(name, str):
        return type.__repr__(t)
    return name if module == "builtins" else f"{module}.{name}"


def _int_text(i: int) -> str:
    try:
        return str(i)
    except ValueError:  # over sys.get_int_max_str_digits(); hex has no such limit
        return hex(i)


# ---------------------------------------------------------------------------
# What kind of value a type holds, decided once per type.
# ---------------------------------------------------------------------------
(
    K_OTHER,
    K_PROXY,
    K_SECRET,
    K_STR,
    K_INT,
    K_FLOAT,
    K_DICT,
    K_SEQ,
    K_SET,
    K_ITERABLE,
    K_MAPPING,
    K_BYTES,
    K_DATETIME,
    K_DATE_OR_TIME,
    K_TIMEDELTA,
    K_ENUM,
    K_STR_LIKE,
    K_ITERATOR,
    K_EXCEPTION,
    K_CLASS,
    K_FUNCTION,
    K_MODULE,
    K_PYDANTIC2,
    K_PYDANTIC1,
    K_DATACLASS,
    K_NP_ARRAY,
    K_NP_SCALAR,
    K_DATAFRAME,
    K_SERIES,
    K_IMAGE,
) = range(30)

_STR_LIKE_MODULES = frozenset({"decimal", "_decimal", "fractions", "uuid", "ipaddress", "pathlib"})
_ITERABLE_TYPES: tuple[type, ...] = (deque, type({}.keys()), type({}.values()), type({}.items()))
_FUNCTION_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.BuiltinMethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    functools.partial,
)


@functools.lru_cache(maxsize=2048)
def _kind(t: Any) -> int:
    mro = t.__mro__
    names = {f"{getattr(c, '__module__', '')}.{getattr(c, '__qualname__', '')}" for c in mro}
    if _is_proxy(t):
        return K_PROXY
    if "Secret" in t.__name__:
        return K_SECRET  # Secret(str) subclasses, pydantic SecretStr / SecretBytes
    if issubclass(t, enum.Enum):
        return K_ENUM
    if issubclass(t, str):
        return K_STR
    if issubclass(t, bool | int):
        return K_INT
    if issubclass(t, float):
        return K_FLOAT
    if issubclass(t, dict):
        return K_DICT
    if issubclass(t, list | tuple):
        return K_SEQ
    if issubclass(t, set | frozenset):
        return K_SET
    if issubclass(t, _ITERABLE_TYPES):
        return K_ITERABLE
    if issubclass(t, bytes | bytearray | memoryview):
        return K_BYTES
    if issubclass(t, _dt.datetime):
        return K_DATETIME
    if issubclass(t, _dt.date | _dt.time):
        return K_DATE_OR_TIME
    if issubclass(t, _dt.timedelta):
        return K_TIMEDELTA
    if issubclass(t, complex | PurePath) or any(
        getattr(c, "__module__", None) in _STR_LIKE_MODULES for c in mro[:-1]
    ):
        return K_STR_LIKE
    if issubclass(t, BaseException):
        return K_EXCEPTION
    if issubclass(t, type):
        return K_CLASS
    if issubclass(t, types.ModuleType):
        return K_MODULE
    if issubclass(t, _FUNCTION_TYPES):
        return K_FUNCTION
    if "numpy.ndarray" in names:
        return K_NP_ARRAY
    if "numpy.generic" in names:
        return K_NP_SCALAR
    if any(n.startswith("pandas.") and n.endswith(".DataFrame") for n in names):
        return K_DATAFRAME
    if any(n.startswith("pandas.") and n.endswith(".Series") for n in names):
        return K_SERIES
    if "PIL.Image.Image" in names:
        return K_IMAGE
    # Pydantic is recognised by its class attributes; it is never imported here.
    if hasattr(t, "__pydantic_validator__") and callable(getattr(t, "model_dump", None)):
        return K_PYDANTIC2
    if hasattr(t, "__fields__") and callable(getattr(t, "dict", None)) and "__config__" in dir(t):
        return K_PYDANTIC1
    if dataclasses.is_dataclass(t):
        return K_DATACLASS
    if issubclass(t, Mapping):
        return K_MAPPING
    if issubclass(t, Iterator) or issubclass(t, types.CoroutineType | types.AsyncGeneratorType):
        return K_ITERATOR
    return K_OTHER


# ---------------------------------------------------------------------------
# The walker
# ---------------------------------------------------------------------------
_Path = Any  # the root path str, or (parent path, key or index): rendered only for notes


def _render(path: _Path) -> str:
    parts: list[str] = []
    while type(path) is tuple:
        path, key = path
        if type(key) is int:
            parts.append(f"[{key}]")
        elif key.isidentifier():
            parts.append("." + key)
        else:
            parts.append("[" + orjson.dumps(key).decode() + "]")
    parts.append(path if type(path) is str else "$")
    return "".join(reversed(parts))


class _Unsupported(Exception):
    """A value the walker gives up on (say, a proxy of a proxy of ... too many times)."""


class _Walker:
    __slots__ = (
        "ancestors",
        "deadline",
        "dropped_notes",
        "limits",
        "max_items",
        "max_str",
        "memo",
        "next_check",
        "nodes",
        "notes",
        "remaining",
        "small",
        "timed_out",
    )

    def __init__(self, limits: Limits, notes: list[str] | None) -> None:
        self.limits = limits
        self.max_str = limits.max_str
        self.max_items = limits.max_items
        self.small = min(_SMALL_STR, limits.max_str)
        self.remaining = limits.max_total
        self.deadline = perf_counter() + limits.time_budget_s
        self.notes = notes
        self.dropped_notes = 0
        self.nodes = 0
        self.next_check = 64
        self.timed_out = False
        self.ancestors: set[int] = set()
        self.memo: dict[int, tuple[object, object]] = {}

    # -- bookkeeping ------------------------------------------------------------
    def note(self, path: _Path, what: str) -> None:
        notes = self.notes
        if notes is None:
            return
        if len(notes) >= _MAX_NOTES:
            self.dropped_notes += 1
            return
        notes.append(f"{_plain_text(_render(path), 400)}: {what}")

    def check_time(self, path: _Path) -> bool:
        """True once the time budget is spent (noted once)."""
        if not self.timed_out and perf_counter() > self.deadline:
            self.timed_out = True
            self.note(path, "time budget exceeded; the rest is left out")
        return self.timed_out

    def fail(self, value: object, path: _Path, exc: BaseException) -> str:
        try:
            msg = str(exc)
        except Exception:  # noqa: BLE001 - the exception's own __str__ may be hostile
            msg = "<str() failed>"
        text = _plain_text(f"<unserializable {type(value).__name__}: {type(exc).__name__}: {msg}>")
        self.note(path, text)
        return text

    # -- leaves -----------------------------------------------------------------
    def text(self, s: str, path: _Path) -> object:
        n = len(s)
        if n <= self.max_str and (n <= self.remaining or n <= _SMALL_STR):
            self.remaining -= n
            if s.isascii():
                return scrub(s)
            if _SURROGATE.search(s) is None:
                return scrub(s)
            self.note(path, "replaced lone surrogates")
            return scrub(fix_surrogates(s))
        return self.truncated(s, path)

    def truncated(self, s: str, path: _Path) -> dict[str, object]:
        n = len(s)
        keep = max(min(self.max_str, self.remaining), 0)
        self.remaining -= keep
        window = s[: keep + _SCRUB_MARGIN]
        if not window.isascii() and _SURROGATE.search(window):
            window = fix_surrogates(window)
        preview = scrub(window)[:keep]
        self.note(path, f"string of {n} chars truncated to {keep}")
        return {
            "_agentlog": "truncated",
            "length": n,
            "sha256": _sha256_text(s),
            "preview": preview,
        }

    def key_text(self, key: Any, path: _Path) -> str:
        """A dict key as a str; ``path`` is the dict's. Noted when it was not a plain str."""
        t: type = type(key)
        what = []
        if t is str:
            s = key
        else:
            kind = _kind(t)
            if kind == K_STR:
                s = str.__str__(key)  # the text itself; a subclass's __str__ is not called
            elif kind == K_SECRET:
                s = REDACTED
            else:
                s = self.key_stand_in(key, t, kind, path)
                what.append(f"{t.__name__} key converted to str")
        if len(s) > self.max_str:
            what.append(f"key of {len(s)} chars cut")
            s = s[: self.max_str] + "…"
        if not s.isascii() and _SURROGATE.search(s):
            what.append("replaced lone surrogates in a key")
            s = fix_surrogates(s)
        s = scrub(s)
        for w in what:
            self.note((path, s), w)
        return s

    def key_stand_in(self, key: Any, t: type, kind: int, path: _Path) -> str:
        """The text of a key that is not a str; never raises, runs a key's code once."""
        # Memoised under ~id (ids of values are >= 0), so a key seen again is not re-run.
        seen = self.memo.get(~id(key))
        if seen is not None and seen[0] is key:
            return seen[1]  # type: ignore[return-value]
        try:
            if kind == K_INT and t is not bool:
                s = _int_text(int.__int__(key))
            elif t is bool or kind in (K_ENUM, K_STR_LIKE) or t is float or key is None:
                s = str(key)
            else:
                s = repr(key.__wrapped__ if kind == K_PROXY else key)
        except Exception as exc:  # noqa: BLE001 - a hostile key loses its text, not its dict
            s = self.fail(key, path, exc)
        self.memo[~id(key)] = (key, s)
        self.after_user_code(path)
        return s

    def after_user_code(self, path: _Path) -> None:
        # A slow repr or model_dump counts against the budget at once, not 64 nodes later.
        self.check_time(path)

    # -- the loop ---------------------------------------------------------------
    def run(self, value: object, path: _Path) -> object:
        holder: list[object] = [None]
        stack: list[tuple[Any, ...]] = [(value, path, 0, holder, 0)]
        pop = stack.pop
        ancestors = self.ancestors
        while stack:
            task = pop()
            if task[0] is _EXIT:
                ancestors.discard(task[1])
                continue
            value, path, depth, target, key = task
            try:
                target[key] = self.convert(value, path, depth, stack)
            except Exception as exc:  # noqa: BLE001 - one bad node must not lose the rest
                target[key] = self.fail(value, path, exc)
        if self.dropped_notes and self.notes is not None:
            self.notes.append(f"…and {self.dropped_notes} more notes")
        return holder[0]

    def convert(self, value: Any, path: _Path, depth: int, stack: list[Any]) -> object:
        """Convert one node; containers push their non-leaf children onto ``stack``."""
        self.nodes += 1
        if self.nodes >= self.next_check:
            self.next_check = self.nodes + 64
            self.check_time(path)
        if self.timed_out:
            return TIME_EXCEEDED
        for _ in range(_MAX_REPLACEMENTS):
            t = type(value)
            if t is str:
                return self.text(value, path)
            if t is int:
                if _INT_MIN <= value < _INT_END:
                    return value
                self.note(path, "int beyond 64 bits kept as string")
                return self.text(_int_text(value), path)
            if t is bool or value is None:
                return value
            if t is float:
                return self.float_(value, path)
            if t is dict:
                return self.mapping(value, dict.items(value), len(value), path, depth, stack)
            if t is list or t is tuple:
                return self.sequence(value, value, len(value), path, depth, stack)
            replaced = self.other(value, t, path, depth, stack)
            if type(replaced) is not tuple or replaced[0] is not _NOTHING:
                return replaced
            value = replaced[1]  # a user object's stand-in (model_dump(), repr(), ...)
        return self.fail(value, path, _Unsupported("too many nested stand-ins"))

    def float_(self, value: float, path: _Path) -> object:
        if math.isfinite(value):
            return value
        text = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        self.note(path, f"non-finite float kept as {text!r}")
        return text

    def leaf(self, v: Any, path: _Path, key: str | int, depth: int) -> object:
        """Convert a child in place if it is a scalar or a small flat container.

        Returns _NOTHING when the child needs a task of its own. ``depth`` is the child's.
        """
        t = type(v)
        if t is str:
            if len(v) <= self.small and v.isascii():
                self.remaining -= len(v)
                return scrub(v)
            return self.text(v, (path, key))
        if t is int:
            if _INT_MIN <= v < _INT_END:
                return v
            self.note((path, key), "int beyond 64 bits kept as string")
            return self.text(_int_text(v), (path, key))
        if t is bool or v is None:
            return v
        if t is float:
            return self.float_(v, (path, key))
        # A flat container (a chat message, a list of numbers) cannot hold a cycle and
        # needs no task of its own: converting it here saves most of the walker's cost.
        if (
            (t is dict or t is list)
            and len(v) <= _FLAT
            and depth < self.limits.max_depth
            and all(type(x) in _SCALARS for x in (dict.values(v) if t is dict else v))
        ):
            if t is list:
                return self.sequence(v, v, len(v), (path, key), depth, [])
            return self.mapping(v, dict.items(v), len(v), (path, key), depth, [])
        return _NOTHING

    def enter(self, value: object, path: _Path, depth: int) -> str | None:
        """Refuse a container that is its own ancestor or too deep."""
        if id(value) in self.ancestors:
            self.note(path, "cyclic reference")
            return CYCLIC
        if depth >= self.limits.max_depth:
            self.note(path, "nesting deeper than max_depth")
            return MAX_DEPTH
        return None

    def push(self, value: object, pending: list[Any], stack: list[Any]) -> None:
        self.nodes += len(pending)
        self.ancestors.add(id(value))
        stack.append((_EXIT, id(value), value))  # holds ``value`` so its id stays unique
        pending.reverse()
        stack.extend(pending)

    def mapping(
        self,
        value: object,
        items: Any,
        n: int,
        path: _Path,
        depth: int,
        stack: list[Any],
    ) -> object:
        refused = self.enter(value, path, depth)
        if refused is not None:
            return refused
        out: dict[str, object] = {}
        pending: list[Any] = []
        str_keys: set[str] | None = None
        max_items = self.max_items
        count = 0
        for k, v in items:
            if count >= max_items:
                break
            count += 1
            if type(k) is str and len(k) <= _SMALL_STR and k.isascii():
                name = k if len(k) < _SCRUB_MIN else scrub(k)
            else:
                name = self.key_text(k, path)
                if type(k) is not str:
                    if str_keys is None:
                        str_keys = {x for x, _ in _pairs(value, items) if type(x) is str}
                    if name in str_keys:
                        name = self.rename(name, k, out, str_keys, path)
            if name in out:
                name = self.rename(name, k, out, str_keys or set(), path)
            if type(v) is str:  # the commonest value, converted here without a call
                if v and is_secret_key(name):
                    out[name] = REDACTED
                elif len(v) <= self.small and v.isascii():
                    self.remaining -= len(v)
                    out[name] = v if len(v) < _SCRUB_MIN else scrub(v)
                else:
                    out[name] = self.text(v, (path, name))
                continue
            if is_secret_key(name) and not _is_empty(v):
                out[name] = REDACTED
                continue
            done = self.leaf(v, path, name, depth + 1)
            if done is _NOTHING:
                out[name] = None
                pending.append((v, (path, name), depth + 1, out, name))
            else:
                out[name] = done
        if n > count:
            out[TRUNCATED_ITEMS_KEY] = n
            self.note(path, f"{n} entries, kept the first {count}")
        if pending:
            self.push(value, pending, stack)
        return out

    def rename(
        self, name: str, key: object, out: dict[str, object], taken: set[str], path: _Path
    ) -> str:
        """Disambiguate a key that collides after conversion: ``"1"`` then ``"1 (int)"``."""
        base = f"{name} ({type(key).__name__})"
        new, i = base, 2
        while new in out or new in taken:
            new, i = f"{base} {i}", i + 1
        self.note((path, new), f"key {_plain_text(name, 40)!r} collided; renamed")
        return new

    def sequence(
        self,
        value: object,
        seq: Any,
        n: int,
        path: _Path,
        depth: int,
        stack: list[Any],
    ) -> object:
        refused = self.enter(value, path, depth)
        if refused is not None:
            return refused
        m = min(n, self.max_items)
        items = seq[:m] if type(seq) is list or type(seq) is tuple else list(islice(seq, m))
        out: list[object] = [None] * len(items)
        pending: list[Any] = []
        for i, v in enumerate(items):
            done = self.leaf(v, path, i, depth + 1)
            if done is _NOTHING:
                pending.append((v, (path, i), depth + 1, out, i))
            else:
                out[i] = done
        if n > len(items):
            out.append(f"<… {n - len(items)} more items>")
            self.note(path, f"{n} items, kept the first {len(items)}")
        if pending:
            self.push(value, pending, stack)
        return out

    # -- everything that is not a plain JSON type ---------------------------------
    def other(self, value: Any, t: type, path: _Path, depth: int, stack: list[Any]) -> object:
        """Convert ``value``, or return ``(_NOTHING, stand_in)`` to convert a stand-in."""
        kind = _kind(t)
        if kind == K_SECRET:
            return REDACTED
        if kind == K_PROXY:
            return (_NOTHING, value.__wrapped__)
        if kind == K_ENUM:
            return (_NOTHING, value._value_)  # the instance attribute, not the property
        if kind == K_STR:
            return self.text(str.__str__(value), path)
        if kind == K_INT:
            return (_NOTHING, int.__int__(value))
        if kind == K_FLOAT:
            return self.float_(float.__float__(value), path)
        if kind == K_DICT:
            n = dict.__len__(value)
            items = list(islice(dict.items(value), self.max_items))
            return self.mapping(value, items, n, path, depth, stack)
        if kind == K_SEQ:
            is_list = issubclass(t, list)
            it = list.__iter__(value) if is_list else tuple.__iter__(value)
            n = list.__len__(value) if is_list else tuple.__len__(value)
            return self.sequence(value, it, n, path, depth, stack)
        if kind == K_SET:
            return self.set_(value, path, depth, stack)
        if kind == K_ITERABLE:
            return self.sequence(value, iter(value), len(value), path, depth, stack)
        if kind == K_BYTES:
            return self.bytes_(value, path)
        if kind == K_DATETIME:
            if value.tzinfo is None:
                self.note(path, "naive datetime")
            return self.text(value.isoformat(), path)
        if kind == K_DATE_OR_TIME:
            return self.text(value.isoformat(), path)
        if kind == K_TIMEDELTA:
            return value.total_seconds()
        if kind == K_STR_LIKE:
            return self.text(str(value), path)
        if kind == K_ITERATOR:
            # Only built-in generators have a name worth reading without running user code.
            name = getattr(value, "__qualname__", None) if issubclass(t, _GENERATORS) else None
            label = f"{t.__name__} {name}" if isinstance(name, str) else t.__name__
            self.note(path, "iterator not consumed")
            return _plain_text(f"<{label}>")
        if kind == K_CLASS:
            return _plain_text(f"<class {_qualname(value)}>")
        if kind == K_MODULE:
            return _plain_text(f"<module {dict.get(value.__dict__, '__name__', '?')}>")
        if kind == K_FUNCTION:
            return self.function(value)

        # From here on, user code may run: call it once, remember the stand-in.
        memo = self.memo.get(id(value))
        if memo is not None and memo[0] is value:
            return (_NOTHING, memo[1])
        try:
            stand_in = self.stand_in(value, t, kind, path)
        except Exception as exc:  # noqa: BLE001 - a hostile repr/model_dump/...: placeholder
            stand_in = self.fail(value, path, exc)
        self.memo[id(value)] = (value, stand_in)  # a failure is remembered too: never call twice
        return (_NOTHING, stand_in)

    def stand_in(self, value: Any, t: type, kind: int, path: _Path) -> object:
        """The JSON-ish stand-in for a user object (may call its code once)."""
        try:
            if kind == K_EXCEPTION:
                return _plain_text(f"{t.__name__}: {value}", self.max_str)
            if kind == K_PYDANTIC2:
                try:
                    return value.model_dump(mode="json", warnings=False)
                except Exception:  # noqa: BLE001 - fields pydantic cannot dump: use __dict__
                    self.note(path, "model_dump failed; used its fields")
                    return self.attrs(value, t, path) or f"<{t.__name__}>"
            if kind == K_PYDANTIC1:
                return value.dict()
            if kind == K_DATACLASS:
                return self.dataclass_(value, t)
            if kind == K_NP_SCALAR:
                return value.item()
            if kind == K_NP_ARRAY:
                return self.ndarray(value, path)
            if kind == K_DATAFRAME:
                self.note(path, "DataFrame summarised")
                head = value.head(5).to_dict(orient="records")
                return {
                    "_agentlog": "dataframe",
                    "shape": list(value.shape),
                    "columns": [str(c) for c in list(value.columns)[: self.max_items]],
                    "head": head,
                }
            if kind == K_SERIES:
                self.note(path, "Series summarised")
                return {
                    "_agentlog": "series",
                    "length": len(value),
                    "name": value.name,
                    "dtype": str(value.dtype),
                    "head": value.head(5).tolist(),
                }
            if kind == K_IMAGE:
                self.note(path, "image summarised")
                return {"_agentlog": "image", "size": list(value.size), "mode": str(value.mode)}
            if kind == K_MAPPING:
                items = list(islice(value.items(), self.max_items + 1))
                return dict(items) if _all_hashable_keys(items) else items
            attrs = self.attrs(value, t, path)
            if attrs is not None:
                return attrs
            return repr(value)
        finally:
            self.after_user_code(path)

    def attrs(self, value: object, t: type, path: _Path) -> dict[str, object] | None:
        """``{"_type": ..., **public __dict__ entries}``, or None if there are none."""
        try:
            d = object.__getattribute__(value, "__dict__")
        except AttributeError:
            return None
        if type(d) is not dict:
            return None
        public = {
            k: v
            for k, v in islice(dict.items(d), self.max_items * 4)
            if type(k) is str and not k.startswith("_")
        }
        if not public:
            return None
        return {"_type": _qualname(t), **public}

    def dataclass_(self, value: object, t: type) -> dict[str, object]:
        # dataclasses.asdict deep-copies everything; read each field once instead.
        try:
            own = object.__getattribute__(value, "__dict__")
        except AttributeError:
            own = {}
        out: dict[str, object] = {}
        for f in dataclasses.fields(t):
            if not f.repr:
                continue  # the author hid it from repr: often a secret or a blob
            if f.name in own:
                out[f.name] = own[f.name]
                continue
            for klass in t.__mro__:  # a __slots__ field: read through its member descriptor
                desc = klass.__dict__.get(f.name)
                if desc is not None:
                    if type(desc) is types.MemberDescriptorType:
                        with contextlib.suppress(AttributeError):  # an unset slot
                            out[f.name] = desc.__get__(value, t)
                    break
        return out

    def ndarray(self, value: Any, path: _Path) -> object:
        size = int(value.size)
        if size <= self.max_items and len(value.shape) <= self.limits.max_depth:
            return value.tolist()
        self.note(path, "ndarray summarised")
        return {
            "_agentlog": "ndarray",
            "shape": [int(x) for x in value.shape],
            "dtype": str(value.dtype),
        }

    def set_(self, value: Any, path: _Path, depth: int, stack: list[Any]) -> object:
        n = len(value)
        items: list[Any]
        if n <= self.max_items * 10 and all(type(x) in _SORTABLE for x in value):
            # Sort only where ordering runs no user code; keeps output deterministic.
            items = sorted(value, key=_sort_key)[: self.max_items]
        else:
            items = list(islice(value, self.max_items))
        return self.sequence(value, items, n, path, depth, stack)

    def bytes_(self, value: Any, path: _Path) -> dict[str, object]:
        view = memoryview(value)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        view = view.cast("B")
        self.note(path, "bytes summarised")
        return {
            "_agentlog": "bytes",
            "length": view.nbytes,
            "sha256": hashlib.sha256(view).hexdigest(),
            "preview_b64": base64.b64encode(view[:_PREVIEW_BYTES]).decode("ascii"),
        }

    def function(self, value: Any) -> str:
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        module = getattr(value, "__module__", None)
        if not isinstance(name, str):
            return _plain_text(f"<{type(value).__name__}>")
        if isinstance(module, str) and module != "builtins":
            name = f"{module}.{name}"
        return _plain_text(f"<function {name}>")


_SORTABLE = frozenset({str, int, float, bytes})
_SCALARS = frozenset({str, int, float, bool, type(None)})
_FLAT = 32  # longest container converted in place by ``leaf``
_GENERATORS = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)


def _is_empty(v: object) -> bool:
    """None, a bool or "": kept under a secret-looking key, since they hide nothing."""
    return v is None or v is True or v is False or (type(v) is str and not v)


def _sort_key(x: object) -> tuple[str, object]:
    return (type(x).__name__, x)


def _all_hashable_keys(items: list[Any]) -> bool:
    return all(type(kv) is tuple and len(kv) == 2 for kv in items) and all(
        type(k) in (str, int, float, bool, type(None)) for k, _ in items
    )


def _pairs(value: object, items: Any) -> Any:
    """The key/value pairs of a mapping, again, without running user code."""
    if type(value) is dict:
        return dict.items(value)
    if isinstance(items, list):
        return items
    return ()


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------
def to_jsonable(
    value: object, limits: Limits, notes: list[str] | None = None, path: str = "$"
) -> object:
    """``value`` as JSON-native data within ``limits``; lossy steps are added to ``notes``."""
    v: Any = value
    t = type(v)
    # The cheapest cases first: most of what gets logged is one of these.
    if t is str:
        n = len(v)
        if n <= limits.max_str and n <= limits.max_total and v.isascii():
            return scrub(v)
    elif t is int:
        if _INT_MIN <= v < _INT_END:
            return v
    elif t is bool or v is None or (t is float and v - v == 0.0):  # NaN, ±inf: v - v is NaN
        return v
    if t is dict or t is list or t is tuple:
        # Plain JSON-shaped data needs no notes and no walker; anything unusual bails out
        # to the walker, which starts over. A nearly full stack bails out too.
        try:
            return _plain(v, 0, limits, [limits.max_total, _PLAIN_NODES])
        except Exception:  # noqa: BLE001 - _Bail, RecursionError, a dict changed meanwhile...
            pass
    try:
        return _Walker(limits, notes).run(value, path)
    except Exception as exc:  # noqa: BLE001 - never raise into the host
        try:
            text = _plain_text(f"<unserializable {t.__name__}: {type(exc).__name__}>")
            if notes is not None:
                notes.append(f"{_plain_text(path)}: {text}")
        except Exception:  # noqa: BLE001 - e.g. RecursionError again, on a nearly full stack
            text = "<unserializable>"
        return text


class _Bail(Exception):
    """Not plain JSON-shaped data: let the walker convert it."""


_PLAIN_NODES = 2_000  # past this, the walker's time budget must be watching


def _plain(v: Any, depth: int, limits: Limits, acc: list[int]) -> object:
    """Convert dicts/lists of str keys, strs, plain numbers; raise _Bail on anything else.

    The recursion is bounded by ``limits.max_depth``; a cycle just reaches it and bails.
    ``acc`` is [characters left in the budget, nodes left], settled once per container.
    """
    n = len(v)
    acc[1] -= n
    if depth >= limits.max_depth or n > limits.max_items or acc[1] < 0:
        raise _Bail
    max_str = limits.max_str
    used = 0
    if type(v) is dict:
        out: dict[str, object] = {}
        for k, x in v.items():
            if type(k) is not str or len(k) > _SMALL_STR or not k.isascii():
                raise _Bail
            name = k if len(k) < _SCRUB_MIN else scrub(k)
            tx = type(x)
            if tx is str:
                if x and is_secret_key(name):
                    out[name] = REDACTED
                    continue
                m = len(x)
                if m > max_str or (not x.isascii() and _SURROGATE.search(x)):
                    raise _Bail
                used += m
                out[name] = x if m < _SCRUB_MIN else scrub(x)
            elif tx is bool or x is None:
                out[name] = x
            elif is_secret_key(name):
                out[name] = REDACTED
            elif tx is int:
                if not _INT_MIN <= x < _INT_END:
                    raise _Bail
                out[name] = x
            elif tx is float:
                if x - x != 0.0:
                    raise _Bail
                out[name] = x
            elif tx is dict or tx is list or tx is tuple:
                out[name] = _plain(x, depth + 1, limits, acc)
            else:
                raise _Bail
        if len(out) != n:
            raise _Bail  # two keys scrubbed to the same text
        acc[0] -= used
        if acc[0] < 0:
            raise _Bail
        return out
    items: list[object] = []
    for x in v:
        tx = type(x)
        if tx is str:
            m = len(x)
            if m > max_str or (not x.isascii() and _SURROGATE.search(x)):
                raise _Bail
            used += m
            items.append(x if m < _SCRUB_MIN else scrub(x))
        elif tx is bool or x is None:
            items.append(x)
        elif tx is int:
            if not _INT_MIN <= x < _INT_END:
                raise _Bail
            items.append(x)
        elif tx is float:
            if x - x != 0.0:
                raise _Bail
            items.append(x)
        elif tx is dict or tx is list or tx is tuple:
            items.append(_plain(x, depth + 1, limits, acc))
        else:
            raise _Bail
    acc[0] -= used
    if acc[0] < 0:
        raise _Bail
    return items


def dumps(obj: object, *, option: int = 0) -> bytes:
    """``orjson.dumps(obj)``; a value orjson refuses is converted first. Never raises."""
    try:
        return orjson.dumps(obj, option=option)
    except Exception:  # noqa: BLE001 - orjson.JSONEncodeError is a TypeError
        pass
    try:
        return orjson.dumps(to_jsonable(obj, _GENEROUS), option=option)
    except Exception:  # noqa: BLE001 - unreachable in theory; never raise into the host
        return b'"<unserializable>"'
