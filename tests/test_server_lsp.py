"""The real server over stdio with a tiny model on the CPU: streaming, sessions, cancel,
queueing, typing during a stream, bad input, Unicode positions, the fix loop, code actions
and status. One server serves the whole module (starting one costs seconds)."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcRequestCancelled

from copyspec_lsp.adapters.client import ChunkStream
from copyspec_lsp.adapters.line_index import count_units

from lsp_fixtures import (
    Editor,
    held_stream,
    open_gate,
    rebuilt,
    rng,
    server_command,
    start_editor,
    tiny_model,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PY_DOC = (
    "import os\n\n\ndef add(a, b):\n    total = a + b\n    return total\n\n\n"
    "class Box:\n    def size(self):\n        return 1\n"
)
MAX_NEW = 48
"""The module server's maxNewTokens. Runs that must still be going when a test acts hold on
the test gate (`held_stream`), not on a long budget: a cancelled run stops well short of it."""
SERVER_CANCELLED = types.LSPErrorCodes.ServerCancelled.value  # the server stopped it, not the user
HELD = 60
"""Seconds a test waits on a request the gate holds (its first edit, its end once the test
acted): a server that ignores the action fails the test here, not at the suite's timeout."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def editor(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    root = tmp_path_factory.mktemp("workspace")
    command = server_command(tiny_model(base), "--log-file", str(root / "server.log"))
    client = await start_editor(command, options={"gamma": 0, "maxNewTokens": MAX_NEW}, root=root)
    client.root = root
    await client.wait_ready()
    yield client
    await client.close()


def refine_params(uri: str, where: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"textDocument": {"uri": uri}, "range": where, "instruction": "rename total", **extra}


async def until(happened: Callable[[], bool], what: str, running: asyncio.Future[Any]) -> None:
    """Wait for something the server does while `running` is unanswered (the gate holds it):
    fails at once if the request ended first, else after HELD seconds."""
    deadline = asyncio.get_running_loop().time() + HELD
    while not happened():
        if running.done():
            raise AssertionError(f"the request ended before {what}: {running.result()!r}")
        assert asyncio.get_running_loop().time() < deadline, f"no {what} in {HELD} s"
        await asyncio.sleep(0.01)


def edits_to(editor: Editor, uri: str) -> int:
    """How many edits the server has sent for `uri` so far."""
    return sum(1 for e in editor.edits if uri in (e.edit.changes or {}))


