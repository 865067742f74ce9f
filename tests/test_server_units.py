"""Pure functions of the language server: positions, regions, prompts, answer shaping,
settings, region tracking and the check command."""

from __future__ import annotations

import asyncio
import random
import sys

import pytest
from lsprotocol import types

from copyspec_lsp.adapters.conversations import Conversations
from copyspec_lsp.adapters.line_index import (
    LineIndex,
    PositionError,
    count_units,
    line_starts,
)
from copyspec_lsp.adapters.region_tracking import Region
from copyspec_lsp.adapters.settings import Settings
from copyspec_lsp.adapters.syntax import enclosing_region, syntax_errors, widen
from copyspec_lsp.flow import prompts
from copyspec_lsp.flow.check import CheckCommandError, run_check_command
from engine.config import COMPILE, SpecConfig

P = types.Position


# positions


@pytest.mark.parametrize(
    ("encoding", "column"), [("utf-16", 3), ("utf-8", 5), ("utf-32", 2)]
)
def test_position_round_trip_after_an_emoji(encoding: str, column: int) -> None:
    text = "a😀b\n"
    assert LineIndex(text).offset(P(0, column), encoding) == 2
    assert LineIndex(text).position(2, encoding) == P(0, column)


def test_positions_with_cjk_crlf_and_tabs() -> None:
    text = "中文x\r\n\tyz\r\nlast"
    lines = LineIndex(text)
    assert lines.offset(P(0, 2)) == 2
    assert lines.offset(P(0, 6), "utf-8") == 2
    assert lines.offset(P(1, 1)) == text.index("y")
    assert lines.offset(P(0, 99)) == text.index("\r"), "columns clamp before the line break"
    assert lines.position(text.index("last")) == P(2, 0)
    assert LineIndex("a\rb").offset(P(1, 0)) == 2, "a lone CR ends a line too"


def test_positions_outside_the_document_are_errors() -> None:
    with pytest.raises(PositionError, match="outside"):
        LineIndex("one\n").offset(P(5, 0))
    with pytest.raises(PositionError):
        LineIndex("one").position(9)


def test_a_line_index_follows_changes_like_a_fresh_scan() -> None:
    """Seeded: random texts of CR, LF and CRLF, random replacements, including ones that join
    or split a CR and an LF; the updated index equals the index of the new text."""
    rand = random.Random(7)
    pieces = ["a", "bc", "\r", "\n", "\r\n", "\r\r"]
    for _ in range(3000):
        text = "".join(rand.choice(pieces) for _ in range(rand.randint(0, 12)))
        start = rand.randint(0, len(text))
        end = rand.randint(start, len(text))
        new = "".join(rand.choice(pieces) for _ in range(rand.randint(0, 4)))
        changed = LineIndex(text).replaced(start, end, new)
        expected = text[:start] + new + text[end:]
        assert changed.text == expected
        assert changed.starts.tolist() == line_starts(expected).tolist(), (text, start, end, new)


def test_count_units() -> None:
    assert [count_units("😀中", e) for e in ("utf-16", "utf-8", "utf-32")] == [3, 7, 2]


# regions


CASES = [
    ("python", "import os\n\n@dec\ndef f(x):\n    y = 1\n    return x\n", "y =",
     "@dec\ndef f(x):\n    y = 1\n    return x"),
    ("python", "a = 1\nb = [\n  2,\n]\n", "2", "b = [\n  2,\n]"),
    ("javascript", "const f = (x) => x + 1;\n", "x + 1", "const f = (x) => x + 1;"),
    ("typescript", "class A {\n  m(): number { return 1; }\n}\n", "return",
     "m(): number { return 1; }"),
    ("typescriptreact", "function C() {\n  return <div/>;\n}\n", "div",
     "function C() {\n  return <div/>;\n}"),
    ("rust", "fn main() {\n    let x = 1;\n}\n", "let", "fn main() {\n    let x = 1;\n}"),
    ("go", "package m\n\nfunc F() int {\n\treturn 1\n}\n", "return",
     "func F() int {\n\treturn 1\n}"),
    ("c", "int f(void) {\n  return 1;\n}\n", "return", "int f(void) {\n  return 1;\n}"),
    ("cpp", "namespace n {\nint f() { return 1; }\n}\n", "return", "int f() { return 1; }"),
    ("lua", "local function f(x)\n  return x\nend\n", "return",
     "local function f(x)\n  return x\nend"),
    ("markdown", "# a\nsome text\nmore\n", "text", "some text"),
]


