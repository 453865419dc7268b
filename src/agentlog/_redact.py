"""Secret scrubbing: key names that hold secrets, and secrets inside any string.

``scrub`` runs on every string agentlog records, so it is built for the common case of
"nothing to hide": one precompiled regex whose every branch starts with a literal
anchor character, so that ``re`` can skip quickly to the few places where a secret
could begin. Most anchors are characters that are rare in prose (``-``, ``_``, ``?``,
``&``, ``:``); the part of a secret before its anchor is checked with a fixed-width
look-behind and removed when the match is replaced. Known secret values (from the
environment or ``add_secret_values``) are anchored the same way, on their rarest
character.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Iterable

REDACTED: str = "[REDACTED]"

# ---------------------------------------------------------------------------
# Key names
# ---------------------------------------------------------------------------

# Last word of a key name that marks the value as a secret whatever comes before it.
_SECRET_LAST_WORDS = frozenset(
    {
        "apikey",
        "auth",
        "authorization",
        "bearer",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "passphrase",
        "passwd",
        "password",
        "pwd",
        "secret",
        "secrets",
    }
)
# Words that make ``<word>_key`` a secret (``api_key``, ``private_key``...). A bare
# ``key`` or a ``sort_key`` / ``cache_key`` is ordinary data.
_KEY_QUALIFIERS = frozenset(
    {
        "access",
        "account",
        "api",
        "auth",
        "client",
        "encryption",
        "license",
        "master",
        "private",
        "secret",
        "service",
        "session",
        "signing",
        "subscription",
    }
)
# ``<word>_token`` that is not a credential: tokenizer specials, paging cursors and
# token counts written in the singular.
_TOKEN_NOT_SECRET = frozenset(
    {
        "bos",
        "cancel",
        "cancellation",
        "cls",
        "continuation",
        "end",
        "eos",
        "input",
        "mask",
        "max",
        "min",
        "n",
        "next",
        "num",
        "output",
        "pad",
        "page",
        "prev",
        "previous",
        "sep",
        "special",
        "start",
        "stop",
        "sync",
        "total",
        "unk",
    }
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_KEY_SPLIT = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True when a dict key, header or keyword named ``key`` holds a secret."""
    words = [w for w in _KEY_SPLIT.split(_CAMEL.sub("_", key).lower()) if w]
    if not words:
        return False
    last = words[-1]
    if last in _SECRET_LAST_WORDS or "password" in words or "passwd" in words:
        return True
    before = words[-2] if len(words) > 1 else ""
    if last == "key":
        return before in _KEY_QUALIFIERS
    if last.endswith("key") and last[:-3] in _KEY_QUALIFIERS:  # apikey, privatekey
        return True
    if last.endswith("token"):  # ``tokens`` (a count) never gets here
        stem = last[:-5] or before
        return stem not in _TOKEN_NOT_SECRET
    return False


# ---------------------------------------------------------------------------
# Secrets inside strings
# ---------------------------------------------------------------------------

_TOKEN_CHARS = "A-Za-z0-9_-"
_QUERY_WORDS = [
    "key",
    "api_key",
    "api-key",
    "apikey",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "session_token",
    "sig",
    "signature",
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "client_secret",
    "auth",
    "code",
    "jwt",
    "private_key",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
]


def _spellings(word: str) -> set[str]:
    # Case-sensitive alternatives let ``re`` skip a branch on its first character, which
    # an ignore-case group cannot; these are the spellings URLs actually use.
    parts = re.split(r"([_-])", word)
    title = "".join(p.capitalize() for p in parts)
    camel = parts[0] + "".join(p.capitalize() for p in parts[2::2])
    return {word, word.upper(), title, camel}


_QUERY_NAMES = "|".join(
    sorted({re.escape(s) for w in _QUERY_WORDS for s in _spellings(w)}, key=lambda s: (-len(s), s))
)
_QUERY_NAME_SHAPE = r"(?=[A-Za-z][A-Za-z0-9_.-]{2,40}=)"  # cheap test before the long list

