"""Refinement examples for the SmolLM2 adapter: whole stdlib functions, one exact edit each.

Each example is what the server sends (the system prompt, then the function in a fence and the
instruction, or a follow-up instruction alone) and the answer a model should give: the whole
edited function in a fence. Edits are made on the syntax tree's positions, so a rename touches
exactly the identifier's uses and every target parses; an edit that would be ambiguous (the name
also appears in a string or comment, a line that is not unique) is not made.
"""

from __future__ import annotations

import ast
import inspect
import random
import re
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.prompt_format import SYSTEM_PROMPT, edit_request, fence
from engine.training.data import NameVariants, fresh_name, read_source

KINDS = (
    "rename_local",
    "rename_parameter",
    "rename_attribute",
    "delete_line",
    "insert_line",
    "literal",
    "docstring",
    "type_hints",
    "no_change",
)
"""Every edit kind, in the order reports list them."""
FOLLOW_UP_KINDS = ("rename_local", "rename_parameter", "delete_line", "insert_line", "literal")
"""Kinds a second turn asks for (by the instruction alone, as the server sends follow-ups)."""
MIN_LINES, MAX_LINES = 3, 30

FUNCTION_NAMES = NameVariants(
    tries=12, pool_share=0.35,
    suffixes=("value", "new", "list", "count", "data", "item", "2", "obj"),
    prefixes=("new", "old", "my", "the", "raw", "cur"), strip_before_suffix=True,
    on_camel_clash=lambda name: f"{name}_x",
)
"""The adapter's renames: its training examples and held-out evaluation items."""

Edit = tuple[str, str]
"""(instruction, the edited code)."""
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_COMPOUND = (
    ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.Match,
    ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
)
_IDENT = re.compile(r"[A-Za-z_]\w*")
_NAME_TYPES = {
    "str": ("name", "path", "filename", "text", "prefix", "suffix", "sep", "encoding", "errors",
            "msg", "message", "mode", "line", "string", "fmt", "format", "dirname", "pattern"),
    "int": ("n", "count", "size", "index", "i", "j", "length", "width", "level", "offset",
            "pos", "start", "stop", "end", "lineno", "depth", "indent", "maxsize", "limit"),
    "bool": ("flag", "strict", "verbose", "recursive", "force", "reverse", "follow_symlinks"),
    "bytes": ("data", "buf", "payload"),
}
NAME_TYPES = {name: kind for kind, names in _NAME_TYPES.items() for name in names}
"""Type hints inferred from a parameter's name (the stdlib's conventions), for parameters
without a literal default."""


@dataclass(frozen=True)
class Answer:
    """One assistant turn to learn: its edit kind, the code it edits (where it stops copying
    that code is where the edit is) and the edited code."""

    kind: str
    reference: str
    target: str


@dataclass
class Example:
    """A conversation whose assistant turns are all answers to learn."""

    messages: list[dict[str, str]]
    answers: list[Answer]

    @property
    def kind(self) -> str:
        """The first turn's kind (what the user's code was shown for)."""
        return self.answers[0].kind

    @property
    def reference(self) -> str:
        return self.answers[-1].reference

    @property
    def target(self) -> str:
        return self.answers[-1].target


