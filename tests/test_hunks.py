"""Hunks: the answer against the original as runs of whole rows, computed once in the server
(copyspec_lsp/flow/hunks.py) so every editor reviews the same ones; and the test-only scripted
answer (copyspec_lsp/adapters/scripted.py) that gives the editor tests a known three-hunk answer.

The end-to-end test runs the real server with COPYSPEC_TEST_ANSWER: the scripted text stands in
for the tiny model's gibberish (so the hunks are known) and streams through the real path."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from copyspec_lsp.adapters.line_index import LineIndex
from copyspec_lsp.adapters.scripted import ANSWER_VARIABLE, PIECE, ScriptedTurn, scripted_answer
from copyspec_lsp.flow.hunks import Hunk, diff_rows, region_hunks
from engine.stats import TurnStats

from lsp_fixtures import Editor, rng, server_command, start_editor, tiny_model

ORIGINAL = """\
def load_users(path):
    f = open(path)
    data = json.load(f)
    f.close()
    users = []
    for item in data:
        if item["active"] == True:
            users.append(item["name"])
    print("loaded", len(users), "users")
    return users"""

ANSWER = """\
def load_users(path):
    with open(path) as f:
        data = json.load(f)
    users = []
    for item in data:
        if item["active"]:
            users.append(item["name"])
    return users"""

DOCUMENT = "import json\n\n\n" + ORIGINAL + "\n\n\nprint(load_users('u.json'))\n"
FIRST_ROW = 3


def reject(rows: list[str], hunks: list[Hunk], chosen: set[int]) -> list[str]:
    """What a client does to the answer's rows on Reject: the chosen hunks' rows go back to
    their original lines, bottom-up, so each hunk's own row numbers still hold."""
    rows = list(rows)
    for i in sorted(chosen, reverse=True):
        hunk = hunks[i]
        rows[hunk.start : hunk.start + len(hunk.lines)] = hunk.original_lines
    return rows


def accept(rows: list[str], hunks: list[Hunk], chosen: set[int]) -> list[str]:
    """What a previewing client does to the original's rows on Accept."""
    rows = list(rows)
    for i in sorted(chosen, reverse=True):
        hunk = hunks[i]
        rows[hunk.original_start : hunk.original_start + len(hunk.original_lines)] = hunk.lines
    return rows


@pytest.mark.timeout(10)
def test_three_changes_are_three_hunks_of_whole_rows() -> None:
    hunks = diff_rows(ORIGINAL.split("\n"), ANSWER.split("\n"), FIRST_ROW)
    assert hunks == [
        Hunk(4, ["    f = open(path)", "    data = json.load(f)", "    f.close()"],
             4, ["    with open(path) as f:", "        data = json.load(f)"]),
        Hunk(9, ['        if item["active"] == True:'], 8, ['        if item["active"]:']),
        Hunk(11, ['    print("loaded", len(users), "users")'], 10, []),
    ]
    assert hunks[2].to_dict() == {
        "range": rng((10, 0), (10, 0)),
        "originalRange": rng((11, 0), (12, 0)),
        "newLines": [],
        "originalLines": ['    print("loaded", len(users), "users")'],
    }


@pytest.mark.timeout(10)
def test_the_region_in_either_state_gives_the_same_hunks() -> None:
    """Streamed (the answer in the document) or previewed (the original still there)."""
    start = DOCUMENT.index("def")
    previewed = LineIndex(DOCUMENT)
    streamed = LineIndex(DOCUMENT.replace(ORIGINAL, ANSWER))
    expected = diff_rows(ORIGINAL.split("\n"), ANSWER.split("\n"), FIRST_ROW)
    assert region_hunks(previewed, start, start + len(ORIGINAL), ORIGINAL, ANSWER) == expected
    assert region_hunks(streamed, start, start + len(ANSWER), ORIGINAL, ANSWER) == expected


@pytest.mark.timeout(10)
def test_partial_rows_keep_the_text_outside_the_region() -> None:
    """A region that starts and ends inside rows: a hunk still names whole rows."""
    document = "x = [1, 2]  # keep\ny = 3  # tail\n"
    start, end = document.index("[1"), document.index("  # tail")
    answer = "[1, 2, 3]  # keep\ny = 4"
    lines = LineIndex(document[:start] + answer + document[end:])
    assert region_hunks(lines, start, start + len(answer), document[start:end], answer) == [
        Hunk(0, ["x = [1, 2]  # keep", "y = 3  # tail"],
             0, ["x = [1, 2, 3]  # keep", "y = 4  # tail"])
    ]


@pytest.mark.timeout(10)
def test_crlf_rows_and_changes_at_the_ends() -> None:
    document = "a\r\nb\r\nc"
    lines = LineIndex(document)
    assert region_hunks(lines, 0, len(document), "a\r\nb\r\nc", "z\r\na\r\nb") == [
        Hunk(0, [], 0, ["z"]), Hunk(2, ["c"], 3, []),
    ]
    assert region_hunks(lines, 0, len(document), document, document) == []


