"""Synthetic training data built from the Python standard library sources.

Every machine with Python has the stdlib sources, so the default model can be rebuilt
anywhere without downloading a data set. Edits are computed mechanically, so every
assistant answer is the exact expected code.
"""

from __future__ import annotations

import builtins
import difflib
import hashlib
import itertools
import keyword
import random
import re
import sysconfig
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.prompt_format import (
    FIX_ASKS,
    SYSTEM_PROMPTS,
    edit_request,
    failure_message,
    fence,
    fix_request,
)
from engine.training.tokenizer import WORDS

EDIT_KINDS = ("rename", "delete", "insert", "replace", "docstring", "fix")
HELD_OUT_PERCENT = 10

_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_NUMBER = re.compile(r"(?<![\w.])\d+(?![\w.])")
_STRING = re.compile(r"'[A-Za-z0-9_\-. ]{1,20}'")
_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(.*\).*:\s*$")
_BLOCK_START = re.compile(r"^\s*(def|class|if|elif|else|for|while|try|except|finally|with)\b")
_RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"self", "cls"}


@dataclass
class Conversation:
    """A chat plus, per assistant turn, whether the model should learn from it and the
    code that turn edits (so training can find the tokens where the edit happens)."""

    messages: list[dict[str, str]]
    kind: str
    train_turns: list[bool] = field(default_factory=list)
    references: list[str] = field(default_factory=list)


