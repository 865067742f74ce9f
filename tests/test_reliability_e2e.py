"""End-to-end paths that had no test: the `copyspec.fix` command, didClose while an answer
streams, a reload with a job queued, CRLF and CR-only documents, and a session id reused on
another document."""

from __future__ import annotations

import time

import pytest
from lsprotocol import types

from copyspec_lsp.adapters.line_index import LineIndex
from copyspec_lsp.flow.params import CONVERTER
from copyspec_lsp.handlers.methods import MODEL_ERROR_CODE

from lsp_fixtures import held_stream
from raw_rpc import UNCLEAR, RawServer, rng, start

# slow lane: each test starts the real server in a subprocess (seconds of torch import)
pytestmark = pytest.mark.slow

DOC = "import os\n\n\ndef add(a, b):\n    total = a + b\n    return total\n"
REGION = rng((3, 0), (5, 16))
SERVER_CANCELLED = -32802


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    raw = start(base, log_file=base / "e2e.log")
    raw.initialize({"maxNewTokens": 24, "gamma": 0})
    raw.wait_ready()
    yield raw
    raw.close()


def params(uri: str, **extra: object) -> dict[str, object]:
    return {"textDocument": {"uri": uri}, "range": REGION, "instruction": "rename total",
            **extra}


def region_text(server: RawServer, uri: str, where: dict[str, object]) -> str:
    start, end = LineIndex(server.docs[uri]).offsets(CONVERTER.structure(where, types.Range))
    return server.docs[uri][start:end]


@pytest.mark.timeout(300)
def test_fix_command_runs_the_fix_loop(server: RawServer) -> None:
    uri = "file:///fixcmd.py"
    server.open(uri, DOC)
    argument = {"uri": uri, "range": REGION, "diagnostics": [
        {"range": rng((4, 4), (4, 9)), "message": "undefined name"}], "maxTurns": 2}
    answer = server.call("workspace/executeCommand",
                         {"command": "copyspec.fix", "arguments": [argument]}, timeout=120)
    result = answer["result"]
    assert 1 <= len(result["turns"]) <= 2 and isinstance(result["ok"], bool)
    assert "Fix this error: undefined name" in result["turns"][0]["instruction"]
    assert region_text(server, uri, result["range"]) == result["text"]


def queue_length(server: RawServer) -> int:
    """Jobs on the engine thread: the running one and those waiting behind it."""
    return server.call("copyspec/status")["result"]["queue"]


@pytest.mark.timeout(300)
def test_did_close_while_streaming_stops_the_request(server: RawServer) -> None:
    uri = "file:///close.py"
    server.open(uri, DOC)
    index = len(server.seen)
    with held_stream():  # the answer is still streaming when the document closes
        msg_id = server.request("copyspec/refine", params(uri))
        # seen only once answered and echoed: the close cannot pass for a missing echo
        server.wait(lambda m: m.get("method") == "workspace/applyEdit", 120, after=index)
        server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        answer = server.response(msg_id, 30)
    assert answer["error"]["code"] == SERVER_CANCELLED, answer


@pytest.mark.timeout(300)
def test_reload_with_a_job_queued_fails_it_clearly(server: RawServer) -> None:
    """A settings change that reloads the model while one job runs and another waits: the
    running one finishes on the model it started with, the waiting one fails with a message
    that says the model was reloaded (-32000, not a traceback, not a hang), and the reloaded model
    answers the next request. The gate holds the running job until both are in place."""
    uri = "file:///reload.py"
    server.open(uri, DOC)
    index = len(server.seen)
    with held_stream():
        running = server.request("copyspec/refine", params(uri, apply="none"))
        server.wait(lambda m: m.get("method") == "copyspec/chunk", 120, after=index)
        queued = server.request("copyspec/refine", {**params(uri, apply="none"),
                                                    "range": rng((0, 0), (0, 9))})
        deadline = time.monotonic() + 60
        while queue_length(server) < 2:
            assert time.monotonic() < deadline, "the second job never queued"
            time.sleep(0.02)
        try:
            # the server runs with --threads 1: a different count is what reloads the model
            server.notify("workspace/didChangeConfiguration", {"settings": {"threads": 2}})
            assert server.call("copyspec/status")["result"]["state"] == "loading"
            assert not server.responses(running) and not server.responses(queued)
        finally:
            server.notify("workspace/didChangeConfiguration", {"settings": {"threads": 1}})
    finished = server.response(running, 120)
    assert "result" in finished, finished
    failed = server.response(queued, 120)
    message = failed.get("error", {}).get("message", "")
    assert "reloaded" in message, failed
    assert failed["error"]["code"] == MODEL_ERROR_CODE, "the model was unavailable to it"
    assert not UNCLEAR.search(message), message
    server.wait_ready()
    assert "result" in server.call("copyspec/refine", params(uri, apply="none"), timeout=120)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_line_breaks_are_kept(server: RawServer, newline: str) -> None:
    uri = f"file:///breaks{len(newline)}.py"
    server.open(uri, DOC.replace("\n", newline))
    answer = server.call("copyspec/refine", params(uri, instruction="rename total to s"),
                         timeout=120)
    text = answer["result"]["text"]
    other = "\n" if newline == "\r" else "\r"
    assert other not in text.replace("\r\n", "") if newline == "\r\n" else "\n" not in text
    assert other not in server.docs[uri].replace(newline, "")
    assert region_text(server, uri, answer["result"]["range"]) == text


@pytest.mark.timeout(300)
def test_a_session_id_is_scoped_to_its_document(server: RawServer) -> None:
    first, second = "file:///s1.py", "file:///s2.py"
    server.open(first, DOC)
    server.open(second, DOC)
    server.call("copyspec/refine", params(first, session="same", apply="none"), timeout=120)
    server.call("copyspec/refine", params(second, session="same", apply="none"), timeout=120)
    sessions = server.call("copyspec/status")["result"]["sessions"]
    mine = [(s["uri"], s["turns"]) for s in sessions if s["session"] == "same"]
    assert sorted(mine) == [(first, 1), (second, 1)], mine