async def settle(editor: Editor) -> dict[str, Any]:
    """Wait until the engine has no job left, then one more round trip: whatever a stopped
    request could still have sent has arrived by then. Returns the last status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while (await editor.status())["queue"]:
        assert loop.time() < deadline, "the engine never went idle"
        await asyncio.sleep(0.02)
    return await editor.status()


def text_at(editor: Editor, uri: str, where: dict[str, Any]) -> str:
    from copyspec_lsp.adapters.line_index import LineIndex
    from copyspec_lsp.flow.params import CONVERTER

    start, end = LineIndex(editor.docs[uri]).offsets(CONVERTER.structure(where, types.Range))
    return editor.docs[uri][start:end]


async def test_bad_initialization_option_warns_and_falls_back(editor: Editor) -> None:
    warnings = [m.message for m in editor.messages if m.type == types.MessageType.Warning]
    assert any("gamma" in w and "default 3" in w for w in warnings), warnings


async def test_streamed_edits_rebuild_the_final_text(editor: Editor) -> None:
    uri = "file:///stream.py"
    editor.open(uri, PY_DOC)
    edits_before, chunks_before = len(editor.edits), len(editor.chunks)
    result = await editor.request("copyspec/refine", refine_params(uri, rng((4, 6), (4, 6))))
    edits = editor.edits[edits_before:]
    assert len(edits) >= 2, "the answer should stream in more than one edit"
    assert all(e.label is None and e.edit.document_changes is None for e in edits)
    assert result["range"]["start"] == {"line": 3, "character": 0}, "expands to the function"
    expected = PY_DOC.replace(PY_DOC[PY_DOC.index("def add") : PY_DOC.index("\n\n\nclass")],
                              result["text"])
    assert editor.docs[uri] == expected
    assert text_at(editor, uri, result["range"]) == result["text"]
    chunks = [c for c in editor.chunks[chunks_before:] if c["uri"] == uri]
    assert chunks[-1]["final"] and chunks[-1]["text"] == result["text"]
    assert "text" not in chunks[0] or len(chunks) == 1, "only the last chunk has the whole text"
    assert rebuilt(chunks)[-1] == result["text"]
    assert result["stats"]["new_tokens"] > 0 and "forward_passes" in result["stats"]


async def test_the_gate_holds_a_stream_until_it_opens(editor: Editor) -> None:
    """The test gate (copyspec_lsp/adapters/gate.py) that every mid-stream test relies on. Closed, a
    request stops after its first edit: no further edit or chunk, no answer, its job still on
    the engine, through round trips that last longer than the whole request took ungated (a
    broken gate lets it finish within that). Opened, it completes with the same answer as
    the ungated run: holding loses nothing."""
    free_uri, uri = "file:///gate-free.py", "file:///gate.py"
    for each in (free_uri, uri):
        editor.open(each, PY_DOC)
    loop = asyncio.get_running_loop()
    started = loop.time()
    free = await editor.request("copyspec/refine", refine_params(free_uri, rng((4, 0), (4, 0))))
    took = loop.time() - started

    def chunks() -> int:
        return sum(1 for c in editor.chunks if c["uri"] == uri)

    with held_stream():
        running = asyncio.ensure_future(
            editor.request("copyspec/refine", refine_params(uri, rng((4, 0), (4, 0))))
        )
        await until(lambda: edits_to(editor, uri) > 0, "first edit", running)
        seen, held_since, round_trips = chunks(), loop.time(), 0
        while round_trips < 5 or loop.time() - held_since < 2 * took:
            status = await editor.status()
            round_trips += 1
            assert not running.done(), "the request was answered through a closed gate"
            assert edits_to(editor, uri) == 1, "a second edit went through a closed gate"
            assert chunks() == seen, "the model went on behind a closed gate"
            assert status["queue"] == 1, "the request's turn is still on the engine"
    result = await asyncio.wait_for(running, HELD)
    assert result["text"] == free["text"], "greedy: the held answer is the whole answer"
    assert result["stats"]["new_tokens"] == free["stats"]["new_tokens"]
    assert edits_to(editor, uri) >= 2 and editor.docs[uri] == editor.docs[free_uri]


async def test_apply_none_and_final(editor: Editor) -> None:
    uri = "file:///modes.py"
    editor.open(uri, PY_DOC)
    before = len(editor.edits)
    result = await editor.request("copyspec/refine", refine_params(uri, rng((4, 0), (4, 0)),
                                                                   apply="none"))
    assert len(editor.edits) == before and editor.docs[uri] == PY_DOC
    final = await editor.request("copyspec/refine", refine_params(uri, rng((4, 0), (4, 0)),
                                                                  apply="final"))
    assert len(editor.edits) == before + 1
    assert final["text"] == result["text"], "greedy decoding is deterministic"
    assert text_at(editor, uri, final["range"]) == final["text"]


async def test_follow_up_turn_copies_from_the_session(editor: Editor) -> None:
    uri = "file:///session.py"
    editor.open(uri, PY_DOC)
    where = rng((3, 0), (5, 16))
    first = await editor.request("copyspec/refine", refine_params(uri, where, maxNewTokens=120))
    ask = {"instruction": "now add type hints", "maxNewTokens": 120, "apply": "none"}
    fresh = await editor.request("copyspec/refine", {**refine_params(uri, first["range"]), **ask})
    follow = await editor.request(
        "copyspec/refine",
        {**refine_params(uri, first["range"]), **ask, "session": first["session"]},
    )
    assert follow["session"] == first["session"] and fresh["session"] != first["session"]
    assert follow["stats"]["cache_reused"] and follow["stats"]["reused_tokens"] > 0
    assert follow["stats"]["forward_passes"] < fresh["stats"]["forward_passes"]
    sessions = {s["session"]: s for s in (await editor.status())["sessions"]}
    assert sessions[first["session"]]["turns"] == 2


async def cancelled_mid_stream(editor: Editor, uri: str, cancel) -> None:
    """Start a refinement held open by the test gate, cancel it from the first streamed edit,
    check that the model stopped short and that nothing follows."""
    editor.open(uri, PY_DOC)
    fired: list[int] = []

    def on_edit(client: Editor, edited: str) -> None:
        if edited == uri and not fired:
            fired.append(len(client.edits))
            cancel(client)

    editor.on_edit = on_edit
    try:
        with held_stream(), pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(editor.request(
                "copyspec/refine", refine_params(uri, rng((4, 0), (4, 0))), msg_id=uri), HELD)
    finally:
        editor.on_edit = None
    assert fired, "no edit was streamed before the answer ended"
    count = edits_to(editor, uri)
    status = await settle(editor)
    assert edits_to(editor, uri) == count, "an edit followed the cancel"
    assert status["lastStats"]["cancelled"], status["lastStats"]
    assert status["lastStats"]["new_tokens"] < MAX_NEW


async def test_cancel_request_stops_the_model(editor: Editor) -> None:
    uri = "file:///cancel.py"
    await cancelled_mid_stream(
        editor, uri, lambda client: client.cancel_request(types.CancelParams(id=uri))
    )


async def test_progress_cancel_stops_the_model(editor: Editor) -> None:
    def cancel(client: Editor) -> None:
        begun = [p.token for p in client.progress
                 if p.value["kind"] == "begin" and "refine" in p.value["title"]]
        client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(begun[-1]))

    await cancelled_mid_stream(editor, "file:///progress.py", cancel)


async def test_cancel_command_stops_an_execute_command_job(editor: Editor) -> None:
    uri = "file:///command.py"
    editor.open(uri, PY_DOC)
    args = {"uri": uri, "range": rng((4, 0), (4, 0)), "instruction": "x"}
    with held_stream():  # the job is still running when copyspec.cancel arrives
        running = asyncio.ensure_future(editor.workspace_execute_command_async(
            types.ExecuteCommandParams("copyspec.refine", [args])
        ))
        await until(lambda: any(c["uri"] == uri for c in editor.chunks), "chunk", running)
        answer = await editor.workspace_execute_command_async(
            types.ExecuteCommandParams("copyspec.cancel", [{"uri": uri}])
        )
        assert plain_dict(answer) == {"cancelled": 1}
        with pytest.raises(JsonRpcRequestCancelled, match=r"copyspec\.cancel"):
            await asyncio.wait_for(running, HELD)
    assert (await settle(editor))["lastStats"]["cancelled"], "the model stopped mid-answer"


async def test_commands_run_the_same_jobs(editor: Editor) -> None:
    uri = "file:///command-ok.py"
    editor.open(uri, PY_DOC)
    args = {"uri": uri, "range": rng((4, 0), (4, 0)), "instruction": "rename total"}
    result = plain_dict(await editor.workspace_execute_command_async(
        types.ExecuteCommandParams("copyspec.refine", [args])
    ))
    assert result["text"] and text_at(editor, uri, result["range"]) == result["text"]
    with pytest.raises(JsonRpcException, match="instruction is empty"):
        await editor.workspace_execute_command_async(
            types.ExecuteCommandParams("copyspec.refine", [{"uri": uri, "range": args["range"]}])
        )


async def test_cancel_does_not_wait_for_an_unanswered_edit(editor: Editor) -> None:
    """The editor never answers the first edit; the gate holds the model meanwhile, so the
    cancel finds both the edit and the model's turn unfinished."""
    uri = "file:///stuck.py"
    editor.open(uri, PY_DOC)
    editor.hold_edits = asyncio.Event()
    try:
        before = len(editor.edits)
        with held_stream():
            running = asyncio.ensure_future(editor.request(
                "copyspec/refine", refine_params(uri, rng((4, 0), (4, 0)))
            ))
            await until(lambda: len(editor.edits) > before, "edit", running)
            answer = await editor.workspace_execute_command_async(
                types.ExecuteCommandParams("copyspec.cancel", [{"uri": uri}])
            )
            assert plain_dict(answer) == {"cancelled": 1}
            with pytest.raises(JsonRpcRequestCancelled):
                await asyncio.wait_for(running, 10)
    finally:
        editor.hold_edits.set()
        editor.hold_edits = None
    status = await settle(editor)  # the late answer to the edit has been handled too
    assert len(editor.edits) == before + 1, "no edit after the cancel was answered"
    assert status["lastStats"]["cancelled"], "the model stopped mid-answer"