def stdlib_files() -> list[Path]:
    """All stdlib .py files (no site-packages, no test suites), sorted for determinism."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3"}
    return sorted(p for p in root.rglob("*.py") if not skip.intersection(p.relative_to(root).parts))


def is_held_out(path: Path) -> bool:
    """Deterministic split by a hash of the stdlib-relative path (same on every machine)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    rel = path.relative_to(root).as_posix()
    return int(hashlib.sha256(rel.encode()).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


def split_files() -> tuple[list[Path], list[Path]]:
    """(train, held_out) stdlib files."""
    files = stdlib_files()
    return [p for p in files if not is_held_out(p)], [p for p in files if is_held_out(p)]


def read_source(path: Path) -> str:
    """File text with tabs expanded and trailing spaces stripped; '' if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return ""
    if not text.isascii():
        return ""
    return "\n".join(line.expandtabs(4).rstrip() for line in text.splitlines())


def extract_snippet(lines: list[str], rng: random.Random, lo: int, hi: int) -> str | None:
    """A dedented window of lo..hi lines starting at a statement, or None if unsuitable."""
    if len(lines) < lo:
        return None
    for _ in range(16):
        start = rng.randrange(0, len(lines) - lo + 1)
        first = lines[start].strip()
        prev = lines[start - 1].rstrip() if start else ""
        if not first or not (first[0].isalpha() or first[0] in "_@#"):
            continue
        if prev.endswith((",", "(", "[", "{", "\\")):
            continue
        window = []
        for line in lines[start : start + rng.randint(lo, hi)]:
            if line.strip() and len(_indent(line)) < len(_indent(lines[start])):
                break
            window.append(line)
        while window and not window[-1].strip():
            window.pop()
        if len(window) < lo or any(len(w) > 100 for w in window):
            continue
        if sum(w.count('"""') + w.count("'''") for w in window) % 2:
            continue
        return textwrap.dedent("\n".join(window))
    return None


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _unique_lines(lines: list[str]) -> list[int]:
    """Non-blank lines, unique once stripped (so they can be named), that are whole
    statements (neither continuing nor continued), so editing them keeps code valid."""
    counts = Counter(line.strip() for line in lines)
    cont = (",", "(", "[", "{", "\\")
    return [
        i
        for i, line in enumerate(lines)
        if line.strip()
        and counts[line.strip()] == 1
        and not line.rstrip().endswith(cont)
        and not (i and lines[i - 1].rstrip().endswith(cont))
        and not line.lstrip().startswith((")", "]", "}", "@"))
    ]


def _identifiers(code: str) -> list[str]:
    return sorted({m for m in _IDENT.findall(code) if m not in _RESERVED and len(m) > 1})


@dataclass(frozen=True)
class NameVariants:
    """How `fresh_name` varies an identifier. Each training set keeps its own variants, so the
    examples a trained model saw, and a held-out evaluation's items, come out byte for byte."""

    tries: int
    pool_share: float
    """The share of tries that take a common stdlib name from the pool."""
    suffixes: tuple[str, ...]
    prefixes: tuple[str, ...]
    strip_before_suffix: bool
    """Whether `old_` loses its trailing underscores before `_suffix` is added."""
    on_camel_clash: Callable[[str], str]
    """The try when camelCasing leaves the name as it was."""


SNIPPET_NAMES = NameVariants(
    tries=10, pool_share=0.4, suffixes=("new", "value", "tmp", "list", "count", "data", "2"),
    prefixes=("new", "old", "my", "the", "raw"), strip_before_suffix=False,
    on_camel_clash=str.upper,
)
"""The built-in model's renames (`edit_rename` here)."""


def fresh_name(
    old: str, code: str, rng: random.Random, pool: list[str], variants: NameVariants
) -> str:
    """A new identifier absent from `code`: a variation of `old` or a common stdlib name."""
    for _ in range(variants.tries):
        roll = rng.random()
        if roll < variants.pool_share and pool:
            candidate = rng.choice(pool)
        elif roll < 0.6:
            base = old.rstrip("_") if variants.strip_before_suffix else old
            candidate = f"{base}_{rng.choice(variants.suffixes)}"
        elif roll < 0.8:
            candidate = f"{rng.choice(variants.prefixes)}_{old.lstrip('_')}"
        else:
            parts = old.strip("_").split("_")
            candidate = parts[0] + "".join(p.capitalize() for p in parts[1:])
            if candidate == old or not candidate:
                candidate = variants.on_camel_clash(old)
        if candidate != old and not re.search(rf"\b{re.escape(candidate)}\b", code):
            return candidate
    return f"{old}_renamed"


def edit_rename(code: str, rng: random.Random, pool: list[str]) -> tuple[str, str] | None:
    """Rename every whole-word occurrence of an identifier."""
    names = _identifiers(code)
    if not names:
        return None
    old = rng.choice(names)
    new = fresh_name(old, code, rng, pool, SNIPPET_NAMES)
    target = re.sub(rf"\b{re.escape(old)}\b", new, code)
    template = rng.choice(
        (
            "Rename `{a}` to `{b}`.",
            "Please rename `{a}` to `{b}`.",
            "rename {a} to {b}",
            "Change the name `{a}` to `{b}` everywhere.",
        )
    )
    return template.format(a=old, b=new), target


def edit_delete(code: str, rng: random.Random, pool: list[str]) -> tuple[str, str] | None:
    """Delete one uniquely identifiable line."""
    lines = code.split("\n")
    cands = _unique_lines(lines)
    if len(lines) < 3 or not cands:
        return None
    i = rng.choice(cands)
    target = "\n".join(lines[:i] + lines[i + 1 :])
    template = rng.choice(
        ("Delete the line `{l}`.", "Remove the line `{l}`.", "delete this line: {l}")
    )
    return template.format(l=lines[i].strip()), target


def _new_statement(code: str, rng: random.Random) -> str:
    names = _identifiers(code) or ["result"]
    name = rng.choice(names)
    return rng.choice(
        (
            f"print({name})",
            f"assert {name} is not None",
            f"# TODO: check {name}",
            f"logger.debug('{name}: %r', {name})",
            f"{name} = None",
            "pass",
            f"del {name}",
        )
    )


def edit_insert(code: str, rng: random.Random, pool: list[str]) -> tuple[str, str] | None:
    """Add a statement after (or before) a uniquely identifiable line, at its indentation."""
    lines = code.split("\n")
    cands = _unique_lines(lines)
    if not cands:
        return None
    i = rng.choice(cands)
    stmt = _new_statement(code, rng)
    anchor = lines[i]
    if rng.random() < 0.7:
        indent = _indent(anchor) + ("    " if anchor.rstrip().endswith(":") else "")
        new_lines = [*lines[: i + 1], indent + stmt, *lines[i + 1 :]]
        where = "after"
    else:
        if _BLOCK_START.match(anchor) and re.match(r"^\s*(elif|else|except|finally)\b", anchor):
            return None
        new_lines = [*lines[:i], _indent(anchor) + stmt, *lines[i:]]
        where = "before"
    template = rng.choice(
        ("Add `{s}` {w} the line `{l}`.", "Insert `{s}` {w} `{l}`.", "add {s} {w} the line {l}")
    )
    return template.format(s=stmt, w=where, l=anchor.strip()), "\n".join(new_lines)


def edit_replace(code: str, rng: random.Random, pool: list[str]) -> tuple[str, str] | None:
    """Replace every occurrence of a number (or a short string literal) by another."""
    numbers = sorted(set(_NUMBER.findall(code)))
    if numbers and rng.random() < 0.7:
        old = rng.choice(numbers)
        new = str(rng.choice([rng.randint(0, 20), rng.randint(0, 1000), int(old) * 2 + 1]))
        if new == old:
            new = str(int(old) + 1)
        target = re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w.])", new, code)
    else:
        strings = sorted(set(_STRING.findall(code)))
        if not strings:
            return None
        old = rng.choice(strings)
        new = f"'{rng.choice(pool) if pool else 'value'}'"
        if new in code:
            return None
        target = code.replace(old, new)
    template = rng.choice(("Replace {a} with {b}.", "Change {a} to {b}.", "replace `{a}` by `{b}`"))
    return template.format(a=old, b=new), target