def functions(files: list[Path], min_lines: int = MIN_LINES, max_lines: int = MAX_LINES,
              max_width: int = 100) -> list[str]:
    """Every function and method of `files` (decorators included, dedented) of min..max lines
    that parses on its own, in file order."""
    found = []
    for path in files:
        text = read_source(path)
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        lines = text.split("\n")
        for node in ast.walk(tree):
            if not isinstance(node, _FUNCTIONS):
                continue
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            assert node.end_lineno is not None
            chunk = lines[first - 1 : node.end_lineno]
            if not min_lines <= len(chunk) <= max_lines or max(map(len, chunk)) > max_width:
                continue
            code = textwrap.dedent("\n".join(chunk))
            if _parses(code) and code.lstrip().startswith(("def ", "async def ", "@")):
                found.append(code)
    return found


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def function_node(code: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    """The function `code` opens with; SyntaxError when it does not parse or is no function."""
    body = ast.parse(code).body
    if not body or not isinstance(body[0], _FUNCTIONS):
        raise SyntaxError("not a function")
    return body[0]


class Positions:
    """(line, column) of the syntax tree as offsets into the code."""

    def __init__(self, code: str) -> None:
        self.starts = [0]
        for line in code.split("\n"):
            self.starts.append(self.starts[-1] + len(line) + 1)

    def __call__(self, line: int, column: int) -> int:
        return self.starts[line - 1] + column


def replace_spans(code: str, spans: list[tuple[int, int]], new: str) -> str:
    for start, end in sorted(spans, reverse=True):
        code = code[:start] + new + code[end:]
    return code


def _word_count(name: str, code: str) -> int:
    return len(re.findall(rf"(?<![\w]){re.escape(name)}(?![\w])", code))


def _name_spans(code: str, node: ast.AST, name: str) -> list[tuple[int, int]]:
    """Where `name` is a variable or parameter in `node`."""
    at = Positions(code)
    spans = []
    for child in ast.walk(node):
        if (isinstance(child, ast.Name) and child.id == name) or (
            isinstance(child, ast.arg) and child.arg == name
        ):
            start = at(child.lineno, child.col_offset)
            spans.append((start, start + len(name)))
    return spans


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    return [a for a in every if a.arg not in ("self", "cls")]


def local_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    params = {a.arg for a in parameters(node)}
    stored = {
        child.id
        for child in ast.walk(node)
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store)
    }
    return sorted(stored - params - {"self", "cls"})


def renameable(code: str, names: list[str], node: ast.AST) -> list[str]:
    """Names whose every whole-word occurrence is a variable use (none in strings, comments,
    attribute names or keywords), so there is one right answer."""
    return [n for n in names if len(_name_spans(code, node, n)) == _word_count(n, code) > 0]


RENAME_ASKS = {
    "rename_local": ("Rename the variable `{a}` to `{b}`.", "Rename `{a}` to `{b}`.",
                     "Rename `{a}` to `{b}` everywhere in it. Answer with the whole function.",
                     "rename {a} to {b}", "Please rename the local variable `{a}` to `{b}`."),
    "rename_parameter": ("Rename the parameter `{a}` to `{b}`.", "Rename `{a}` to `{b}`.",
                         "Rename `{a}` to `{b}` everywhere in it. Answer with the whole function.",
                         "rename the argument {a} to {b}", "Rename the argument `{a}` to `{b}`."),
    "rename_attribute": ("Rename the attribute `{a}` to `{b}`.", "Rename `self.{a}` to `self.{b}`.",
                         "Rename `{a}` to `{b}`.", "rename self.{a} to self.{b}"),
}


def rename_candidates(code: str, kind: str) -> list[str]:
    node = function_node(code)
    if kind == "rename_attribute":
        return attribute_names(code)
    names = local_names(node) if kind == "rename_local" else [a.arg for a in parameters(node)]
    return renameable(code, names, node)


def edit_rename(code: str, kind: str, rng: random.Random, pool: list[str]) -> Edit | None:
    names = rename_candidates(code, kind)
    if not names:
        return None
    old = rng.choice(names)
    new = fresh_name(old, code, rng, pool, FUNCTION_NAMES)
    if kind == "rename_attribute":
        target = replace_spans(code, attribute_spans(code, old), new)
    else:
        target = replace_spans(code, _name_spans(code, function_node(code), old), new)
    if not _parses(target):  # the pool's name was a keyword (`self.class`)
        return None
    return rng.choice(RENAME_ASKS[kind]).format(a=old, b=new), target


def attribute_spans(code: str, attr: str) -> list[tuple[int, int]]:
    """Where `self.<attr>` names the attribute."""
    at = Positions(code)
    spans = []
    for child in ast.walk(function_node(code)):
        if (isinstance(child, ast.Attribute) and child.attr == attr
                and isinstance(child.value, ast.Name) and child.value.id == "self"):
            assert child.end_lineno is not None and child.end_col_offset is not None
            end = at(child.end_lineno, child.end_col_offset)
            spans.append((end - len(attr), end))
    return spans


