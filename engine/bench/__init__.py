"""`copyspec bench`: CopySpec against greedy decoding and HF prompt lookup, identity first."""

from __future__ import annotations

from collections.abc import Iterable

METHODS = ("greedy", "pld", "copy", "copy-fixed", "draft", "copy+draft")
"""Every method the bench can run; kept here, free of torch, so the flags are checked at once."""
DEFAULT_METHODS = ("greedy", "pld", "copy", "copy-fixed")


def check_methods(names: Iterable[str]) -> None:
    """Raise ValueError naming every unknown method."""
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(
            f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}"
        )
