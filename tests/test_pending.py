"""The streaming diff: while an answer streams, the region shows the streamed text followed by
the original's not-yet-passed lines (`copyspec/pending` says where they are); the final edit
leaves exactly the answer; `apply: "none"` reports the range a previewing client replaces;
the refine code action appears only on a selection or when asked for."""

from __future__ import annotations

import random
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types

from copyspec_lsp.adapters.buffer_edits import PendingLines, passed_lines, while_streaming
from copyspec_lsp.adapters.line_index import LineIndex
from copyspec_lsp.flow.params import CONVERTER, plain

from lsp_fixtures import Editor, rng, server_command, start_editor, tiny_model

ORIGINAL = "def f(items):\n    x = 0\n    x += len(items)\n    return x"


@pytest.mark.timeout(10)
def test_a_changed_line_stands_in_for_one_original_line() -> None:
    shown = while_streaming(ORIGINAL, "def f(items):\n    count = 0\n    cou")
    assert shown.text == "def f(items):\n    count = 0\n    cou\n    x += len(items)\n    return x"
    assert shown.text[shown.pending :] == "    x += len(items)\n    return x"


@pytest.mark.timeout(10)
def test_an_unfinished_line_passes_nothing() -> None:
    shown = while_streaming(ORIGINAL, "def f(it")
    assert shown.text == "def f(it\n" + ORIGINAL
    assert shown.text[shown.pending :] == ORIGINAL


@pytest.mark.timeout(10)
def test_matching_lines_jump_over_deleted_ones_and_never_go_back() -> None:
    old = ["a", "b", "c", "d"]
    assert passed_lines(old, ["a", "c"]) == 3, "b was deleted: c matches further on"
    assert passed_lines(old, ["a", "x", "y", "b"]) == 3, "a match behind the position stays"
    assert passed_lines(old, ["a", "x", "y", "z", "w"]) == 4, "never past the end"


@pytest.mark.timeout(10)
def test_nothing_pending_once_the_answer_passed_everything_and_crlf() -> None:
    assert while_streaming("a\r\nb", "a\r\nb\r\nc", "\r\n").text == "a\r\nb\r\nc"
    shown = while_streaming("a\r\nb", "A\r\n", "\r\n")
    assert (shown.text, shown.pending) == ("A\r\n\r\nb", 5)
    assert while_streaming("", "new").text == "new"


DOC = "import os\n\n\ndef add(a, b):\n    total = a + b\n    return total\n"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def editor(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    command = server_command(tiny_model(base))
    client = await start_editor(command, options={"gamma": 0, "maxNewTokens": 40})
    client.pending = []

    @client.feature("copyspec/pending")
    def on_pending(params: Any) -> None:
        client.pending.append(plain(params))

    await client.wait_ready()
    yield client
    await client.close()


def region_text(editor: Editor, uri: str, where: dict[str, Any]) -> str:
    start, end = LineIndex(editor.docs[uri]).offsets(CONVERTER.structure(where, types.Range))
    return editor.docs[uri][start:end]


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.timeout(120)
async def test_streamed_edits_keep_the_pending_original_in_view(editor: Editor) -> None:
    uri = "file:///pending.py"
    editor.open(uri, DOC)
    original = DOC[DOC.index("def add") :].rstrip("\n")
    seen: list[tuple[str, Any]] = []
    editor.on_edit = lambda e, u: seen.append((e.docs[u], e.pending[-1]))
    try:
        params = {"textDocument": {"uri": uri}, "range": rng((4, 0), (4, 0)),
                  "instruction": "rename total", "maxNewTokens": 40}
        result = plain(await editor.request("copyspec/refine", params))
    finally:
        editor.on_edit = None
    assert len(seen) >= 2, "the answer should stream in more than one edit"
    for doc, note in seen[:-1]:
        assert note["uri"] == uri and note["session"] == result["session"]
        if note["range"] is not None:
            start, end = LineIndex(doc).offsets(CONVERTER.structure(note["range"], types.Range))
            rest = doc[start:end]
            assert original.endswith(rest), "the pending part is the original's last lines"
            assert doc[end:] == "\n", "after the region: the document's own text"
    assert any(note["range"] for _, note in seen[:-1]), "some original stayed in view"
    final_doc, final_note = seen[-1]
    assert final_note["range"] is None, "the final edit has nothing pending"
    assert final_doc == DOC[: DOC.index("def add")] + result["text"] + "\n"
    assert editor.docs[uri] == final_doc


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.timeout(120)
async def test_apply_none_reports_the_replaced_range(editor: Editor) -> None:
    uri = "file:///preview.py"
    editor.open(uri, DOC)
    params = {"textDocument": {"uri": uri}, "range": rng((4, 2), (4, 2)),
              "instruction": "rename total", "apply": "none", "maxNewTokens": 20}
    result = plain(await editor.request("copyspec/refine", params))
    assert editor.docs[uri] == DOC, "nothing touches the buffer"
    assert result["replacedRange"] == rng((3, 0), (5, 16)), "the enclosing function"
    function = DOC[DOC.index("def add") :].rstrip("\n")
    assert region_text(editor, uri, result["replacedRange"]) == function


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.timeout(60)
async def test_refine_action_only_on_a_selection_or_when_invoked(editor: Editor) -> None:
    uri = "file:///actions.py"
    editor.open(uri, DOC)

    async def titles(start: tuple[int, int], end: tuple[int, int], kind: Any) -> list[str]:
        where = CONVERTER.structure(rng(start, end), types.Range)
        actions = await editor.text_document_code_action_async(types.CodeActionParams(
            types.TextDocumentIdentifier(uri), where,
            types.CodeActionContext([], trigger_kind=kind)))
        return [a.title for a in actions or []]

    automatic = types.CodeActionTriggerKind.Automatic
    assert await titles((4, 3), (4, 3), automatic) == [], "no lightbulb on a bare cursor"
    assert await titles((4, 0), (5, 3), automatic) == ["CopySpec: refine selection…"]
    invoked = types.CodeActionTriggerKind.Invoked
    assert await titles((4, 3), (4, 3), invoked) == ["CopySpec: refine selection…"]


@pytest.mark.timeout(30)
def test_pending_lines_fed_a_growing_answer_match_a_fresh_count_at_every_step() -> None:
    """The writer's PendingLines looks only at newly completed lines, yet shows what working
    out the whole answer afresh shows, also when the answer's beginning changes."""
    dice = random.Random(7)
    words = ["a", "b", "c", "x", "  a", ""]
    for _ in range(200):
        original = "\n".join(dice.choice(words) for _ in range(dice.randint(0, 8)))
        pending = PendingLines(original.split("\n"))
        answer = ""
        for _ in range(12):
            if dice.random() < 0.1:
                answer = answer[: dice.randint(0, len(answer))]  # the shaped text changed
            answer += dice.choice([*words, "\n", "\n", "y"])
            assert pending.shown(answer) == while_streaming(original, answer), (original, answer)