def attribute_names(code: str) -> list[str]:
    """Attributes of self that are not called (not methods) and appear nowhere else."""
    node = function_node(code)
    called = {
        child.func.attr for child in ast.walk(node)
        if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
    }
    names = {
        child.attr for child in ast.walk(node)
        if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name)
        and child.value.id == "self"
    }
    return sorted(
        n for n in names - called if len(attribute_spans(code, n)) == _word_count(n, code)
    )


def _statement_lines(code: str) -> list[int]:
    """0-based lines holding one whole simple statement, unique in the code once stripped."""
    lines = code.split("\n")
    counts = Counter(line.strip() for line in lines)
    node = function_node(code)
    found = []
    for child in ast.walk(node):
        if not isinstance(child, ast.stmt) or isinstance(child, _COMPOUND):
            continue
        if child.lineno != child.end_lineno or child.lineno == node.lineno:
            continue
        line = lines[child.lineno - 1]
        if counts[line.strip()] == 1 and line.strip() == ast.get_source_segment(code, child):
            found.append(child.lineno - 1)
    return sorted(found)


DELETE_ASKS = ("Delete the line `{l}`.", "Remove the line `{l}`.", "Remove `{l}`.",
               "delete this line: {l}", "Delete `{l}`.")


def edit_delete(code: str, rng: random.Random) -> Edit | None:
    lines = code.split("\n")
    candidates = [i for i in _statement_lines(code)
                  if _parses("\n".join(lines[:i] + lines[i + 1 :]))]
    if not candidates:
        return None
    i = rng.choice(candidates)
    return rng.choice(DELETE_ASKS).format(l=lines[i].strip()), "\n".join(lines[:i] + lines[i + 1 :])


INSERT_ASKS = ("Add `{s}` {w} the line `{l}`.", "Insert `{s}` {w} `{l}`.",
               "add {s} {w} the line {l}", "Add the line `{s}` {w} `{l}`.")


def new_statement(code: str, rng: random.Random) -> str:
    node = function_node(code)
    names = [a.arg for a in parameters(node)] + local_names(node) or ["result"]
    name = rng.choice(names)
    return rng.choice((
        f"print({name})", f"assert {name} is not None", f"# TODO: check {name}",
        f"logger.debug('{name}: %r', {name})", "pass", f"del {name}", f"print('{name}', {name})",
        f"{name} = None", "return None", "breakpoint()",
    ))


def edit_insert(code: str, rng: random.Random) -> Edit | None:
    lines = code.split("\n")
    candidates = _statement_lines(code)
    if not candidates:
        return None
    i = rng.choice(candidates)
    statement = new_statement(code, rng)
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    where = "after" if rng.random() < 0.7 else "before"
    at = i + 1 if where == "after" else i
    target = "\n".join([*lines[:at], indent + statement, *lines[at:]])
    if not _parses(target):
        return None
    return rng.choice(INSERT_ASKS).format(s=statement, w=where, l=lines[i].strip()), target


LITERAL_ASKS = ("Change `{a}` to `{b}`.", "Replace {a} with {b}.", "Change the literal {a} to {b}.",
                "replace `{a}` by `{b}`")
_SHORT_STRING = re.compile(r"""(['"])[\w\-. :/%]{1,24}\1""")


def literals(code: str) -> list[tuple[int, int, str]]:
    """Numbers and short one-line strings that occur once in the code: (start, end, text)."""
    at = Positions(code)
    node = function_node(code)
    docstring = node.body[0] if ast.get_docstring(node) is not None else None
    found = []
    for child in ast.walk(node):
        if not isinstance(child, ast.Constant) or child.lineno != child.end_lineno:
            continue
        if docstring is not None and getattr(docstring, "value", None) is child:
            continue
        text = ast.get_source_segment(code, child) or ""
        number = type(child.value) is int and text.isdigit()
        if not number and not (isinstance(child.value, str) and _SHORT_STRING.fullmatch(text)):
            continue
        occurrences = _word_count(text, code) if number else code.count(text)
        if occurrences == 1:
            start = at(child.lineno, child.col_offset)
            found.append((start, start + len(text), text))
    return found


def new_literal(text: str, rng: random.Random, pool: list[str]) -> str:
    if text.isdigit():
        value = rng.choice([rng.randint(0, 20), rng.randint(0, 1000), int(text) * 2 + 1])
        return str(value if str(value) != text else int(text) + 1)
    word = rng.choice(pool) if pool else "value"
    return f"{text[0]}{word}{text[0]}" if word != text[1:-1] else f"{text[0]}{word}_2{text[0]}"