@pytest.mark.parametrize(("language", "text", "at", "expected"), CASES)
def test_enclosing_region(language: str, text: str, at: str, expected: str) -> None:
    start, end = enclosing_region(text, language, text.index(at))
    assert text[start:end] == expected


def test_enclosing_region_with_multibyte_text_before() -> None:
    text = "s = '😀中'\ndef f():\n    return 1\n"
    start, end = enclosing_region(text, "python", text.index("return"))
    assert text[start:end] == "def f():\n    return 1"


def test_syntax_errors_only_inside_the_region() -> None:
    text = "def f(:\n    pass\n\nx = 1\ny = (2\n"
    inside = syntax_errors(text, "python", text.index("y ="), len(text))
    assert inside and all(e.startswith("SyntaxError") for e in inside)
    assert syntax_errors(text, "python", text.index("x ="), text.index("x =") + 5) == []
    assert syntax_errors("fn main() { let x = ; }", "rust", 0, 22)
    assert syntax_errors("whatever", "plaintext", 0, 8) is None


# prompts and answers


def test_fix_instruction_counts_lines_from_the_region() -> None:
    diagnostic = types.Diagnostic(types.Range(P(11, 0), P(11, 3)), "NameError: name 'y'")
    expected = "Fix this error: NameError: name 'y' (line 2)"
    assert prompts.fix_instruction([diagnostic], 10) == expected
    assert prompts.fix_instruction([diagnostic], 10, "and tidy") == expected + "\nand tidy"
    assert prompts.fix_instruction([], 0, "make it faster") == "make it faster"


def test_widen_takes_whole_lines_without_trailing_breaks() -> None:
    text = "a\n    def f():\n        pass\n\nb"
    start = text.index("def")
    assert widen(text, start, text.index("\nb")) == (text.index("    def"), text.index("\n\nb"))
    assert widen(text, text.index("f()"), text.index("f()") + 1) == (text.index("f()"),
                                                                     text.index("f()") + 1)


# settings


def test_settings_validate_and_fall_back() -> None:
    settings, problems = Settings().update({
        "gamma": 0, "block": 4, "maxNewTokens": "many", "logLevel": "debug",
        "checkCommand": "make check", "checkTimeout": 2, "device": "tpu", "mystery": 1,
    })
    assert (settings.gamma, settings.block, settings.max_new_tokens) == (3, 4, 512)
    assert settings.log_level == "DEBUG" and settings.check_timeout == 2.0
    assert settings.check_command is None and settings.device == "auto"
    assert len(problems) == 5
    assert any("argument list" in p for p in problems)
    assert Settings().update({"checkCommand": ["ruff", "{file}"]})[0].check_command == (
        "ruff", "{file}"
    )
    assert Settings().needs_reload(Settings(model="/m")) and not Settings().needs_reload(
        Settings(gamma=5)
    )
    assert Settings().update([1])[1] == ["settings must be an object, got list"]
    threads, problems = Settings().update({"threads": 0})
    assert threads.threads is None and "threads" in problems[0]
    assert Settings().update({"threads": 2})[0].threads == 2
    assert Settings().needs_reload(Settings(threads=1)), "threads are set when the model loads"


def test_cost_aware_and_compile_settings() -> None:
    settings, problems = Settings().update({"costAware": False, "compile": "ON"})
    assert (settings.cost_aware, settings.compile, problems) == (False, "on", [])
    bad, problems = Settings().update({"costAware": "no", "compile": "always"})
    assert (bad.cost_aware, bad.compile) == (SpecConfig.cost_aware, COMPILE)
    assert len(problems) == 2 and "costAware" in problems[0] and "compile" in problems[1]
    assert Settings().needs_reload(Settings(compile="on")), "compiling is set when it loads"
    assert not Settings().needs_reload(Settings(cost_aware=False)), "a session's setting"


# region tracking


def test_region_follows_edits_before_and_after() -> None:
    text = "0123456789"
    region = Region("u", 4, 6)
    region.follow(text, 0, 2, "abcd")
    assert (region.start, region.end, region.touched) == (6, 8, False)
    region.follow("ab" + text, 9, 9, "zz")
    assert (region.start, region.end, region.touched) == (6, 8, False)


