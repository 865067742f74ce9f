"""What an answer is expected to repeat, as a prediction (`engine.prediction`) for its drafts.

An edit request shows the code to rewrite, and a follow-up or a fix rewrites the previous
answer: either is what the answer will mostly copy. A rename names both spellings, so the
prediction makes it at once: the copy pointer then runs through every renamed spot instead of
being rejected at each until it has seen the edit made twice. A wrong guess costs passes,
never tokens: every drafted token is still verified.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FENCED = re.compile(r"^(`{3,})[^`\n]*\n(?:.*?\n)?\1$", re.M | re.S)
"""A fenced code block as `engine.prompt_format.fence` writes it: how requests show code."""
NAME = r"`?([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)`?"
CLAUSE = re.compile(r"\brename\b(.*?)(?=\.\s|\.$|\n|$)", re.IGNORECASE | re.DOTALL)
"""From 'rename' to the end of its sentence (a dotted name's dots do not end it)."""
FIRST = re.compile(rf"\s+(?:the\s+(?:\w+\s+){{0,2}})?{NAME}\s+(?:to|into|as)\s+{NAME}",
                   re.IGNORECASE)
"""'Rename `a` to `b`', 'rename the parameter `a` to `b`', 'rename self.a to self.b'..."""
MORE = re.compile(r"`([A-Za-z_][\w.]*)`\s+(?:to|into|as)\s+`([A-Za-z_][\w.]*)`", re.IGNORECASE)
"""...and more pairs in the same sentence, quoted: '... and `c` to `d`'."""
PRONOUNS = frozenset({"it", "this", "that", "them", "these", "those"})
"""'Rename it to `b`' names no old name: the selection is meant."""


def expected_answer(messages: Sequence[dict[str, str]]) -> str | None:
    """The code block the last message shows (an edit request), else the previous answer (a
    follow-up or a fix rewrites that), with the renames the last message asks for made; None
    when the conversation shows no code yet."""
    request = messages[-1]["content"]
    shown = FENCED.search(request)
    if shown:
        return renamed(shown.group(0), request)
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    return renamed(answers[-1], request) if answers else None


def renames(request: str) -> dict[str, str]:
    """Old name → new name for each rename `request` asks for outside its code blocks."""
    pairs: dict[str, str] = {}
    for clause in CLAUSE.finditer(FENCED.sub("", request)):
        first = FIRST.match(clause.group(1))
        if first:
            found = [first.groups(), *MORE.findall(clause.group(1)[first.end() :])]
            pairs.update((old, new) for old, new in found
                         if old != new and old.lower() not in PRONOUNS and old not in pairs)
    return pairs


def renamed(code: str, request: str) -> str:
    """`code` with the renames `request` asks for made at once wherever an old name stands
    whole: not inside a longer name, nor as an attribute of something else (renaming `count`
    leaves `items.count` alone; `self.count` is renamed when the request names it so)."""
    pairs = renames(request)
    if not pairs:
        return code
    names = "|".join(re.escape(old) for old in sorted(pairs, key=len, reverse=True))
    return re.sub(rf"(?<![\w.])(?:{names})(?!\w)", lambda m: pairs[m.group(0)], code)


def expected_ids(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, str]]
) -> list[int]:
    """`expected_answer` as token ids (none when there is no code yet)."""
    text = expected_answer(messages)
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