def edit_literal(code: str, rng: random.Random, pool: list[str]) -> Edit | None:
    found = literals(code)
    if not found:
        return None
    start, end, old = rng.choice(found)
    new = new_literal(old, rng, pool)
    return rng.choice(LITERAL_ASKS).format(a=old, b=new), code[:start] + new + code[end:]


DOCSTRING_ASKS = ("Add a docstring.", "Add a docstring to `{n}`.",
                  "Add a one-line docstring to this function.", "document {n}",
                  "Write a docstring for `{n}`.")


def docstring_split(code: str) -> tuple[str, str] | None:
    """(the function without its docstring, the function with only its docstring's summary
    line), when it has a docstring whose first paragraph is one line."""
    node = function_node(code)
    doc = ast.get_docstring(node, clean=False)
    if doc is None or len(node.body) < 2:
        return None
    summary = inspect.cleandoc(doc).split("\n")
    first = summary[0].strip()
    if not first or (len(summary) > 1 and summary[1].strip()) or '"' in first or "\\" in first:
        return None
    if not first.endswith((".", "!", "?")):
        first += "."
    lines = code.split("\n")
    expr = node.body[0]
    assert expr.end_lineno is not None
    own_lines = "\n".join(lines[expr.lineno - 1 : expr.end_lineno]).strip()
    if expr.lineno == node.lineno or own_lines != ast.get_source_segment(code, expr):
        return None
    if own_lines[0] not in "\"'":  # a prefixed string (r, u)
        return None
    indent = lines[expr.lineno - 1][: expr.col_offset]
    head, tail = lines[: expr.lineno - 1], lines[expr.end_lineno :]
    with_summary = "\n".join([*head, f'{indent}"""{first}"""', *tail])
    if len(indent) + len(first) + 6 > 100:
        return None
    return "\n".join(head + tail), with_summary


def annotations(code: str) -> int:
    node = function_node(code)
    return sum(a.annotation is not None for a in parameters(node)) + (node.returns is not None)


def strip_annotations(code: str) -> str | None:
    """The function without its parameter and return annotations (defaults kept, PEP 8
    spacing), or None when its signature has none or cannot be edited textually."""
    node = function_node(code)
    at = Positions(code)
    defaults = _defaults(node)
    spans: list[tuple[int, int, str]] = []
    for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                *(a for a in (node.args.vararg, node.args.kwarg) if a is not None)]:
        if arg.annotation is None:
            continue
        start = at(arg.lineno, arg.col_offset) + len(arg.arg)
        default = defaults.get(id(arg))
        if default is None:
            end = at(arg.annotation.end_lineno or 0, arg.annotation.end_col_offset or 0)
            spans.append((start, end, ""))
        else:
            spans.append((start, at(default.lineno, default.col_offset), "="))
    if node.returns is not None:
        end = at(node.returns.end_lineno or 0, node.returns.end_col_offset or 0)
        arrow = code.rfind("->", 0, at(node.returns.lineno, node.returns.col_offset))
        spans.append((len(code[:arrow].rstrip()), end, ""))
    if not spans:
        return None
    for start, end, new in sorted(spans, reverse=True):
        code = code[:start] + new + code[end:]
    return code if _parses(code) and annotations(code) == 0 else None


def _defaults(node: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[int, ast.expr]:
    """id(arg) -> its default value node."""
    positional = [*node.args.posonlyargs, *node.args.args]
    pairs = list(zip(positional[len(positional) - len(node.args.defaults):], node.args.defaults,
                     strict=True))
    pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True)
              if d is not None]
    return {id(a): d for a, d in pairs}


def inferred_hint(arg: ast.arg, default: ast.expr | None) -> str | None:
    """A parameter's type from a literal default, else from its name."""
    if isinstance(default, ast.Constant) and default.value is not None:
        kind = type(default.value).__name__
        return kind if kind in ("bool", "int", "float", "str", "bytes") else None
    hint = NAME_TYPES.get(arg.arg)
    if hint is None:
        return None
    return f"{hint} | None" if isinstance(default, ast.Constant) else hint