# (anchor char, regex after the anchor with ``{g}`` where the secret group opens,
#  chars of the secret that precede the anchor). The named group spans exactly the
# part that is replaced; ``back`` extends it backwards over the look-behind.
_SHAPES: tuple[tuple[str, str, int], ...] = (
    # sk-… keys (OpenAI, Anthropic sk-ant-…, DeepSeek, canaries), even glued to a word
    # ("xsk-…"): a run holding a digit and either an upper-case letter or 32+ characters,
    # which random keys have and hyphenated prose ("task-force-2024-plan") has not.
    (
        "-",
        rf"(?<=sk-)(?=[A-Za-z_-]*[0-9]){{g}}"
        rf"(?:(?=[a-z0-9_-]*[A-Z])[{_TOKEN_CHARS}]{{16,}}|[{_TOKEN_CHARS}]{{32,}}))",
        3,
    ),
    # Slack xoxb-/xoxp-/… tokens.
    ("-", r"(?<=xox[baprs]-){g}[A-Za-z0-9-]{10,})", 5),
    # GitHub ghp_/gho_/ghs_/ghu_/ghr_ tokens and fine-grained github_pat_ tokens.
    ("_", r"(?<=gh[pousr]_){g}[A-Za-z0-9]{30,})", 4),
    ("_", r"(?<=github_pat_){g}[A-Za-z0-9_]{20,})", 11),
    # HuggingFace hf_… and Groq gsk_… keys.
    ("_", r"(?<=hf_){g}[A-Za-z0-9]{30,})", 3),
    ("_", r"(?<=gsk_){g}[A-Za-z0-9]{30,})", 4),
    # AWS access key ids, Google API keys.
    ("A", r"{g}(?:[KS]IA[0-9A-Z]{16}|Iza[0-9A-Za-z_-]{35}))", 1),
    # JSON Web Tokens: anchored on the J of the header's ``eyJ``.
    ("J", r"(?<=eyJ){g}[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})", 3),
    # Authorization schemes: the word stays, the credential goes.
    ("B", r"earer[ \t]+{g}[A-Za-z0-9._~+/=-]{8,})", 0),
    ("b", r"earer[ \t]+{g}[A-Za-z0-9._~+/=-]{8,})", 0),
    # Basic: base64 has an upper-case letter or a digit after its first character,
    # which an English word ("Basic authentication") does not.
    ("B", r"asic[ \t]+(?=[A-Za-z][a-z]*[A-Z0-9+/=]){g}[A-Za-z0-9+/]{8,}={0,2})", 0),
    # URL userinfo: scheme://user:pass@host -> scheme://[REDACTED]@host
    (":", r"//{g}[^\s/?#@]{1,256})@", 0),
    # URL query parameters whose name says secret: ?key=abc -> ?key=[REDACTED]
    ("?", rf"{_QUERY_NAME_SHAPE}(?:{_QUERY_NAMES})={{g}}[^&#\s\"'<>]+)", 0),
    ("&", rf"(?:amp;)?{_QUERY_NAME_SHAPE}(?:{_QUERY_NAMES})={{g}}[^&#\s\"'<>]+)", 0),
)

_ENV_NAME = re.compile(r"(?:.*_)?(?:API_?KEY|KEY|TOKEN|SECRET|CREDENTIALS?)|.*PASS(?:WORD|WD).*")
_MIN_VALUE_LEN = 8
_MAX_VALUE_LEN = 4096
# Lower score = rarer in ordinary text = a better anchor for a known value.
_COMMON = " etaoinshrdlcumwfgypbvkjxqz"


def _rarity(ch: str) -> int:
    pos = _COMMON.find(ch)
    if pos >= 0:
        return 100 - pos
    if ch in "\n\t.,'\"":
        return 100
    if ch.isdigit() or ch in "-_:/=":
        return 50
    return 0