def plain_dict(value: Any) -> Any:
    from copyspec_lsp.flow.params import plain

    return plain(value)


async def test_the_turn_runs_while_the_progress_bar_is_being_created(editor: Editor) -> None:
    """The model does not wait for the editor to grant the progress bar (a round trip on
    every request); the bar still begins before the first chunk, with the latest message."""
    uri = "file:///slow-progress.py"
    editor.open(uri, PY_DOC)
    before = (await editor.status()).get("lastStats")
    editor.hold_progress = asyncio.Event()
    try:
        running = asyncio.ensure_future(editor.request(
            "copyspec/refine", refine_params(uri, rng((4, 0), (4, 0)), maxNewTokens=20)
        ))
        deadline = asyncio.get_running_loop().time() + HELD
        while (await editor.status()).get("lastStats") == before:  # the turn has run
            assert not running.done() and asyncio.get_running_loop().time() < deadline, (
                "the turn waited for the progress bar")
            await asyncio.sleep(0.01)
        assert not any(c["uri"] == uri for c in editor.chunks), "a chunk came before the bar"
        first_seen = len(editor.arrivals)
        editor.hold_progress.set()
        result = await asyncio.wait_for(running, HELD)
    finally:
        editor.hold_progress = None
    arrived = editor.arrivals[first_seen:]
    assert arrived[0] == "progress begin" and "chunk" in arrived, arrived
    assert result["text"] and text_at(editor, uri, result["range"]) == result["text"]