def docstring_for(name: str) -> str:
    """The mechanical docstring text the model learns to write for a function name."""
    words = name.strip("_").replace("_", " ") or name
    return f'"""{words[0].upper()}{words[1:]}."""'


def edit_docstring(code: str, rng: random.Random, pool: list[str]) -> tuple[str, str] | None:
    """Add a one-line docstring to a function that has none."""
    lines = code.split("\n")
    cands = []
    for i, line in enumerate(lines):
        m = _DEF.match(line)
        if m and i + 1 < len(lines) and not lines[i + 1].lstrip().startswith(('"', "'")):
            cands.append((i, m.group(1), m.group(2)))
    if not cands:
        return None
    i, indent, name = rng.choice(cands)
    new_lines = [*lines[: i + 1], f"{indent}    {docstring_for(name)}", *lines[i + 1 :]]
    template = rng.choice(
        ("Add a docstring to `{n}`.", "Add a docstring to the function {n}.", "document {n}")
    )
    return template.format(n=name), "\n".join(new_lines)


def break_code(code: str, rng: random.Random) -> tuple[str, str] | None:
    """A deliberately broken version of code and the error message Python would report."""
    lines = code.split("\n")
    options: list[Callable[[], tuple[str, str] | None]] = []

    def no_colon() -> tuple[str, str] | None:
        cands = [i for i, ln in enumerate(lines) if _BLOCK_START.match(ln) and ln.endswith(":")]
        if not cands:
            return None
        i = rng.choice(cands)
        broken = [*lines[:i], lines[i][:-1], *lines[i + 1 :]]
        return "\n".join(broken), f"SyntaxError: expected ':' (line {i + 1})"

    def typo() -> tuple[str, str] | None:
        counts = Counter(m for m in _IDENT.findall(code) if m not in _RESERVED and len(m) > 3)
        names = sorted(n for n, c in counts.items() if c >= 2)
        if not names:
            return None
        name = rng.choice(names)
        k = rng.randrange(1, len(name))
        bad = name[:k] + name[k + 1 :]
        if re.search(rf"\b{re.escape(bad)}\b", code):
            return None
        matches = list(re.finditer(rf"\b{re.escape(name)}\b", code))
        m = matches[rng.randrange(1, len(matches))]
        return code[: m.start()] + bad + code[m.end() :], f"NameError: name '{bad}' is not defined"

    def no_paren() -> tuple[str, str] | None:
        cands = [
            i
            for i, ln in enumerate(lines)
            if ln.endswith(")") and ln.count("(") == ln.count(")") and "#" not in ln
        ]
        if not cands:
            return None
        i = rng.choice(cands)
        broken = [*lines[:i], lines[i][:-1], *lines[i + 1 :]]
        return "\n".join(broken), f"SyntaxError: '(' was never closed (line {i + 1})"

    def bad_indent() -> tuple[str, str] | None:
        cands = [
            i
            for i in range(1, len(lines))
            if lines[i].strip() and lines[i - 1].strip() and not lines[i - 1].endswith(":")
        ]
        if not cands:
            return None
        i = rng.choice(cands)
        broken = [*lines[:i], "    " + lines[i], *lines[i + 1 :]]
        return "\n".join(broken), f"IndentationError: unexpected indent (line {i + 1})"

    options = [no_colon, typo, no_paren, bad_indent]
    rng.shuffle(options)
    for option in options:
        result = option()
        if result is not None:
            return result
    return None


