"""Turn the model's growing raw answer into the text that goes into the buffer.

The model answers with a fenced block; the fence is stripped, the region's indentation and
line breaks are restored, and whatever could still turn out to be a closing fence or trailing
blank lines is held back, so each shaped text extends the previous one while it streams.
"""

from __future__ import annotations

from dataclasses import dataclass

FENCE = "```"


def strip_fence(raw: str) -> str:
    """The code inside an opening fence (up to a closing one), or the raw answer if unfenced.

    Held back: an unfinished opening fence line, a possible start of the closing fence and
    trailing line breaks, since none of them may end up in the code."""
    stripped = raw.lstrip()
    if stripped.startswith(FENCE):
        newline = stripped.find("\n")
        if newline < 0:
            return ""
        body = stripped[newline + 1 :]
        body = body[:0] if body.startswith(FENCE) else body.split("\n" + FENCE, 1)[0]
    elif FENCE.startswith(stripped):
        return ""
    else:
        body = raw
    trimmed = body.rstrip("`")
    if len(body) - len(trimmed) <= len(FENCE) and (not trimmed or trimmed.endswith("\n")):
        body = trimmed
    return body.rstrip("\n")


@dataclass(frozen=True)
class Shaper:
    """Restores what prompting took away: the region's indent and its line-break style."""

    indent: str = ""
    newline: str = "\n"

    def __call__(self, raw: str) -> str:
        lines = strip_fence(raw).split("\n")
        return self.newline.join(self.indent + line if line else line for line in lines)