@pytest.mark.timeout(30)
def test_any_choice_of_hunks_gives_the_rows_chosen() -> None:
    """Rejecting a set of hunks of the answer, or accepting it into the original, leaves the
    rows each hunk chose: the contract both editors build on (random line lists, 300 cases)."""
    pick = random.Random(25)
    for _ in range(300):
        original = [pick.choice("abcde") for _ in range(pick.randrange(0, 9))]
        answer = [pick.choice("abcdef") for _ in range(pick.randrange(0, 9))]
        above = ["top"] * pick.randrange(0, 3)
        hunks = diff_rows(original, answer, len(above))
        chosen = {i for i in range(len(hunks)) if pick.random() < 0.5}
        expected: list[str] = []
        cursor = 0
        for i, hunk in enumerate(hunks):  # walk the original, taking each hunk's choice
            expected += original[cursor : hunk.original_start - len(above)]
            expected += hunk.original_lines if i in chosen else hunk.lines
            cursor = hunk.original_start - len(above) + len(hunk.original_lines)
        expected = above + expected + original[cursor:]
        assert reject(above + answer, hunks, chosen) == expected
        unchosen = set(range(len(hunks))) - chosen
        assert accept(above + original, hunks, unchosen) == expected


@pytest.mark.timeout(10)
def test_pieces_cover_the_answer_exactly() -> None:
    for text in (ANSWER, "  lead\n\n  trail  \n", "", "x"):
        assert "".join(PIECE.findall(text)) == text
        assert all(len(piece.strip()) <= 4 for piece in PIECE.findall(text))


class History:
    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = [{"role": "system", "content": "s"}]


@pytest.mark.timeout(10)
def test_a_scripted_turn_streams_its_text_and_joins_the_history() -> None:
    history = History()
    seen: list[tuple[str, int]] = []
    result = ScriptedTurn(history, "def f():\n    return 1\n").send(
        "make it return 1", on_text=lambda delta, stats: seen.append((delta, stats.new_tokens))
    )
    assert result.text == "def f():\n    return 1\n"
    assert "".join(delta for delta, _ in seen) == result.text
    assert [count for _, count in seen] == list(range(1, len(seen) + 1))
    assert (result.stats.new_tokens, result.stats.stop_reason) == (len(seen), "eos")
    assert history.messages[1:] == [
        {"role": "user", "content": "make it return 1"},
        {"role": "assistant", "content": result.text},
    ]


@pytest.mark.timeout(10)
def test_a_scripted_turn_stops_at_the_budget_and_on_a_stop() -> None:
    history = History()
    assert ScriptedTurn(history, "a b c d e").send("m", max_new_tokens=2).text == "a b"
    stop = threading.Event()

    def stop_after_first(delta: str, stats: TurnStats) -> None:
        stop.set()

    result = ScriptedTurn(history, "a b c").send("m", stop_event=stop, on_text=stop_after_first)
    assert (result.text, result.stats.cancelled) == ("a", True)
    assert len(history.messages) == 3, "the cancelled turn is not in the history"


@pytest.mark.timeout(10)
def test_the_script_is_read_only_while_its_file_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ANSWER_VARIABLE, raising=False)
    assert scripted_answer() is None
    monkeypatch.setenv(ANSWER_VARIABLE, str(tmp_path / "answer"))
    assert scripted_answer() is None
    (tmp_path / "answer").write_text("x = 1\n", encoding="utf-8")
    assert scripted_answer() == "x = 1\n"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def scripted_editor(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    answer = base / "scripted-answer"
    os.environ[ANSWER_VARIABLE] = str(answer)  # read by the server this starts
    try:
        client = await start_editor(server_command(tiny_model(base)))
    finally:
        del os.environ[ANSWER_VARIABLE]
    client.answer = answer
    await client.wait_ready()
    yield client
    await client.close()


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("apply", ["stream", "none"])
async def test_the_result_carries_the_hunks(scripted_editor: Editor, apply: str) -> None:
    """The real server, the scripted answer through the real streaming path: the result's
    hunks, as rows of the document as it is now, in both apply modes."""
    uri = f"file:///tmp/hunks-{apply}.py"
    scripted_editor.answer.write_text(f"```python\n{ANSWER}\n```\n", encoding="utf-8")
    try:
        scripted_editor.open(uri, DOCUMENT)
        result: dict[str, Any] = await scripted_editor.request("copyspec/refine", {
            "textDocument": {"uri": uri}, "range": rng((3, 0), (12, 16)),
            "instruction": "use a with block, drop the print", "apply": apply,
        })
    finally:
        scripted_editor.answer.unlink()
    assert result["text"] == ANSWER
    expected = [h.to_dict() for h in diff_rows(ORIGINAL.split("\n"), ANSWER.split("\n"), FIRST_ROW)]
    assert result["hunks"] == expected
    now = scripted_editor.docs[uri]
    assert now == (DOCUMENT.replace(ORIGINAL, ANSWER) if apply == "stream" else DOCUMENT)
