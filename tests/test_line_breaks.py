"""One line-break rule: a document's style (CRLF, lone CR, LF, mixed) decides the breaks an
answer gets, the region's code reaches the model with LF only, and the server and the shaper
apply the same rule."""

from __future__ import annotations

import pytest

from copyspec_lsp.adapters import documents
from engine import shaping
from engine.shaping import Shaper, line_break

pytestmark = pytest.mark.timeout(30)

STYLES = [
    ("LF", "def f():\n    return 1\n", "\n"),
    ("CRLF", "def f():\r\n    return 1\r\n", "\r\n"),
    ("lone CR", "def f():\r    return 1\r", "\r"),
    ("mixed CRLF and LF", "def f():\r\n    return 1\n", "\r\n"),
    ("mixed CRLF and lone CR", "def f():\r    return 1\r\n", "\r\n"),
    ("mixed lone CR and LF", "def f():\r    return 1\n", "\n"),
]
NO_BREAK = ("no break", "x = 1", "\n")


@pytest.mark.parametrize(("text", "expected"), [s[1:] for s in [*STYLES, NO_BREAK]],
                         ids=[s[0] for s in [*STYLES, NO_BREAK]])
def test_line_break_names_the_documents_style(text: str, expected: str) -> None:
    assert line_break(text) == expected


def test_the_server_uses_the_engines_rule() -> None:
    assert documents.line_break is shaping.line_break


@pytest.mark.parametrize(("text", "newline"), [s[1:] for s in STYLES], ids=[s[0] for s in STYLES])
def test_a_region_reaches_the_model_with_lf_and_the_answer_gets_its_breaks(
    text: str, newline: str
) -> None:
    indented = "".join("    " + line for line in text.splitlines(keepends=True))
    shaper = Shaper.for_region(indented)
    assert "\r" not in shaper.region
    assert shaper.region.split("\n")[:2] == ["def f():", "    return 1"]
    assert (shaper.indent, shaper.newline) == ("    ", newline)
    answer = "```python\ndef f():\n    return 2\n```"
    assert shaper(answer, final=True) == f"    def f():{newline}        return 2"


def test_a_region_without_breaks_takes_the_documents() -> None:
    """A one-line region in a CRLF file: its answer's new lines are CRLF, like the file's."""
    document = "a = 1\r\nb = 2\r\n"
    shaper = Shaper.for_region("b = 2", line_break(document))
    assert shaper("```python\nb = 2\nc = 3\n```", final=True) == "b = 2\r\nc = 3"
