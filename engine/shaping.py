"""Only code enters the buffer: turn an instruct model's growing answer into the region's text.

Real models wrap the code in prose, `<think>` blocks, several fenced blocks or a diff. The
shaper parses fences the CommonMark way (``` or ~~~, three or more, a closing fence at least as
long with no info string and at most three spaces deeper than the opening one, so a ``` line
inside a docstring stays code), picks the block that replaces the region, applies a diff to the
region instead of pasting it, and restores the region's indentation and line breaks.

While streaming, `shape(raw)` shows only what the final `shape(raw, final=True)` keeps: a block
is shown once one of its first lines resembles the region's first line (so it is the rewrite,
not a usage example or prose), and anything that could still turn into a fence, a `<think>`
tag or trailing blank lines is held back. Whatever is undecided is shown only at the end.
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass, field

from engine.prompt_format import dedent

FENCE_LINE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
HELD_IN_BLOCK = re.compile(r"^[ \t]*(?:[`~]+[ \t]*)?$")
"""An unfinished line inside a block that may still become a closing fence or a blank line."""
HELD_OUTSIDE = re.compile(r"^[ \t]*(?:[`~].*)?$")
"""An unfinished line outside blocks that may still become an opening fence or a blank line."""
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
DIFF_INFOS = frozenset({"diff", "patch", "udiff"})
DIFF_STARTS = ("--- ", "diff --git ", "@@ ", "Index: ")
COMMIT_LINES = 3
"""A block is the region's rewrite when one of its first this-many lines resembles the region's
first line; three allows for a leading comment, decorator or import the model added."""
MATCH_RATIO = 0.6
"""difflib ratio above which two stripped lines count as the same line, edited."""
LINE_BREAKS = re.compile(r"\r\n|\r|\n")
"""What ends a line in a document (LSP's rule): CRLF, a lone CR or LF."""


def line_break(text: str) -> str:
    """The break a document's new lines get: CRLF when it has any, a lone CR when it has only
    those, else LF. The one rule the server and the shaper share, so an answer keeps the
    file's line breaks."""
    if "\r\n" in text:
        return "\r\n"
    return "\r" if "\r" in text and "\n" not in text else "\n"


@dataclass
class Block:
    """One fenced block: its complete content lines and, while streaming, an unfinished one."""

    fence: str
    indent: int
    info: str
    lines: list[str] = field(default_factory=list)
    partial: str | None = None
    closed: bool = False
    strip: int | None = None

    def closes(self, line: str) -> bool:
        match = FENCE_LINE.match(line)
        return bool(
            match
            and match["fence"][0] == self.fence[0]
            and len(match["fence"]) >= len(self.fence)
            and not match["info"].strip()
            and len(match["indent"]) <= self.indent + 3
        )

    def add(self, line: str) -> None:
        """A content line, less up to the opening fence's own indentation (CommonMark) when
        the block's first line is that deep: a stray space before a fence (Mistral's
        tokenizer) must not eat into the code's own indentation."""
        if self.strip is None and line.strip():
            self.strip = self.indent if line.startswith(" " * self.indent) else 0
        self.lines.append(self.unindent(line))

    def unindent(self, line: str) -> str:
        strip = self.strip
        if strip is None:
            strip = self.indent if line.startswith(" " * self.indent) else 0
        return line[min(len(line) - len(line.lstrip(" ")), strip) :]

    @property
    def is_diff(self) -> bool:
        if self.info.split()[:1] and self.info.split()[0].lower() in DIFF_INFOS:
            return True
        return looks_like_diff(self.lines)


@dataclass
class Parsed:
    """An answer split into the text before any fence and the fenced blocks."""

    leading: list[str] = field(default_factory=list)
    leading_partial: str | None = None
    blocks: list[Block] = field(default_factory=list)

    @property
    def open_block(self) -> Block | None:
        """The block still being written, if any."""
        block = self.blocks[-1] if self.blocks else None
        return block if block is not None and not block.closed else None

    def add_line(self, line: str) -> None:
        """One complete line: it opens, fills or closes a block, or adds to the leading text."""
        block = self.open_block
        if block is not None:
            if block.closes(line):
                block.closed, block.partial = True, None
            else:
                block.add(line)
            return
        opening = FENCE_LINE.match(line)
        if opening and not (opening["fence"][0] == "`" and "`" in opening["info"]):
            block = Block(opening["fence"], len(opening["indent"]), opening["info"].strip())
            self.blocks.append(block)
        elif not self.blocks:
            self.leading.append(line)

    def set_partial(self, partial: str | None) -> None:
        """The unfinished last line: leading text before any fence, else the open block's."""
        if not self.blocks:
            self.leading_partial = partial
            return
        self.leading_partial = None
        if self.open_block is not None:
            self.open_block.partial = partial


@dataclass(frozen=True)
class Shaper:
    """Shapes answers for one region: `region` is its code as the model saw it (dedented, LF),
    `indent` and `newline` what prompting took away and the buffer needs back."""

    region: str = ""
    indent: str = ""
    newline: str = "\n"

    @classmethod
    def for_region(cls, text: str, newline: str | None = None) -> Shaper:
        """The shaper for a region's text as it stands in the document: its code as the model
        sees it (every line break LF, dedented), its indent, and `newline` (the document's
        `line_break`; by default the region's own)."""
        code, indent = dedent(LINE_BREAKS.sub("\n", text))
        return cls(code, indent, newline or line_break(text))

    def __call__(self, raw: str, final: bool = False) -> str:
        """The buffer text for the answer so far (`final`: the answer is complete)."""
        parsed = parse(strip_thinking(raw.replace("\r\n", "\n"), final), final)
        lines, partial = self._choose(parsed, final)
        return self._place(lines, partial, final)

    def stream(self) -> ShapingStream:
        """An answer's shaping fed delta by delta: each step parses only the new text."""
        return ShapingStream(self)

    @property
    def first_line(self) -> str:
        return next((line.strip() for line in self.region.split("\n") if line.strip()), "")

    def resembles(self, line: str) -> bool:
        """Whether `line` is the region's first line, possibly edited."""
        a, b = line.strip(), self.first_line
        if not a or not b:
            return False
        if a == b or a.split("(")[0].split(":")[0] == b.split("(")[0].split(":")[0]:
            return True
        return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= MATCH_RATIO

    def commits(self, lines: list[str], complete: bool) -> bool | None:
        """True/False once it is decided whether a block rewrites the region (one of its first
        COMMIT_LINES non-blank lines resembles the region's first line); None while undecided."""
        head = list(itertools.islice((line for line in lines if line.strip()), COMMIT_LINES))
        if not self.first_line:
            return True if head or complete else None  # no region to compare: take it
        if any(self.resembles(line) for line in head):
            return True
        return False if complete or len(head) == COMMIT_LINES else None

    def _choose(self, parsed: Parsed, final: bool) -> tuple[list[str], str | None]:
        """The code lines (and a settled unfinished line) that replace the region."""
        leading = parsed.leading
        # Unfenced code must start like the region or at least not like prose, or prose
        # before a fence would show.
        head = next((line for line in leading if line.strip()), None)
        if head is not None:
            code = self.resembles(head) or not prose_like(head)
        else:
            code = not parsed.blocks and opens_like_code(parsed.leading_partial or "")
        if code and not looks_like_diff(leading):
            partial = None if parsed.blocks else parsed.leading_partial
            return leading, settled(partial, HELD_OUTSIDE)
        for block in parsed.blocks:
            done = final or block.closed
            if block.is_diff:
                continue
            commits = self.commits(block.lines, done)
            if commits is None:
                return [], None  # the block being written is still undecided
            if commits:
                partial = settled(block.partial, HELD_IN_BLOCK)
                return block.lines, None if done or partial is None else block.unindent(partial)
        if not final:
            return [], None
        return self._final_choice(parsed), None

    def _final_choice(self, parsed: Parsed) -> list[str]:
        """When no block started like the region: a diff that applies, else the block most like
        the region, else unfenced code; the region itself when the answer holds no code."""
        region = self.region.split("\n") if self.region else []
        diffs = [b.lines for b in parsed.blocks if b.is_diff]
        if not parsed.blocks and looks_like_diff(parsed.leading):
            diffs = [parsed.leading]
        for diff in diffs:
            applied = apply_diff(region, diff)
            if applied is not None:
                return applied
        code = [b.lines for b in parsed.blocks if not b.is_diff]
        if code:
            chosen = max(code, key=lambda lines: similarity("\n".join(lines), self.region))
        elif diffs or is_prose(parsed.leading):
            chosen = []
        else:
            chosen = parsed.leading
        return chosen if any(line.strip() for line in chosen) else region

    def _place(
        self, lines: list[str], partial: str | None, final: bool, placed: Placed | None = None
    ) -> str:
        """Lines in the buffer: leading and trailing blank lines dropped, the region's indent
        added unless the model already kept it, the region's line breaks."""
        if placed is not None:
            return placed.place(self, lines, partial)
        lines = [*lines, partial] if partial else list(lines)
        while lines and not lines[0].strip():
            lines.pop(0)
        if not partial or final:
            while lines and not lines[-1].strip():
                lines.pop()
        if not lines:
            return ""
        add = self._added_indent(lines[0])
        return self.newline.join(add + line if line.strip() else line for line in lines)

    def _added_indent(self, first_shown: str) -> str:
        """The region's indent, unless the model's first line already has it."""
        first = next((line for line in self.region.split("\n") if line.strip()), "")
        rel = first[: len(first) - len(first.lstrip())]
        kept = self.indent and first_shown.startswith(self.indent + rel)
        return "" if kept else self.indent


@dataclass
class Placed:
    """What `Shaper._place` made of a growing list of lines while streaming, so each step
    places only the lines added since (the chosen list only ever grows while it streams)."""

    source: list[str] | None = None
    count: int = 0
    """Lines of `source` placed so far."""
    add: str | None = None
    """The indent added to each line, fixed by the first non-blank line (None: none yet)."""
    solid: str = ""
    """The placed lines up to the last non-blank one, joined."""
    blanks: list[str] = field(default_factory=list)
    """Blank lines after it: shown only once a non-blank line follows them."""

    def place(self, shaper: Shaper, lines: list[str], partial: str | None) -> str:
        if lines is not self.source or len(lines) < self.count:
            self.source, self.count, self.add, self.solid, self.blanks = lines, 0, None, "", []
        newline = shaper.newline
        for line in itertools.islice(lines, self.count, None):
            if not line.strip():
                if self.add is not None:
                    self.blanks.append(line)
                continue
            if self.add is None:
                self.add = shaper._added_indent(line)
                self.solid = self.add + line
            else:
                self.solid = newline.join([self.solid, *self.blanks, self.add + line])
                self.blanks = []
        self.count = len(lines)
        if not partial:
            return self.solid
        if self.add is None:
            return shaper._added_indent(partial) + partial
        return newline.join([self.solid, *self.blanks, self.add + partial])


class ShapingStream:
    """One answer's shaping, fed the raw text delta by delta: `push` returns what
    `Shaper.__call__` returns for the whole answer so far, but parses only the new text (the
    `<think>` tags and CRLFs that may still complete are held in a short tail)."""

    def __init__(self, shaper: Shaper) -> None:
        self.shaper = shaper
        self.tail = ""
        """Raw text not yet parsed: the start of a tag or a CR that may still complete."""
        self.thinking = False
        """Inside a `<think>` block: the text is dropped until it closes."""
        self.tagged = False
        """A `<think>` or `</think>` was seen, so a first `</think>` can no longer mean the
        generation prompt opened the block (which drops all the text before it)."""
        self._restart()

    def _restart(self) -> None:
        self.parsed = Parsed()
        self.line = ""
        self.placed = Placed()

    def push(self, delta: str) -> str:
        """The buffer text for the answer so far, `delta` being its newest raw text."""
        self._feed(self._clean(delta))
        display = "" if self.thinking else held_back(self.tail)
        self.parsed.set_partial(self.line + display)
        lines, partial = self.shaper._choose(self.parsed, False)
        return self.shaper._place(lines, partial, False, self.placed)

    def _clean(self, delta: str) -> str:
        """The new text, without `<think>` blocks and with CRLF as LF, as `strip_thinking`
        would cut it; what may still change is kept in `tail`."""
        text = (self.tail + delta).replace("\r\n", "\n")
        kept: list[str] = []
        while True:
            if self.thinking:
                end = text.find(THINK_CLOSE)
                if end < 0:
                    self.tail = text[-(len(THINK_CLOSE) - 1) :]
                    return "".join(kept)
                text, self.thinking = text[end + len(THINK_CLOSE) :], False
                continue
            start = text.find(THINK_OPEN)
            close = -1 if self.tagged else text.find(THINK_CLOSE)
            if close >= 0 and (start < 0 or close < start):
                self.tagged, kept, text = True, [], text[close + len(THINK_CLOSE) :]
                self._restart()  # the generation prompt opened the block: all before goes
                continue
            if start >= 0:
                self.tagged, self.thinking = True, True
                kept.append(text[:start])
                text = text[start + len(THINK_OPEN) :]
                continue
            hold = unsettled_tail(text, self.tagged)
            self.tail = text[len(text) - hold :]
            kept.append(text[: len(text) - hold])
            return "".join(kept)

    def _feed(self, text: str) -> None:
        if not text:
            return
        lines = (self.line + text).split("\n")
        self.line = lines.pop()
        for line in lines:
            self.parsed.add_line(line)


def unsettled_tail(text: str, tagged: bool) -> int:
    """How many characters at the end of `text` may still turn into a tag or a CRLF."""
    cr = 1 if text.endswith("\r") else 0
    body = text[: len(text) - cr]
    tags = (THINK_OPEN,) if tagged else (THINK_OPEN, THINK_CLOSE)
    size = max(
        (n for tag in tags for n in range(len(tag) - 1, 0, -1) if body.endswith(tag[:n])),
        default=0,
    )
    return cr + size


def held_back(rest: str) -> str:
    """`rest` less what a streaming answer holds back at its end: a CR that may be half of a
    CRLF, then what may be the start of `<think>`."""
    rest = rest.removesuffix("\r")
    for size in range(len(THINK_OPEN) - 1, 0, -1):
        if rest.endswith(THINK_OPEN[:size]):
            return rest[:-size]
    return rest


def strip_thinking(text: str, final: bool) -> str:
    """The text without `<think>…</think>` blocks; an unclosed one hides the rest, and while
    streaming a tail that may be the start of `<think>` (or of a CRLF) is held back."""
    if THINK_CLOSE in text and THINK_OPEN not in text.split(THINK_CLOSE, 1)[0]:
        text = text.split(THINK_CLOSE, 1)[1]  # the generation prompt opened the block
    kept, pos = [], 0
    while (start := text.find(THINK_OPEN, pos)) >= 0:
        kept.append(text[pos:start])
        end = text.find(THINK_CLOSE, start)
        pos = len(text) if end < 0 else end + len(THINK_CLOSE)
    rest = text[pos:]
    return "".join([*kept, rest if final else held_back(rest)])


def parse(text: str, final: bool) -> Parsed:
    """Leading text and fenced blocks; prose between and after blocks is dropped."""
    lines = text.split("\n")
    partial = None if final else lines.pop()
    parsed = Parsed()
    for line in lines:
        parsed.add_line(line)
    parsed.set_partial(partial)
    if final and parsed.open_block is not None:
        drop_partial_fence(parsed.open_block)
    return parsed


def drop_partial_fence(block: Block) -> None:
    """An answer cut off while writing the closing fence leaves its first backticks behind."""
    last = block.lines[-1].strip() if block.lines else ""
    if last and set(last) == {block.fence[0]} and len(last) < len(block.fence):
        block.lines.pop()


def settled(partial: str | None, held: re.Pattern[str]) -> str | None:
    """An unfinished line, unless it may still turn into something that is not code."""
    return None if partial is None or held.match(partial) else partial


PROSE_LINE = re.compile(r"^[A-Z][^`{};=]*[.!?:]$")
MARKDOWN_START = re.compile(r"^(?:#+|[*>-]|\d+\.|\*\*)\s")
CODE_SIGNS = re.compile(r"\w\(|[=;{}\[\]<>+/%&|^~\\$]")
MARKER_SO_FAR = re.compile(r"^(?:#+|[*>-]|\d+\.?)$")
INLINE_CODE = re.compile(r"`[^`]*`")


def prose_like(line: str) -> bool:
    """A line that may be prose or markdown (a heading, bullet, or sentence): unfenced text
    that opens with one is held back until the answer shows whether code follows in a fence.
    A Python comment counts too, so it only delays showing."""
    text = line.strip()
    if MARKDOWN_START.match(text) or text.startswith("**"):
        return True
    words = INLINE_CODE.sub("x", text).split()
    if not text[:1].isupper() or CODE_SIGNS.search(INLINE_CODE.sub("x", text)):
        return False
    return len(words) >= 3 or text.endswith((".", "!", "?", ":"))


def is_prose(lines: list[str]) -> bool:
    """Sentences only (an answer that refuses or explains instead of editing)."""
    text = [line.strip() for line in lines if line.strip()]
    return bool(text) and all(PROSE_LINE.match(line) and line.count(" ") >= 3 for line in text)


CAPITAL_WORD = re.compile(r"^[A-Z][\w']*\s")


def opens_like_code(partial: str) -> bool:
    """An unfinished first line that can only end as a line `prose_like` rejects, so it may
    show at once: it does not open with markdown or a diff header, and it opens in lower case
    or with a code sign outside backticks before any space."""
    text = partial.lstrip()
    if not text or "`" in text or text.startswith("**"):
        return False
    if MARKDOWN_START.match(text) or MARKER_SO_FAR.match(text):
        return False
    if any(start.startswith(text) or text.startswith(start) for start in DIFF_STARTS):
        return False  # a unified diff is applied at the end, never shown as it comes
    if not text[:1].isupper():
        return True
    return not CAPITAL_WORD.match(text) and bool(CODE_SIGNS.search(text))


def looks_like_diff(lines: list[str]) -> bool:
    head = next((line for line in lines if line.strip()), "")
    return head.startswith(DIFF_STARTS)


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def apply_diff(region: list[str], diff: list[str]) -> list[str] | None:
    """The region with a unified diff's hunks applied, found by their content (models get the
    line numbers wrong); None when a hunk does not match the region."""
    hunks: list[list[str]] = []
    header = False
    for i, line in enumerate(diff):
        following = diff[i + 1] if i + 1 < len(diff) else ""
        if line.startswith(("diff --git ", "index ", "Index: ", "====")):
            continue
        if line.startswith("--- ") and following.startswith("+++ "):
            header = True
            continue
        if header and line.startswith("+++ "):
            header = False
            continue
        if line.startswith("@@"):
            hunks.append([])
            continue
        if line.startswith("\\"):
            continue  # "\ No newline at end of file"
        if not hunks:
            hunks.append([])
        hunks[-1].append(line)
    result: list[str] = []
    cursor = 0
    for hunk in hunks:
        while hunk and not hunk[-1].strip():
            hunk.pop()
        old = [line[1:] if line[:1] in " -" else line for line in hunk if line[:1] != "+"]
        new = [line[1:] if line[:1] in " +" else line for line in hunk if line[:1] != "-"]
        at = find_lines(region, old, cursor)
        if at is None:
            return None
        result += region[cursor:at] + new
        cursor = at + len(old)
    return result + region[cursor:] if hunks else None


def find_lines(region: list[str], old: list[str], start: int) -> int | None:
    """Where `old` occurs in the region at or after `start`: exactly, else ignoring trailing
    and then all surrounding whitespace."""
    for norm in (lambda s: s, str.rstrip, str.strip):
        want = [norm(line) for line in old]
        for at in range(start, len(region) - len(old) + 1):
            if [norm(line) for line in region[at : at + len(old)]] == want:
                return at
    return None
