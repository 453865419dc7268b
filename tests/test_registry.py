"""The adapter registry: one minimum-version table, and packages it must leave alone.

Covers A6: an SDK older than the oldest version its adapter knows (or a module of that name
    from another distribution) is left alone, quietly: no patch, no error, no warning; an
    SDK that lacks one of the methods its adapter patches (``Chat.stream`` removed) still
    has the others recorded. Deliberately without a warning: a method that a version does
    not have is a normal difference, not a fault worth an error_log entry. A new keyword
    argument passes through every wrapper as is (they take ``*args, **kwargs``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentlog import integrations

# A ``cohere`` 4.0 first on sys.path: its distribution metadata says 4.0, below the table's 5.
OLD_SDK = """\
import json, sys
from pathlib import Path
root = Path("site")
(root / "cohere").mkdir(parents=True)
(root / "cohere" / "__init__.py").write_text("class ClientV2:\\n    def chat(self): return 1\\n")
info = root / "cohere-4.0.dist-info"
info.mkdir()
(info / "METADATA").write_text("Metadata-Version: 2.1\\nName: cohere\\nVersion: 4.0\\n")
sys.path.insert(0, str(root))
import agentlog
import cohere
print(json.dumps({"adapter": "agentlog.integrations.cohere" in sys.modules,
                  "file": cohere.__file__, "chat": cohere.ClientV2().chat()}))
"""


METHOD_REMOVED = """\
import json, sys
sys.path.insert(0, {tests!r})
from mistralai.client import chat
del chat.Chat.stream  # a version without it
import agentlog
from fake_mistral import FakeMistral, mistral_client

with FakeMistral() as srv, mistral_client(srv) as client:
    out = client.chat.complete(model="mistral-small-latest",
                               messages=[{{"role": "user", "content": "hi"}}])
    print(json.dumps({{"requests": srv.count(), "has_stream": hasattr(chat.Chat, "stream"),
                      "answer": out.choices[0].message.content is not None}}))
"""


def test_a_method_the_sdk_lacks_leaves_the_others_recorded(run: Any) -> None:
    result = run(METHOD_REMOVED.format(tests=str(Path(__file__).parent)))
    assert result.returncode == 0, result.stderr
    assert result.host_stderr() == ""
    out = json.loads(result.stdout)
    assert out == {"requests": 1, "has_stream": False, "answer": True}
    (doc,) = result.docs()
    assert doc["metadata"]["totals"]["llm_calls"] == 1
    assert doc["error_log"] == []


def test_an_sdk_older_than_the_table_is_left_alone(run: Any) -> None:
    result = run(OLD_SDK)
    assert result.returncode == 0, result.stderr
    assert result.host_stderr() == ""
    out = json.loads(result.stdout)
    assert out["file"].endswith("site/cohere/__init__.py")  # the old one was imported
    assert out == {**out, "adapter": False, "chat": 1}
    (doc,) = result.docs()
    assert doc["error_log"] == []


@pytest.mark.parametrize(("text", "parsed"), [
    ("1.40.0", (1, 40, 0)), ("0.12.42", (0, 12, 42)), ("2.0.0rc1", (2, 0, 0)),
    ("1.7", (1, 7)), ("3.6.1.post2", (3, 6, 1)), ("dev", ()),
])
def test_versions_compare_by_their_numeric_parts(text: str, parsed: tuple[int, ...]) -> None:
    assert integrations._version(text) == parsed


def test_every_table_entry_names_a_registered_sdk() -> None:
    """A minimum version for an SDK nobody adapts would never be checked."""
    assert set(integrations.MIN_VERSIONS) <= set(integrations.ADAPTERS)
    for adapters in integrations.ADAPTERS.values():
        for adapter in adapters:
            assert (Path(integrations.__file__).parent / f"{adapter}.py").is_file(), adapter
