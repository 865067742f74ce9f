"""What an answer is expected to repeat, as a prediction (`engine.prediction`) for its drafts.

An edit request shows the code to rewrite, and a follow-up or a fix rewrites the previous
answer: either is what the answer will mostly copy. When the request spells the edit out (a
rename, a line to delete or insert, a literal to change), the prediction makes it at once, so
the copy pointer runs through the edited spots instead of being rejected at each (a rename: at
every use) until the proposer has seen the edit made. A wrong guess costs passes, never
tokens: every drafted token is still verified.
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
FIRST = re.compile(rf"\s+(?:the\s+((?:\w+\s+){{0,2}}))?{NAME}\s+(?:to|into|as)\s+{NAME}",
                   re.IGNORECASE)
"""'Rename `a` to `b`', 'rename the parameter `a` to `b`', 'rename self.a to self.b'..."""
MORE = re.compile(r"`([A-Za-z_][\w.]*)`\s+(?:to|into|as)\s+`([A-Za-z_][\w.]*)`", re.IGNORECASE)
"""...and more pairs in the same sentence, quoted: '... and `c` to `d`'."""
PRONOUNS = frozenset({"it", "this", "that", "them", "these", "those"})
"""'Rename it to `b`' names no old name: the selection is meant."""
DELETE = re.compile(r"\b(?:delete|remove)\s+(?:the\s+line\s+|this\s+line:|line\s+)?"
                    r"(?:`([^`\n]+)`|(?<=:)\s*(\S[^\n]*?))\.?\s*$", re.IGNORECASE | re.MULTILINE)
"""'Delete the line `x = 1`.', 'Remove `x = 1`.', 'delete this line: x = 1'."""
INSERT = re.compile(r"\b(?:add|insert)\s+(?:the\s+line\s+)?`([^`\n]+)`\s+(after|before)\s+"
                    r"(?:the\s+line\s+)?`([^`\n]+)`", re.IGNORECASE)
"""'Add `print(x)` after the line `x = 1`.', 'Insert `pass` before `return x`.'"""
VALUE = r"""(?:`([^`\n]+)`|('[^'\n]*'|"[^"\n]*"|[^\s`]+?))"""
CHANGE = re.compile(rf"\b(?:change|replace)\s+(?:the\s+literal\s+)?{VALUE}\s+(?:to|with|by)\s+"
                    rf"{VALUE}(?=\.?(?:\s|$))", re.IGNORECASE)
"""'Change `10` to `20`.', 'Replace 'a' with 'b'.', 'replace `f()` by `g()`': one value each
side, quoted in backticks or else a single word, number or string literal."""


def expected_answer(messages: Sequence[dict[str, str]]) -> str | None:
    """The code block the last message shows (an edit request), else the previous answer (a
    follow-up or a fix rewrites that), with the edits the last message spells out made; None
    when the conversation shows no code yet."""
    request = messages[-1]["content"]
    shown = FENCED.search(request)
    if shown:
        return edited(shown.group(0), request)
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    return edited(answers[-1], request) if answers else None


def edited(code: str, request: str) -> str:
    """`code` with what `request` spells out (outside its own code blocks) made: renames, then
    lines deleted, lines inserted and literals changed. An edit whose line is not found once
    exactly is left out."""
    asked = FENCED.sub("", request)
    lines = renamed(code, asked).split("\n")
    for quoted, after_colon in DELETE.findall(asked):
        at = _only_line(lines, quoted or after_colon)
        if at is not None:
            del lines[at]
    for statement, where, anchor in INSERT.findall(asked):
        at = _only_line(lines, anchor)
        if at is not None:
            indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
            lines.insert(at + (where.lower() == "after"), indent + statement.strip())
    code = "\n".join(lines)
    for quoted_old, old, quoted_new, new in CHANGE.findall(asked):
        old, new = quoted_old or old, quoted_new or new
        if old != new:
            before = r"(?<![\w.])" if re.match(r"\w", old) else ""
            after = r"(?!\w)" if re.search(r"\w$", old) else ""
            code = re.sub(before + re.escape(old) + after, lambda _, new=new: new, code)
    return code


def renames(request: str) -> dict[str, str]:
    """Old name → new name for each rename `request` asks for ('the attribute `a`': `self.a`)."""
    pairs: dict[str, str] = {}
    for clause in CLAUSE.finditer(FENCED.sub("", request)):
        first = FIRST.match(clause.group(1))
        if first:
            kind, old, new = first.groups()
            found = [(old, new), *MORE.findall(clause.group(1)[first.end() :])]
            if kind and "attribute" in kind.lower():
                found = [(f"self.{a}", f"self.{b}") if "." not in a else (a, b) for a, b in found]
            pairs.update((a, b) for a, b in found
                         if a != b and a.lower() not in PRONOUNS and a not in pairs)
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


def _only_line(lines: list[str], text: str) -> int | None:
    """The index of the one line that is `text` (stripped), or None."""
    found = [i for i, line in enumerate(lines) if line.strip() == text.strip()]
    return found[0] if len(found) == 1 else None


def expected_ids(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, str]]
) -> list[int]:
    """`expected_answer` as token ids (none when there is no code yet)."""
    text = expected_answer(messages)
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