async def test_requests_queue_and_report_their_place(editor: Editor) -> None:
    uris = ["file:///queue-a.py", "file:///queue-b.py"]
    for uri in uris:
        editor.open(uri, PY_DOC)
    reports_before = len(editor.progress)

    def messages() -> list[str]:
        return [p.value.get("message", "") for p in editor.progress[reports_before:]]

    with held_stream():  # the first job holds the engine, so the second one has to queue
        running = [asyncio.ensure_future(editor.request(
            "copyspec/refine", refine_params(uri, rng((4, 0), (4, 0)), maxNewTokens=60)
        )) for uri in uris]
        queued = asyncio.gather(*running)
        await until(lambda: any(m.startswith("queued: 1 ahead") for m in messages()),
                    "report of the second job's place in the queue", queued)
    results = await asyncio.wait_for(queued, HELD)
    assert [editor.docs[u].count(r["text"]) for u, r in zip(uris, results, strict=True)] == [1, 1]
    every = [p.value.get("message", "") for p in editor.progress]
    assert any(re.fullmatch(r"\d+ tok/s · \d+% copied", m) for m in every), every


async def test_new_refine_of_the_same_region_cancels_the_old_one(editor: Editor) -> None:
    uri = "file:///supersede.py"
    editor.open(uri, PY_DOC)
    with held_stream():  # the old answer is still streaming when the new request arrives
        old = asyncio.ensure_future(editor.request(
            "copyspec/refine", refine_params(uri, rng((4, 0), (4, 0)), apply="none")
        ))
        await until(lambda: any(c["uri"] == uri for c in editor.chunks), "chunk", old)
        new = asyncio.ensure_future(editor.request(
            "copyspec/refine", refine_params(uri, rng((5, 0), (5, 0)), apply="none")
        ))
        with pytest.raises(JsonRpcException, match="superseded") as stopped:
            await asyncio.wait_for(old, HELD)
    assert stopped.value.code == SERVER_CANCELLED
    assert (await asyncio.wait_for(new, HELD))["text"]