_lock = threading.Lock()
_extra: set[str] = set()
_env_values: frozenset[str] | None = None
# (pattern, back-offset by group name, known values); None until first use or a change.
_Compiled = tuple[re.Pattern[str], dict[str, int], tuple[str, ...]]
_compiled: _Compiled | None = None


def _env_secret_values() -> frozenset[str]:
    found = set()
    for name, value in list(os.environ.items()):
        if len(value) >= _MIN_VALUE_LEN and _ENV_NAME.fullmatch(name.upper()):
            found.add(value)
    return frozenset(found)


def _build() -> _Compiled:
    global _compiled, _env_values
    with _lock:
        if _compiled is not None:
            return _compiled
        if _env_values is None:
            _env_values = _env_secret_values()
        branches: dict[str, list[str]] = {}
        back: dict[str, int] = {}
        for i, (anchor, body, extra) in enumerate(_SHAPES):
            name = f"s{i}"
            branches.setdefault(anchor, []).append(body.replace("{g}", f"(?P<{name}>"))
            back[name] = extra
        values = sorted(
            {v for v in _env_values | _extra if _MIN_VALUE_LEN <= len(v) <= _MAX_VALUE_LEN},
            key=lambda v: (-len(v), v),  # longest first: a value holding another goes whole
        )
        for i, value in enumerate(values):
            at = min(range(len(value)), key=lambda j: _rarity(value[j]))
            name = f"v{i}"
            look = f"(?<={re.escape(value[: at + 1])})" if at else ""
            branches.setdefault(value[at], []).append(
                f"{look}(?P<{name}>{re.escape(value[at + 1 :])})"
            )
            back[name] = at + 1
        # Each top-level branch starts with a literal, so ``re`` scans for the anchor
        # characters as a set instead of trying every branch at every position.
        pattern = "|".join(
            re.escape(anchor) + "(?:" + "|".join(parts) + ")" for anchor, parts in branches.items()
        )
        _compiled = (re.compile(pattern), back, tuple(values))
        return _compiled


def scrub(s: str) -> str:
    """Replace secrets inside ``s``; return ``s`` itself when there are none."""
    if len(s) < _MIN_VALUE_LEN:
        return s
    compiled = _compiled or _build()
    pattern = compiled[0]
    m = pattern.search(s)
    if m is None:
        return s
    # Something is there (the rare path): collect every span to hide, then cut once.
    back = compiled[1]
    spans: list[tuple[int, int]] = []
    while m is not None:
        group = m.lastgroup or ""
        spans.append((m.start(group) - back.get(group, 0), m.end(group)))
        m = pattern.search(s, m.end())
    # A known value whose anchor fell inside an earlier match was skipped by the search
    # above; find each one literally so that no tail of it can survive.
    for value in compiled[2]:
        i = s.find(value)
        while i >= 0:
            spans.append((i, i + len(value)))
            i = s.find(value, i + 1)
    spans.sort()
    pieces: list[str] = []
    last = 0
    for start, end in spans:
        if end <= last:
            continue
        if start > last or not pieces:
            pieces.append(s[last:start])
            pieces.append(REDACTED)
        last = end
    pieces.append(s[last:])
    return "".join(pieces)


def add_secret_values(values: Iterable[str]) -> None:
    """Treat each of ``values`` (8 chars or more) as a secret wherever it appears."""
    global _compiled
    new = {v for v in values if isinstance(v, str) and _MIN_VALUE_LEN <= len(v) <= _MAX_VALUE_LEN}
    with _lock:
        if new - _extra:
            _extra.update(new)
            _compiled = None


def refresh_env() -> None:
    """Re-read secret values from ``os.environ`` (say, after ``load_dotenv()``)."""
    global _compiled, _env_values
    values = _env_secret_values()
    with _lock:
        if values != _env_values:
            _env_values = values
            _compiled = None


def _reset_for_tests() -> None:
    """Forget known values; the environment is read again on next use."""
    global _compiled, _env_values
    with _lock:
        _extra.clear()
        _env_values = None
        _compiled = None