def test_region_tells_its_own_edit_from_the_users() -> None:
    touched: list[bool] = []
    region = Region("u", 2, 4, expected="XYZW", on_touched=lambda: touched.append(True))
    region.follow("ab12cd", 4, 4, "ZW")  # typing right after the region is outside it
    assert touched == [] and region.expected == "XYZW"
    region.follow("ab12cdZW", 3, 4, "Q")  # typing inside it while our edit is in flight
    assert touched == [True]
    region = Region("u", 2, 4, expected="12ZW")
    region.follow("ab12cd", 4, 4, "ZW")  # the minimal diff of our own edit
    assert (region.end, region.expected, region.touched) == (6, None, False)
    region.follow("ab12ZWcd", 3, 4, "!")
    assert region.touched


def test_region_takes_back_its_edit_applied_at_a_stale_range() -> None:
    """A client that ignores versions applies our edit at its old range after the user
    typed above the region: that is recognised and put back, and so is a put-back that the
    user's typing beat in turn; the region ends where the text says."""
    text = "ab\n1234\n"
    region = Region("u", 3, 7, expected="12XY34")
    region.sent = (types.Range(P(1, 2), P(1, 2)), "XY")
    region.follow(text, 0, 0, "#\n")  # the user's line above arrives first
    text = "#\nab\n1234\n"
    assert (region.start, region.end, region.touched) == (5, 9, False)
    region.follow(text, 4, 4, "XY", region.sent[0])  # (1, 2) is now the end of "ab"
    text = "#\nabXY\n1234\n"
    assert region.misplaced == [(4, 6, "")] and not region.touched
    region.sent = (types.Range(P(1, 2), P(1, 4)), "")  # the put-back, as sent
    region.follow(text, 12, 12, "!")  # typing after everything: nothing moves
    region.follow(text + "!", 2, 2, "%")  # typing before "ab": the put-back's range is stale
    text = "#\n%abXY\n1234\n!"
    assert region.misplaced == [(5, 7, "")] and (region.start, region.end) == (6, 10)
    region.follow(text, 4, 6, "", region.sent[0])  # (1, 2)-(1, 4) is "bX" now: misplaced too
    text = "#\n%aY\n1234\n!"
    assert region.misplaced == [(5, 7, ""), (4, 4, "bX")]
    region.follow(text, 4, 4, "bX")  # both put back, newest first
    region.follow("#\n%abXY\n1234\n!", 5, 7, "")
    assert region.misplaced == [] and not region.touched
    assert "#\n%ab\n1234\n!"[region.start : region.end] == "1234"
    region.misplaced = [(4, 4, "")]
    region.follow(text, 3, 3, "", region.sent[0])  # a put-back that lands as a no-op
    assert region.misplaced == [(4, 4, "")], "nothing to put back for a change that changed nothing"
    region.misplaced = [(5, 7, "")]
    region.follow("%#\nabXY\n1234\n!", 6, 6, "z")  # typing onto a misplaced edit
    assert region.touched


# check command


def test_check_command_runs_on_a_copy_with_an_argument_list(tmp_path) -> None:
    script = "import sys; t = open(sys.argv[1]).read(); print('bad', t); sys.exit(t != 'ok')"
    check = [sys.executable, "-c", script, "{file}"]
    passed = asyncio.run(run_check_command(check, "ok", "a.py", str(tmp_path), 10))
    failed = asyncio.run(run_check_command(check, "x; rm -rf /", "a.py", str(tmp_path), 10))
    assert passed.ok and not failed.ok and failed.errors == ["bad x; rm -rf /"]
    slow = [sys.executable, "-c", "import time; time.sleep(5)"]
    timed_out = asyncio.run(run_check_command(slow, "", "a.py", None, 0.2))
    assert timed_out.errors == ["the check command timed out after 0.2 s"]
    with pytest.raises(CheckCommandError, match="could not run"):
        asyncio.run(run_check_command([str(tmp_path / "nope")], "", "a.py", None, 1))


# sessions


def test_sessions_are_lru_capped_and_keep_their_id() -> None:
    sessions = Conversations(capacity=2)
    first = sessions.get_or_create(None, "file:///a")
    second = sessions.get_or_create(None, "file:///a")
    assert sessions.get_or_create(first.id, "file:///a") is first  # now the most recent
    sessions.get_or_create(None, "file:///b")
    assert sessions.describe()[0]["session"] == first.id
    assert second.id not in {s["session"] for s in sessions.describe()}
    revived = sessions.get_or_create(second.id, "file:///a")
    assert revived.id == second.id and revived.turns == 0, "an expired id starts afresh"