async def test_typing_outside_the_region_moves_it(editor: Editor) -> None:
    """The user types above and below the region at the first edit, while the gate holds the
    model there; then the rest streams into the moved region."""
    uri = "file:///outside.py"
    editor.open(uri, PY_DOC)
    typed: list[int] = []

    def on_edit(client: Editor, edited: str) -> None:
        if edited == uri and not typed:
            typed.append(edits_to(client, uri))
            client.change(uri, types.Range(types.Position(0, 0), types.Position(0, 0)), "# hi\n")
            end = len(client.docs[uri].splitlines())
            client.change(uri, types.Range(types.Position(end, 0), types.Position(end, 0)), "x=1\n")
            open_gate()  # the rest of the answer streams after the typing

    editor.on_edit = on_edit
    try:
        with held_stream():
            result = await asyncio.wait_for(editor.request(
                "copyspec/refine", refine_params(uri, rng((4, 0), (4, 0)))), HELD)
    finally:
        editor.on_edit = None
    assert typed and edits_to(editor, uri) > typed[0], "no edit came after the typing"
    assert editor.docs[uri].startswith("# hi\nimport os\n") and editor.docs[uri].endswith("x=1\n")
    assert result["range"]["start"]["line"] == 4
    assert text_at(editor, uri, result["range"]) == result["text"]
    assert "class Box:" in editor.docs[uri]


async def test_typing_inside_the_region_cancels_and_keeps_the_users_text(editor: Editor) -> None:
    uri = "file:///inside.py"
    editor.open(uri, PY_DOC)
    typed: list[str] = []

    def on_edit(client: Editor, edited: str) -> None:
        if edited == uri and not typed:
            assert client.docs[uri].splitlines()[3], "the region holds streamed text"
            client.change(uri, types.Range(types.Position(3, 0), types.Position(3, 1)), "USER")
            typed.append(client.docs[uri])

    editor.on_edit = on_edit
    try:
        with held_stream(), pytest.raises(JsonRpcException, match="edited") as stopped:
            await asyncio.wait_for(editor.request(
                "copyspec/refine", refine_params(uri, rng((4, 0), (4, 0)))), HELD)
        assert stopped.value.code == SERVER_CANCELLED
    finally:
        editor.on_edit = None
    status = await settle(editor)
    assert typed and editor.docs[uri] == typed[0] and "USER" in editor.docs[uri]
    assert status["lastStats"]["cancelled"], "the model stopped mid-answer"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (refine_params("file:///nowhere.py", rng((0, 0), (0, 1))), "unknown document"),
        (refine_params("file:///bad.py", rng((400, 0), (401, 0))), "outside the document"),
        ({**refine_params("file:///bad.py", rng((0, 0), (0, 1))), "instruction": "  "}, "empty"),
        ({"textDocument": {"uri": "file:///bad.py"}, "instruction": "x"}, "range is missing"),
        ({**refine_params("file:///bad.py", rng((0, 0), (0, 1))), "range": {"start": 3}},
         "not a valid Range"),
        ({**refine_params("file:///bad.py", rng((0, 0), (0, 1))), "apply": "later"}, "apply"),
        ({**refine_params("file:///bad.py", rng((0, 0), (0, 1))), "maxNewTokens": 0},
         "maxNewTokens"),
        (refine_params("file:///bad.py", rng((2, 0), (82, 0))), "context window is 1024"),
    ],
)
async def test_bad_input_gets_a_clear_error(editor: Editor, params: dict, message: str) -> None:
    editor.open("file:///bad.py", "x = 1\ny = 2\n" + "z = 3 + 4 + 5 + 6\n" * 80)
    with pytest.raises(JsonRpcInvalidParams, match=message):
        await editor.request("copyspec/refine", params)
    assert (await editor.status())["state"] == "ready"


async def test_malformed_params_object(editor: Editor) -> None:
    with pytest.raises(JsonRpcException, match="params must be an object"):
        await editor.request("copyspec/refine", [1, 2])


