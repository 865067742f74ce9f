"""tree-sitter for the document's language: the enclosing function, class or statement of a
cursor, and a cheap syntax check of a replaced region.

Offsets here are Python string offsets; tree-sitter's byte offsets are converted at the edge.
"""

from __future__ import annotations

import importlib
import re
from functools import cache

import tree_sitter

GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "javascriptreact": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "typescriptreact": ("tree_sitter_typescript", "language_tsx"),
    "rust": ("tree_sitter_rust", "language"),
    "go": ("tree_sitter_go", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "lua": ("tree_sitter_lua", "language"),
}
"""LSP languageId → (grammar module, function returning its language)."""

DEFINITIONS = frozenset({
    "function_definition", "class_definition", "function_declaration", "class_declaration",
    "generator_function_declaration", "method_definition", "abstract_class_declaration",
    "interface_declaration", "function_item", "impl_item", "struct_item", "enum_item",
    "trait_item", "mod_item", "method_declaration", "type_declaration", "struct_specifier",
    "class_specifier", "enum_specifier", "namespace_definition",
})
"""Node types that count as a function or class in some grammar."""

WRAPPERS = frozenset({"decorated_definition", "export_statement", "template_declaration"})
"""Parents that belong with the definition they wrap (decorators, `export`, templates)."""

STATEMENT = re.compile(r"(statement|declaration|definition|_item)$")
NOT_STATEMENTS = frozenset({"parameter_declaration", "field_declaration_list"})


@cache
def parser_for(language_id: str) -> tree_sitter.Parser | None:
    """A parser for an LSP languageId, or None for languages without a grammar here."""
    if language_id not in GRAMMARS:
        return None
    module, function = GRAMMARS[language_id]
    language = tree_sitter.Language(getattr(importlib.import_module(module), function)())
    return tree_sitter.Parser(language)


def enclosing_region(text: str, language_id: str, offset: int) -> tuple[int, int]:
    """The innermost function/class around `offset`, else its statement, else its line."""
    parser = parser_for(language_id)
    if parser is not None:
        data = text.encode("utf-8")
        point = len(text[:offset].encode("utf-8"))
        node = parser.parse(data).root_node.descendant_for_byte_range(point, point)
        found = _innermost(node, lambda n: n.type in DEFINITIONS) or _innermost(
            node, lambda n: bool(STATEMENT.search(n.type)) and n.type not in NOT_STATEMENTS
        )
        if found is not None:
            while found.parent is not None and found.parent.type in WRAPPERS:
                found = found.parent
            return _char(data, found.start_byte), _char(data, found.end_byte)
    return line_region(text, offset)


def line_region(text: str, offset: int) -> tuple[int, int]:
    """The line holding `offset`, without its line break."""
    start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
    ends = [i for i in (text.find("\r", offset), text.find("\n", offset)) if i >= 0]
    return start, min(ends, default=len(text))


def syntax_errors(text: str, language_id: str, start: int, end: int) -> list[str] | None:
    """Parse errors inside [start, end), with lines counted from the region's first line;
    None when the language has no grammar here (nothing could be checked)."""
    parser = parser_for(language_id)
    if parser is None:
        return None
    data = text.encode("utf-8")
    lo, hi = len(text[:start].encode("utf-8")), len(text[:end].encode("utf-8"))
    first_line = text.count("\n", 0, start)
    errors: list[str] = []
    stack = [parser.parse(data).root_node]
    while stack:
        node = stack.pop()
        if node.end_byte < lo or node.start_byte > hi or not node.has_error:
            continue
        line = node.start_point.row - first_line + 1
        if node.is_missing:
            errors.append(f"SyntaxError: missing {node.type!r} (line {line})")
        elif node.type == "ERROR":
            snippet = data[node.start_byte : node.end_byte].decode("utf-8", "replace")
            errors.append(f"SyntaxError: invalid syntax near {_short(snippet)!r} (line {line})")
        else:
            stack.extend(reversed(node.children))
    return errors


def _innermost(node: tree_sitter.Node | None, wanted) -> tree_sitter.Node | None:
    while node is not None and node.parent is not None:
        if wanted(node):
            return node
        node = node.parent
    return None


def _char(data: bytes, byte_offset: int) -> int:
    return len(data[:byte_offset].decode("utf-8", "replace"))


def _short(snippet: str) -> str:
    line = snippet.strip().splitlines()[0] if snippet.strip() else snippet
    return line[:40]


def widen(text: str, start: int, end: int) -> tuple[int, int]:
    """Whole lines where the range starts after indentation; no trailing line breaks."""
    line_start = max(text.rfind("\n", 0, start), text.rfind("\r", 0, start)) + 1
    if not text[line_start:start].strip(" \t"):
        start = line_start
    while end > start and text[end - 1] in "\r\n":
        end -= 1
    return start, end