EDITS: dict[str, Callable[[str, random.Random, list[str]], tuple[str, str] | None]] = {
    "rename": edit_rename,
    "delete": edit_delete,
    "insert": edit_insert,
    "replace": edit_replace,
    "docstring": edit_docstring,
}


def extract_code(answer: str) -> str:
    """The code inside the first fenced block of an answer (the whole answer if none)."""
    m = re.search(r"```(?:python)?\n(.*?)\n```", answer, re.S)
    return m.group(1) if m else answer.strip()


_UNITS = re.compile(WORDS)  # the tokenizer's pieces, so marked spans fall on token bounds


def edit_points(before: str, after: str) -> list[tuple[int, int]]:
    """Character spans of `after` where it stops being a copy of `before`: each changed or
    inserted run plus the two units where copying resumes (all a deletion leaves).

    These are the few tokens where a model must follow the instruction instead of
    copying, so training can weight them up. Lines are aligned first, then the units
    (words, punctuation, whitespace) of changed lines, so a deleted line is never matched
    against pieces of its neighbours.
    """
    lines_a, lines_b = before.split("\n"), after.split("\n")
    starts = [0]
    for line in lines_b:
        starts.append(min(starts[-1] + len(line) + 1, len(after)))  # the end has no newline
    spans = []
    for op, i1, i2, j1, j2 in _opcodes(lines_a, lines_b):
        if op == "equal":
            continue
        if op == "replace":
            old, new = "\n".join(lines_a[i1:i2]), "\n".join(lines_b[j1:j2])
            spans += [(starts[j1] + a, starts[j1] + b) for a, b in _unit_edits(old, new)]
        else:
            spans += [(starts[j1], starts[j2] + len(_first_units(after[starts[j2] :])))]
    return [(a, max(b, a + 1)) for a, b in spans]