async def test_utf16_positions_with_emoji_and_cjk(editor: Editor) -> None:
    uri = "file:///unicode.txt"
    line = 's = "😀 中文"; t = 1'
    text = f"# 注释 🎉\n{line}\nend\n"
    editor.open(uri, text, language_id="plaintext")
    start = count_units(line[: line.index("t = 1")], "utf-16")
    assert start == len(line[: line.index("t = 1")]) + 1, "the emoji is two UTF-16 units"
    where = rng((1, start), (1, start + 5))
    result = await editor.request("copyspec/refine", refine_params(uri, where))
    assert editor.docs[uri].startswith(f'# 注释 🎉\ns = "😀 中文"; {result["text"]}')
    assert editor.docs[uri].endswith("\nend\n")
    assert result["range"]["start"] == {"line": 1, "character": start}
    assert text_at(editor, uri, result["range"]) == result["text"]


async def configure(editor: Editor, **settings: Any) -> None:
    editor.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"copyspec": settings})
    )
    await editor.status()  # a round trip: the notification has been handled


def fix_params(uri: str, **extra: Any) -> dict[str, Any]:
    diagnostic = {"range": rng((1, 0), (1, 5)), "message": "NameError: name 'y' is not defined"}
    return {"textDocument": {"uri": uri}, "range": rng((1, 0), (1, 5)),
            "diagnostics": [diagnostic], "maxNewTokens": 24, **extra}


CHECK = "import os, sys; print('check says boom in', os.getcwd()); sys.exit({code})"


async def test_fix_stops_as_soon_as_the_check_passes(editor: Editor) -> None:
    uri = "file:///fix-pass.txt"
    editor.open(uri, "a\nx = y\nb\n", language_id="plaintext")
    counter = editor.root / "attempts"
    script = (f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
              "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
              "print('attempt', n, 'fails'); sys.exit(0 if n >= 2 else 1)")
    await configure(editor, checkCommand=[sys.executable, "-c", script, "{file}"])
    try:
        result = await editor.request("copyspec/fix", fix_params(uri, maxTurns=3))
    finally:
        await configure(editor, checkCommand=None)
    turns = result["turns"]
    assert result["ok"] is True and len(turns) == 2 and counter.read_text() == "2"
    assert turns[0]["instruction"].startswith("```\nx = y\n```\nFix this error: NameError")
    assert turns[0]["check"] == {"ok": False, "errors": ["attempt 1 fails"]}
    assert turns[1]["instruction"] == "That fails with: attempt 1 fails\nPlease fix it."
    assert turns[1]["check"]["ok"] and result["text"] == turns[1]["text"]
    assert all(t["stats"]["new_tokens"] > 0 for t in turns)
    assert turns[1]["stats"]["cache_reused"], "the retry is the next turn of the same session"


async def test_fix_gives_up_after_max_turns(editor: Editor) -> None:
    uri = "file:///fix-fail.txt"
    editor.open(uri, "a\nx = y\nb\n", language_id="plaintext")
    await configure(editor, checkCommand=[sys.executable, "-c", CHECK.format(code=1)])
    try:
        result = await editor.request("copyspec/fix", fix_params(uri, maxTurns=2))
    finally:
        await configure(editor, checkCommand=None)
    assert result["ok"] is False and len(result["turns"]) == 2
    said = f"check says boom in {editor.root}"  # it ran in the workspace root
    assert all(t["check"] == {"ok": False, "errors": [said]} for t in result["turns"])
    assert said in result["turns"][1]["instruction"]


async def test_fix_checks_syntax_with_tree_sitter(editor: Editor) -> None:
    uri = "file:///fix-syntax.py"
    editor.open(uri, "def f(x):\n    return x +\n", language_id="python")
    params = fix_params(uri, maxTurns=2, range=rng((0, 0), (1, 14)), apply="none")
    params["diagnostics"][0]["message"] = "SyntaxError: invalid syntax"
    result = await editor.request("copyspec/fix", params)
    assert len(result["turns"]) == 2 and result["ok"] is False, "tiny-model gibberish never parses"
    assert result["turns"][0]["check"]["errors"][0].startswith("SyntaxError")
    assert result["turns"][1]["instruction"].startswith("That fails with: SyntaxError")


