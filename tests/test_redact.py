"""Secret scrubbing (TESTPLAN D1, the string and key-name half).

Covers D1: sk-CANARY keys, known key shapes, Bearer/Basic credentials, URL userinfo and
    secret query parameters, and secret env values are scrubbed out of any text.
"""

from __future__ import annotations

import timeit
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlog import _redact
from agentlog._redact import REDACTED, add_secret_values, is_secret_key, scrub


@pytest.fixture(autouse=True)
def fresh_redactor() -> Iterator[None]:
    """Each test reads the environment afresh and forgets values added by others."""
    _redact._reset_for_tests()
    yield
    _redact._reset_for_tests()


def canary() -> str:
    return f"sk-CANARY-{uuid.uuid4()}"


# -- key names ------------------------------------------------------------------
SECRET_KEYS = [
    "api_key",
    "api-key",
    "apikey",
    "apiKey",
    "API_KEY",
    "x-api-key",
    "X-Api-Key",
    "authorization",
    "Authorization",
    "proxy-authorization",
    "password",
    "db_password",
    "passwd",
    "secret",
    "client_secret",
    "access_token",
    "accessToken",
    "refresh_token",
    "auth_token",
    "session_token",
    "id_token",
    "token",
    "bearer",
    "cookie",
    "Set-Cookie",
    "private_key",
    "credential",
    "credentials",
    "aws_secret_access_key",
    "x-goog-api-key",
    "OPENAI_API_KEY",
    "auth",
]
NOT_SECRET_KEYS = [
    "max_tokens",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "tokens",
    "token_count",
    "max_completion_tokens",
    "maxTokens",
    "prompt_tokens_details",
    "token_type",
    "tokenizer",
    "eos_token",
    "pad_token",
    "next_page_token",
    "key",
    "sort_key",
    "cache_key",
    "role",
    "content",
    "model",
    "author",
    "",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_key_names_are_recognised(key: str) -> None:
    """Header, kwarg and dict-key names that carry credentials are secret keys."""
    assert is_secret_key(key)


@pytest.mark.parametrize("key", NOT_SECRET_KEYS)
def test_token_counts_and_ordinary_names_are_not_secret(key: str) -> None:
    """Token counts (max_tokens, input_tokens...) and ordinary names are not secrets."""
    assert not is_secret_key(key)


def test_secret_key_cache_is_bounded() -> None:
    """is_secret_key is memoised with a bounded cache (it runs on every dict key)."""
    info = is_secret_key.cache_info()
    assert info.maxsize is not None and 0 < info.maxsize <= 100_000


# -- shapes inside strings ----------------------------------------------------------
@pytest.mark.parametrize(
    "template",
    [
        "{c}",
        "my key is {c}.",
        "key={c}",
        '{{"api_key": "{c}"}}',
        "Headers({{'authorization': 'Bearer {c}'}})",
        "Error code: 401 - {{'error': {{'message': 'Incorrect API key provided: {c}'}}}}",
        "Client error '401 Unauthorized' for url 'https://api.example.com/v1?key={c}'",
        "line one\nthen ({c}) and more",
        "glued{c}",
    ],
)
def test_canary_is_scrubbed_wherever_it_appears(template: str) -> None:
    """An sk-CANARY-<uuid> key never survives scrubbing, whatever surrounds it."""
    c = canary()
    out = scrub(template.format(c=c))
    assert c not in out
    assert c.split("-")[-1] not in out  # not even the uuid's tail
    assert REDACTED in out


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-" + "Ab3_" * 12,
        "sk-ant-api03-" + "x9Z-" * 20,
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a1B2" * 9,
        "github_pat_11ABCDEFG0" + "x" * 40,
        "AIza" + "SyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW",
        "xoxb-1234567890-0987654321-abcdefABCDEF",
        "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFU",
    ],
)
def test_well_known_secret_shapes_are_scrubbed(secret: str) -> None:
    """OpenAI/Anthropic, AWS, GitHub, Google, Slack, HuggingFace keys and JWTs are replaced."""
    out = scrub(f"token: {secret} (rotate it)")
    assert secret not in out
    assert out == f"token: {REDACTED} (rotate it)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi_12345", f"Authorization: Bearer {REDACTED}"),
        ("authorization: bearer tok_1234567890", f"authorization: bearer {REDACTED}"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {REDACTED}"),
    ],
)
def test_authorization_schemes_keep_the_word_and_lose_the_credential(
    text: str, expected: str
) -> None:
    """Bearer/Basic credentials are replaced; the scheme stays readable."""
    assert scrub(text) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://api.example.com/v1?key=abc&x=1",
            f"https://api.example.com/v1?key={REDACTED}&x=1",
        ),
        ("https://h/p?x=1&api_key=s3cr3t#frag", f"https://h/p?x=1&api_key={REDACTED}#frag"),
        ("https://h/p?access_token=a.b.c", f"https://h/p?access_token={REDACTED}"),
        ("https://h/cb?code=4/0AX&state=ok", f"https://h/cb?code={REDACTED}&state=ok"),
        (
            "https://b.s3.amazonaws.com/o?X-Amz-Signature=f00d",
            f"https://b.s3.amazonaws.com/o?X-Amz-Signature={REDACTED}",
        ),
        (
            "https://x.blob.core.windows.net/c?sv=2020&sig=abc%3D",
            f"https://x.blob.core.windows.net/c?sv=2020&sig={REDACTED}",
        ),
        ("<a href='/p?x=1&amp;token=t0k'>", f"<a href='/p?x=1&amp;token={REDACTED}'>"),
        ("postgres://admin:hunter22@db:5432/app", f"postgres://{REDACTED}@db:5432/app"),
        ("https://x-access-token:ghs_abc@github.com/o/r", f"https://{REDACTED}@github.com/o/r"),
    ],
)
def test_url_secrets_are_scrubbed(url: str, expected: str) -> None:
    """URL userinfo and secret-named query parameters are replaced; the rest stays."""
    assert scrub(url) == expected