def _opcodes(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()


def _first_units(text: str, n: int = 2) -> str:
    """The first n units of text (what a model emits right after an edit)."""
    return "".join(m.group() for m in itertools.islice(_UNITS.finditer(text), n))


def _unit_edits(before: str, after: str) -> list[tuple[int, int]]:
    units_b = list(_UNITS.finditer(after))
    bounds = [m.start() for m in units_b] + [len(after)]
    return [
        (bounds[j1], bounds[min(j2 + 2, len(units_b))])
        for op, _, _, j1, j2 in _opcodes(
            [m.group() for m in _UNITS.finditer(before)], [m.group() for m in units_b]
        )
        if op != "equal"
    ]


def user_turn(code: str, instruction: str, rng: random.Random) -> str:
    """A user message showing code and asking for an edit, in one of a few layouts."""
    return edit_request(code, instruction, instruction_first=rng.random() >= 0.5)


def make_single(code: str, kind: str, rng: random.Random, pool: list[str]) -> Conversation | None:
    """system + user(code, instruction) + assistant(edited code)."""
    system = {"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}
    if kind == "fix":
        broken = break_code(code, rng)
        if broken is None:
            return None
        bad, message = broken
        prompt = user_turn(bad, fix_request([message], rng.choice(FIX_ASKS)), rng)
        reference, answer = bad, code
    else:
        edit = EDITS[kind](code, rng, pool)
        if edit is None or edit[1] == code:
            return None
        instruction, answer = edit
        prompt = user_turn(code, instruction, rng)
        reference = code
    messages = [
        system,
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": fence(answer)},
    ]
    return Conversation(messages, kind, [True], [reference])


def make_multi(code: str, rng: random.Random, pool: list[str]) -> Conversation | None:
    """2-3 turns where each answer revises the previous one (refine -> fix loop)."""
    first_kind = rng.choice(list(EDITS))
    first = make_single(code, first_kind, rng, pool)
    if first is None:
        return None
    messages, train, references = first.messages, [True], first.references
    current = extract_code(messages[-1]["content"])
    for _ in range(rng.randint(1, 2)):
        if rng.random() < 0.25:
            broken = break_code(current, rng)
            if broken is None:
                continue
            bad, message = broken
            messages[-1] = {"role": "assistant", "content": fence(bad)}
            train[-1] = False
            ask = rng.choice((failure_message, fix_request))
            messages.append({"role": "user", "content": ask([message])})
            messages.append({"role": "assistant", "content": fence(current)})
            references.append(bad)
        else:
            edit = EDITS[rng.choice(list(EDITS))](current, rng, pool)
            if edit is None or edit[1] == current:
                continue
            references.append(current)
            instruction, current = edit
            prefix = rng.choice(("", "Now ", "Also, ", "Good. Now "))
            messages.append({"role": "user", "content": prefix + instruction})
            messages.append({"role": "assistant", "content": fence(current)})
        train.append(True)
    if len(train) < 2:
        return None
    return Conversation(messages, "multi", train, references)


class SnippetSource:
    """Random snippets and raw code chunks from a fixed set of files."""

    def __init__(self, files: list[Path], max_lines: int = 10) -> None:
        self.max_lines = max_lines
        self.texts = [t for t in (read_source(p) for p in files) if t.count("\n") >= 5]
        self.lines = [t.split("\n") for t in self.texts]
        counts = Counter(m for t in self.texts for m in _IDENT.findall(t) if m not in _RESERVED)
        self.pool = sorted(n for n, c in counts.most_common(3000) if len(n) > 2)

    def snippet(self, rng: random.Random) -> str:
        while True:
            snippet = extract_snippet(rng.choice(self.lines), rng, 4, self.max_lines)
            if snippet is not None:
                return snippet

    def conversation(self, rng: random.Random, kind: str) -> Conversation:
        """A conversation of the given kind ('multi' or an EDIT_KINDS entry)."""
        while True:
            code = self.snippet(rng)
            conv = (
                make_multi(code, rng, self.pool)
                if kind == "multi"
                else make_single(code, kind, rng, self.pool)
            )
            if conv is not None:
                return conv

    def code_chunk(self, rng: random.Random, max_chars: int) -> str:
        """A contiguous piece of a source file, for plain language modelling."""
        text = rng.choice(self.texts)
        if len(text) <= max_chars:
            return text
        start = text.rfind("\n", 0, rng.randrange(0, len(text) - max_chars)) + 1
        return text[start : start + max_chars]