def inferred_return(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """`None` when nothing is returned, a builtin type when every return says which."""
    returns, inner = [], False
    stack: list[ast.AST] = list(node.body)
    while stack:
        child = stack.pop()
        if isinstance(child, (*_FUNCTIONS, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(child, (ast.Yield, ast.YieldFrom)):
            inner = True
        if isinstance(child, ast.Return):
            returns.append(child.value)
        stack.extend(ast.iter_child_nodes(child))
    if inner:
        return None
    if all(value is None for value in returns):
        return "None"
    kinds = {_value_type(value) for value in returns}
    return kinds.pop() if len(kinds) == 1 and None not in kinds else None


def _value_type(value: ast.expr | None) -> str | None:
    if isinstance(value, ast.Constant) and type(value.value) in (bool, int, str, float, bytes):
        return type(value.value).__name__
    if (isinstance(value, (ast.Compare, ast.BoolOp)) and all(
        isinstance(v, ast.Compare) for v in getattr(value, "values", [value])
    )) or (isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not)):
        return "bool"
    if isinstance(value, ast.JoinedStr):
        return "str"
    types = {ast.List: "list", ast.ListComp: "list", ast.Dict: "dict", ast.DictComp: "dict",
             ast.Tuple: "tuple", ast.Set: "set", ast.SetComp: "set"}
    return types.get(type(value))


def add_hints(code: str) -> str | None:
    """The unannotated function with the hints `inferred_hint` and `inferred_return` find
    (None when they find none)."""
    node = function_node(code)
    if annotations(code):
        return None
    at = Positions(code)
    defaults = _defaults(node)
    edits: list[tuple[int, int, str]] = []
    for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
        hint = inferred_hint(arg, defaults.get(id(arg)))
        if hint is None or arg.arg in ("self", "cls"):
            continue
        start = at(arg.lineno, arg.col_offset) + len(arg.arg)
        default = defaults.get(id(arg))
        end = start if default is None else at(default.lineno, default.col_offset)
        edits.append((start, end, f": {hint}" + ("" if default is None else " = ")))
    returns = inferred_return(node)
    if returns is not None:
        body = at(node.body[0].lineno, node.body[0].col_offset)
        header = code[: body]
        close = max((m.start() for m in re.finditer(r"\)\s*:", header)), default=-1)
        if close >= 0:
            edits.append((close + 1, close + 1, f" -> {returns}"))
    if not edits:
        return None
    for start, end, new in sorted(edits, reverse=True):
        code = code[:start] + new + code[end:]
    return code if _parses(code) and annotations(code) == len(edits) else None


HINT_ASKS = ("Add type hints.", "Add type hints to `{n}`.", "Add type annotations.",
             "add type hints to {n}", "Annotate the parameters and the return type.")


NO_CHANGE_ASKS = ("If this function is fine as it is, return it unchanged.",
                  "Check this function; return it unchanged if nothing needs to change.")


def edit_no_change(code: str, rng: random.Random, pool: list[str]) -> Edit | None:
    """An instruction the code already satisfies: a rename already made, a docstring or hints
    it already has, a literal already changed, or a check that finds nothing."""
    node = function_node(code)
    options: list[Callable[[], str | None]] = []

    def renamed() -> str | None:
        names = renameable(code, local_names(node) + [a.arg for a in parameters(node)], node)
        if not names:
            return None
        new = rng.choice(names)
        old = fresh_name(new, code, rng, pool, FUNCTION_NAMES)
        return rng.choice(RENAME_ASKS["rename_local"]).format(a=old, b=new)

    def documented() -> str | None:
        if ast.get_docstring(node) is None:
            return None
        return rng.choice(DOCSTRING_ASKS).format(n=node.name)

    def hinted() -> str | None:
        if not (annotations(code) and node.returns is not None):
            return None
        return rng.choice(HINT_ASKS).format(n=node.name)

    def changed() -> str | None:
        found = literals(code)
        if not found:
            return None
        _, _, new = rng.choice(found)
        old = new_literal(new, rng, pool)
        return None if old in code else rng.choice(LITERAL_ASKS).format(a=old, b=new)

    options = [renamed, documented, hinted, changed]
    rng.shuffle(options)
    options.append(lambda: rng.choice(NO_CHANGE_ASKS))
    for option in options:
        ask = option()
        if ask is not None:
            return ask, code
    return None


def make_edit(code: str, kind: str, rng: random.Random, pool: list[str]) -> tuple[str, Edit] | None:
    """(the code the user shows, (instruction, edited code)) for one kind, or None."""
    if kind.startswith("rename_"):
        edit = edit_rename(code, kind, rng, pool)
    elif kind == "delete_line":
        edit = edit_delete(code, rng)
    elif kind == "insert_line":
        edit = edit_insert(code, rng)
    elif kind == "literal":
        edit = edit_literal(code, rng, pool)
    elif kind == "docstring":
        split = docstring_split(code)
        if split is None:
            return None
        code, target = split
        edit = rng.choice(DOCSTRING_ASKS).format(n=function_node(code).name), target
    elif kind == "type_hints":
        ask = rng.choice(HINT_ASKS).format(n=function_node(code).name)
        if annotations(code):  # a real annotated function, shown without its annotations
            bare = strip_annotations(code)
            if bare is None:
                return None
            code, edit = bare, (ask, code)
        else:
            hinted = add_hints(code)
            edit = None if hinted is None else (ask, hinted)
    elif kind == "no_change":
        edit = edit_no_change(code, rng, pool)
    else:
        raise ValueError(f"unknown edit kind {kind!r}")
    if edit is None or (edit[1] == code) != (kind == "no_change"):
        return None
    return code, edit


def example(code: str, kind: str, rng: random.Random, pool: list[str],
            turns: int = 1) -> Example | None:
    """The server's first turn for `kind` on `code`, answered; then up to `turns` - 1 further
    edits asked for by the instruction alone (as the server sends follow-ups), each answered."""
    made = make_edit(code, kind, rng, pool)
    if made is None:
        return None
    shown, (instruction, target) = made
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": edit_request(shown, instruction)},
        {"role": "assistant", "content": fence(target)},
    ]
    answers = [Answer(kind, shown, target)]
    for _ in range(turns - 1):
        kind = rng.choice(FOLLOW_UP_KINDS)
        made = make_edit(target, kind, rng, pool)
        if made is None or made[0] != target:
            break
        instruction, new = made[1]
        messages += [{"role": "user", "content": instruction},
                     {"role": "assistant", "content": fence(new)}]
        answers.append(Answer(kind, target, new))
        target = new
    return Example(messages, answers)


def name_pool(codes: list[str], size: int = 2000) -> list[str]:
    """Common identifiers of the functions, for fresh names and new string literals."""
    counts = Counter(m for code in codes for m in _IDENT.findall(code) if len(m) > 2)
    return sorted(n for n, _ in counts.most_common(size))


class ExampleSource:
    """Examples drawn from a fixed set of functions."""

    def __init__(self, files: list[Path], min_lines: int = MIN_LINES,
                 max_lines: int = MAX_LINES, exclude: frozenset[str] = frozenset()) -> None:
        """`exclude`: functions never to use (the held-out ones, which some training files
        repeat word for word)."""
        self.codes = [c for c in functions(files, min_lines, max_lines) if c not in exclude]
        if not self.codes:
            raise ValueError("no functions of a usable length in the given files")
        self.pool = name_pool(self.codes)

    def example(self, rng: random.Random, kind: str, turns: int = 1) -> Example:
        """An example of `kind` on a function picked at random (retries until one fits)."""
        for _ in range(10_000):
            made = example(rng.choice(self.codes), kind, rng, self.pool, turns)
            if made is not None:
                return made
        raise ValueError(f"no function in these files allows a {kind!r} edit")

    def stream(self, rng: random.Random, weights: dict[str, float],
               follow_up_share: float, max_turns: int = 3) -> Iterator[Example]:
        """Examples of kinds drawn by `weights`; `follow_up_share` of them go on for 2 to
        `max_turns` turns."""
        kinds, shares = zip(*weights.items(), strict=True)
        while True:
            kind = rng.choices(kinds, shares)[0]
            turns = rng.randint(2, max_turns) if rng.random() < follow_up_share else 1
            yield self.example(rng, kind, turns)
