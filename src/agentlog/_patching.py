"""Method swaps that can be undone exactly: what ``install`` puts in, ``uninstall`` takes out.

Plain attribute swaps rather than wrapt proxies: importing wrapt costs more than agentlog's
whole import budget, and a swap is what ``inspect`` and pickling see least of.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MARK = "__agentlog_patched__"


class Patches:
    """A set of swaps; ``remove`` puts every original back, newest first."""

    def __init__(self) -> None:
        self.applied: list[tuple[Any, str, Any]] = []

    def apply(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        """Replace ``owner.name`` (its own attribute) with ``make(original)``, once."""
        original = owner.__dict__.get(name)
        if original is None or getattr(original, MARK, False):
            return
        patched = make(original)
        setattr(patched, MARK, True)
        setattr(owner, name, patched)
        self.applied.append((owner, name, original))

    def remove(self) -> None:
        while self.applied:
            owner, name, original = self.applied.pop()
            setattr(owner, name, original)