def test_environment_secret_values_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values of *_API_KEY / *_TOKEN / *PASSWORD* variables are scrubbed from any text."""
    key, token, pw = "zq7CANARYkeyvalue", "tok.CANARY.8f7e6d", "Pa55-CANARY-word"
    monkeypatch.setenv("ACME_API_KEY", key)
    monkeypatch.setenv("SERVICE_TOKEN", token)
    monkeypatch.setenv("DB_PASSWORD_PLAIN", pw)
    _redact._reset_for_tests()
    out = scrub(f"connect with {key}, {token} and {pw}!")
    assert out == f"connect with {REDACTED}, {REDACTED} and {REDACTED}!"


def test_environment_values_that_are_not_secrets_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other variables and values shorter than 8 characters are not treated as secrets."""
    monkeypatch.setenv("APP_MODE", "production-mode")
    monkeypatch.setenv("TINY_TOKEN", "abc123")
    _redact._reset_for_tests()
    text = "running production-mode with abc123 inside"
    assert scrub(text) is text


def test_refresh_env_picks_up_variables_set_after_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key loaded after the first scrub (say by load_dotenv) is found after refresh_env."""
    scrub("warm the pattern up: nothing here")
    monkeypatch.setenv("LATE_API_KEY", "late-CANARY-1234567")
    _redact.refresh_env()
    assert scrub("use late-CANARY-1234567 now") == f"use {REDACTED} now"


def test_added_secret_values_are_scrubbed() -> None:
    """Values passed to add_secret_values (e.g. a client's api_key) are scrubbed."""
    add_secret_values(["m1stral-CANARY-value", "short"])
    assert scrub("k=m1stral-CANARY-value;") == f"k={REDACTED};"
    assert scrub("a short word") == "a short word"  # under 8 chars: not a secret


def test_overlapping_known_values_are_scrubbed_whole() -> None:
    """A known value that contains another known value is replaced as a whole."""
    add_secret_values(["abcdefgh12", "xxabcdefgh12yy"])
    assert scrub("[xxabcdefgh12yy] [abcdefgh12]") == f"[{REDACTED}] [{REDACTED}]"


def test_known_value_overlapping_a_shape_is_scrubbed_whole() -> None:
    """A known value that starts like an sk- key and goes on past it leaves no tail behind."""
    value = "sk-proj-Abc123def456ghi789!!tail-of-secret"
    add_secret_values([value])
    assert scrub(f"x {value} y") == f"x {REDACTED} y"


def test_adjacent_secrets_are_all_scrubbed() -> None:
    """Several secrets in one string, adjacent or apart, are each replaced."""
    a, b = canary(), canary()
    out = scrub(f"{a} {b}\nBearer abcdefgh123 https://u:p@h/?token=t&sig=s")
    assert a not in out and b not in out
    assert (
        out
        == f"{REDACTED} {REDACTED}\nBearer {REDACTED} https://{REDACTED}@h/?token={REDACTED}&sig={REDACTED}"
    )


# -- false positives and the fast path ------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        "The quick brown fox jumps over the lazy dog.",
        "max_tokens=100, input_tokens: 12",
        "task-management-framework-2024 is a long hyphenated word",
        "Basic authentication is disabled; use Bearer auth",
        "https://example.com/search?q=cats&page=2&keyword=dog",
        "ssh over http://example.com:8080/path works",
        "def f(x_value, max_tokens=3): return {'role': 'user'}",
        "Ünïcödé prose — with an em dash and “quotes”",
        "",
        "short",
    ],
)
def test_ordinary_text_is_returned_as_the_same_object(text: str) -> None:
    """Text without secrets comes back unchanged: the very same object."""
    assert scrub(text) is text


@given(st.text(max_size=200))
def test_unchanged_text_is_always_the_same_object(text: str) -> None:
    """scrub returns its argument itself whenever it replaced nothing."""
    out = scrub(text)
    assert out is text or out != text


@given(
    st.lists(
        st.sampled_from(
            ["sk-CANARY-0a1b2c3d4e5f6a7b8c9d", "Bearer abcdefgh123", "?key=v", " ", "x", "-", "@"]
        )
        | st.text(max_size=8),
        max_size=12,
    )
)
def test_scrub_is_idempotent(parts: list[str]) -> None:
    """Scrubbing twice gives the same text as scrubbing once."""
    once = scrub("".join(parts))
    assert scrub(once) == once
    assert "sk-CANARY-0a1b2c3d4e5f6a7b8c9d" not in once


def test_short_plain_string_is_cheap() -> None:
    """scrub of a short plain ASCII string costs well under a microsecond (loose CI bound)."""
    s = "hello world"
    scrub(s)
    best = min(timeit.repeat(lambda: scrub(s), number=2_000, repeat=5)) / 2_000
    assert best < 2e-6, f"{best * 1e9:.0f} ns per call"


def test_long_text_scales_linearly() -> None:
    """A 100 kB text is scrubbed in well under 10 ms: no backtracking blow-up."""
    filler = "word-with-dashes: key=value & more?x=y " * 2_500
    text = filler[:100_000] + "sk-CANARY-123456789abcdefgh"
    best = min(timeit.repeat(lambda: scrub(text), number=3, repeat=3)) / 3
    assert best < 0.01, f"{best * 1e3:.1f} ms"
    assert scrub(text).endswith(REDACTED)