async def test_code_actions_are_offered(editor: Editor) -> None:
    uri = "file:///actions.py"
    editor.open(uri, PY_DOC)
    diagnostic = types.Diagnostic(types.Range(types.Position(4, 4), types.Position(4, 9)), "bad")
    actions = await editor.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(uri),
        types.Range(types.Position(4, 0), types.Position(5, 0)),
        types.CodeActionContext([diagnostic]),
    ))
    kinds = {a.kind: a for a in actions}
    refine, fix = kinds[types.CodeActionKind.RefactorRewrite], kinds[types.CodeActionKind.QuickFix]
    assert refine.title == "CopySpec: refine selection…"
    assert refine.command.command == "copyspec.refine"
    assert fix.title == "CopySpec: fix this error" and fix.command.command == "copyspec.fix"
    argument = plain_dict(fix.command.arguments[0])
    assert argument["uri"] == uri and argument["diagnostics"][0]["message"] == "bad"


async def test_status_reports_the_model(editor: Editor) -> None:
    uri = "file:///status.py"
    editor.open(uri, PY_DOC)  # a turn of its own: the test passes alone and in any order
    await editor.request("copyspec/refine", refine_params(uri, rng((4, 0), (4, 17)), apply="none"))
    status = await editor.status()
    assert status["state"] == "ready" and status["model"].endswith("tiny-llama-0.1")
    assert status["device"] == "cpu" and status["dtype"] == "float32"
    assert status["version"] and isinstance(status["sessions"], list)
    assert "passes_per_token" in status["lastStats"]


async def test_a_failure_inside_the_model_is_reported_and_the_server_stays_up(
    editor: Editor, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A model whose embedding is smaller than its tokenizer fails inside the forward pass."""
    from tiny_models import build_model, build_tokenizer, save

    tokenizer = build_tokenizer()
    model = build_model("llama", tokenizer)
    model.resize_token_embeddings(20)
    from engine.loading import LoadedModel

    broken = tmp_path_factory.mktemp("broken-model")
    save(LoadedModel(model, tokenizer, "broken", model.device, model.dtype), broken)
    uri = "file:///model-failure.py"
    editor.open(uri, PY_DOC)
    await configure(editor, model=str(broken))
    try:
        await editor.wait_ready()
        with pytest.raises(JsonRpcException, match="the model failed"):
            await editor.request("copyspec/refine", refine_params(uri, rng((4, 0), (4, 0))))
    finally:
        await configure(editor, model=str(tiny_model(tmp_path_factory.getbasetemp())))
        await editor.wait_ready()
    result = await editor.request("copyspec/refine", refine_params(uri, rng((4, 0), (4, 0))))
    assert result["text"]


async def test_a_draft_model_is_loaded_and_leaves_the_answer_unchanged(
    editor: Editor, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Whether a draft pays is the engine's cost-aware call (a draft as big as this tiny target
    never does; tests/test_draft.py checks drafting itself): here, the server loads the draft
    model, reports it, and answers exactly as without it."""
    draft = tiny_model(tmp_path_factory.getbasetemp(), mixing=0.25, seed=1)
    uri = "file:///draft.py"
    editor.open(uri, PY_DOC)
    params = refine_params(uri, rng((4, 0), (4, 0)), apply="none")
    without = await editor.request("copyspec/refine", params)
    await configure(editor, draftModel=str(draft))
    try:
        status = await editor.wait_ready()
        assert status["draftModel"] == str(draft)
        drafted = await editor.request("copyspec/refine", params)
        assert drafted["text"] == without["text"]
    finally:
        await configure(editor, draftModel=None)
        assert (await editor.wait_ready())["draftModel"] is None


@pytest.mark.timeout(10)
async def test_chunk_changes_rebuild_each_text_in_utf16_units() -> None:
    """A chunk's `start` and `length` count UTF-16 code units (an emoji is two), and a text
    that does not extend the last one (shaping took something back) is sent from where they
    first differ."""
    texts = ["", "a😀", "a😀b\n", "a😀b\nc", "a😀X", "a😀X😀 é", "a😀X😀 é"]
    stream = ChunkStream()
    chunks = []
    for text in texts[1:]:
        change = stream.change(text)
        chunks.append({"seq": change.seq, "start": change.start, "insert": change.insert,
                       "length": change.length})
    assert rebuilt(chunks) == texts[1:]
    assert chunks[3]["start"] == 3 and chunks[3]["insert"] == "X", "sent from the first change"
