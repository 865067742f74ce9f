"""Every request on the wire gets an answer, and no document goes silently out of sync: the
cases a malformed-input harness found against the real `copyspec-lsp --stdio` (issue 21,
point 4). One server for the module; each case ends by checking that the server still answers.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lsp_fixtures import held_stream
from raw_rpc import UNCLEAR, RawServer, frame, message, rng, start

pytestmark = pytest.mark.timeout(120)

DOC = "def f(x):\n    return x\n"
LOG = "wire.log"
NAMES = itertools.count()
"""A fresh document name per case."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawServer]:
    base = tmp_path_factory.getbasetemp()
    raw = start(base, log_file=base / LOG)
    raw.initialize({"maxNewTokens": 2})
    raw.wait_ready()
    yield raw
    raw.close()


def log_text(server: RawServer) -> str:
    return Path(server.log.name).read_text(errors="replace")


def check_alive(server: RawServer) -> None:
    assert "result" in server.call("copyspec/status", timeout=20)
    assert server.proc.poll() is None


def refine(server: RawServer, uri: str, line: int = 0) -> dict[str, Any]:
    return server.call("copyspec/refine", {
        "textDocument": {"uri": uri}, "range": rng((line, 0), (line + 1, 0)),
        "instruction": "rename x", "apply": "none"})


def clear(text: str) -> str:
    assert not UNCLEAR.search(text), text
    return text


# ids

@pytest.mark.parametrize("msg_id", [1.5, 2.0, -0.25])
def test_any_number_is_an_id_and_answered_under_it(server: RawServer, msg_id: float) -> None:
    """JSON-RPC allows any number as an id, not only whole ones."""
    server.send({"jsonrpc": "2.0", "id": msg_id, "method": "copyspec/status"})
    assert "result" in server.response(msg_id, timeout=20)
    server.open("file:///ids.py", DOC)
    server.send({"jsonrpc": "2.0", "id": msg_id, "method": "textDocument/codeAction",
                 "params": {"textDocument": {"uri": "file:///ids.py"},
                            "range": rng((0, 0), (0, 3)), "context": {"diagnostics": []}}})
    answer = server.wait(lambda m: m.get("id") == msg_id and isinstance(m.get("result"), list))
    assert answer["result"][0]["command"]["command"] == "copyspec.refine", answer
    assert len(server.responses(msg_id)) == 2
    assert isinstance(answer["id"], type(msg_id))


def test_a_cancel_reaches_a_request_with_a_fractional_id(server: RawServer) -> None:
    uri = "file:///cancel-fraction.py"
    server.open(uri, DOC)
    index = len(server.seen)
    with held_stream():
        server.send({"jsonrpc": "2.0", "id": 7.5, "method": "copyspec/refine", "params": {
            "textDocument": {"uri": uri}, "range": rng((0, 0), (2, 0)),
            "instruction": "rename x", "maxNewTokens": 40}})
        server.wait(lambda m: m.get("method") == "workspace/applyEdit", 60, after=index)
        server.notify("$/cancelRequest", {"id": 7.5})
        answer = server.response(7.5)
    assert answer["error"]["code"] == -32800, answer


@pytest.mark.parametrize(("msg_id", "kind"), [(True, "true"), ({"a": 1}, "an object"),
                                              ([1], "an array"), (None, "null")])
def test_an_invalid_id_gets_invalid_request_with_id_null(
    server: RawServer, msg_id: Any, kind: str
) -> None:
    index = len(server.seen)
    server.send({"jsonrpc": "2.0", "id": msg_id, "method": "copyspec/status"})
    answer = server.wait(lambda m: "error" in m, 20, after=index)
    assert "id" in answer and answer["id"] is None, answer
    assert answer["error"]["code"] == -32600
    assert clear(answer["error"]["message"]) == (
        f"invalid message: id must be a number or a string, not {kind}")
    check_alive(server)


def test_a_parse_error_says_id_null(server: RawServer) -> None:
    index = len(server.seen)
    server.send_bytes(frame(b"{nope"))
    answer = server.wait(lambda m: "error" in m, 20, after=index)
    assert "id" in answer and answer["id"] is None and answer["error"]["code"] == -32700


# nesting

@pytest.mark.parametrize("depth", [150, 10_000])
def test_deep_params_are_refused_under_the_request_id(server: RawServer, depth: int) -> None:
    """150 levels decode (the limit refuses them); 10,000 exceed Python's decoder."""
    msg_id = f"deep {depth}"  # not a number: RawServer numbers its own requests
    head = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "copyspec/refine"})[:-1]
    body = head + ', "params": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    server.send_bytes(frame(body))
    answer = server.response(msg_id, timeout=20)
    assert answer["error"]["code"] == -32600, answer
    assert clear(answer["error"]["message"]) == (
        "invalid message: it nests objects and arrays more than 100 levels deep")
    check_alive(server)


def test_nesting_within_the_limit_is_served(server: RawServer) -> None:
    """The limit leaves room: LSPAny (a diagnostic's data) 90 levels deep still goes through
    cattrs and back."""
    server.open("file:///nested.py", DOC)
    data: Any = 1
    for _ in range(90):
        data = [data]
    diagnostic = {"range": rng((0, 0), (0, 1)), "message": "m", "data": data}
    answer = server.call("textDocument/codeAction", {
        "textDocument": {"uri": "file:///nested.py"}, "range": rng((0, 0), (0, 1)),
        "context": {"diagnostics": [diagnostic]}})
    assert answer["result"][-1]["diagnostics"][0]["data"] == data, answer


# framing

HEADER_RUNS = {
    "a 20 MB header line": b"Content-Length: 2\r\nX-Junk: " + b"a" * 20_000_000,
    "a million header lines": b"Content-Length: 2\r\n" * 1_000_000,
}


@pytest.mark.parametrize("junk", HEADER_RUNS.values(), ids=HEADER_RUNS.keys())
def test_a_run_of_bad_headers_gets_one_answer_and_one_log_line(
    server: RawServer, junk: bytes
) -> None:
    """The next request, written right behind the junk, is answered; the junk costs one
    -32700 and one "skipped" line in the log, however long it is."""
    index = len(server.seen)
    logged = log_text(server).count("that were not a message")
    msg_id = f"after {len(junk)} bytes"
    server.send_bytes(junk + message({"jsonrpc": "2.0", "id": msg_id,
                                      "method": "copyspec/status"}))
    assert "result" in server.response(msg_id, timeout=60)
    errors = [m for m in server.seen[index:] if "error" in m]
    assert [e["error"]["code"] for e in errors] == [-32700], errors
    assert clear(errors[0]["error"]["message"]).startswith("parse error: a header block longer")
    assert log_text(server).count("that were not a message") == logged + 1


# documents out of sync

def bad_utf8_change(uri: str) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
        "textDocument": {"uri": uri, "version": 5},
        "contentChanges": [{"range": rng((0, 0), (0, 0)), "text": "@@"}]}})
    return frame(body.encode().replace(b'"@@"', b'"\xff"'))


def change(uri: str, version: int, where: Any) -> bytes:
    return message({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
        "textDocument": {"uri": uri, "version": version},
        "contentChanges": [{"range": where, "text": "y"}]}})


BAD_CHANGES = {
    "range outside": (lambda uri: change(uri, 5, rng((99, 0), (99, 1))),
                      "a change did not fit the document: line 99 is outside the document "
                      "(3 lines)"),
    "reversed range": (lambda uri: change(uri, 5, rng((1, 0), (0, 0))),
                       "a change did not fit the document: the range ends before it starts"),
    "version going back": (lambda uri: change(uri, 0, rng((0, 0), (0, 0))),
                           "a change came with version 0, older than the document's version 1"),
    "malformed": (lambda uri: change(uri, 5, "nope"), "a change could not be read"),
    "not UTF-8": (bad_utf8_change, "a change could not be read"),
}


@pytest.mark.parametrize(("bad", "why"), BAD_CHANGES.values(), ids=BAD_CHANGES.keys())
@pytest.mark.parametrize("resync", ["full text", "didOpen"])
def test_a_change_that_does_not_fit_leaves_the_document_out_of_sync(
    server: RawServer, bad: Any, why: str, resync: str
) -> None:
    """Said once to the user, said by every refine until the client sends the whole text."""
    uri = f"file:///sync-{next(NAMES)}.py"
    server.open(uri, DOC)
    index = len(server.seen)
    server.send_bytes(bad(uri))
    answer = refine(server, uri)
    expected = f"{uri} is out of sync with the editor ({why}): close and reopen it, then try again"
    assert answer.get("error", {}).get("message") == expected, answer
    assert clear(answer["error"]["message"])
    server.send_bytes(change(uri, 9, rng((0, 0), (0, 0))))  # ignored: out of sync already
    assert refine(server, uri)["error"]["message"] == expected
    assert server.call("textDocument/codeAction", {
        "textDocument": {"uri": uri}, "range": rng((0, 0), (0, 1)),
        "context": {"diagnostics": []}})["result"], "its actions stay: they say what to do"
    shown = [m["params"]["message"] for m in server.seen[index:]
             if m.get("method") == "window/showMessage"]
    assert shown == [f"CopySpec: {uri} is out of sync with the editor ({why}). "
                     "Close and reopen it."], shown
    assert clear(shown[0])
    if resync == "full text":
        server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 10},
                                                 "contentChanges": [{"text": DOC}]})
    else:
        server.open(uri, DOC)
    answer = refine(server, uri)
    assert answer["result"]["replacedRange"] == rng((0, 0), (0, 9)), answer


def test_a_refine_streaming_when_its_document_goes_out_of_sync_stops(server: RawServer) -> None:
    uri = "file:///sync-streaming.py"
    server.open(uri, DOC)
    index = len(server.seen)
    with held_stream():
        msg_id = server.request("copyspec/refine", {
            "textDocument": {"uri": uri}, "range": rng((0, 0), (2, 0)),
            "instruction": "rename x", "maxNewTokens": 40})
        server.wait(lambda m: m.get("method") == "workspace/applyEdit", 60, after=index)
        server.send_bytes(change(uri, 100, rng((99, 0), (99, 1))))
        answer = server.response(msg_id)
    assert answer["error"]["code"] == -32802, answer
    assert "out of sync with the editor" in clear(answer["error"]["message"])


# lone surrogates

SURROGATE_CHANGES = {
    "full text": lambda uri: message({
        "jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [{"text": "def é(x):\n    return \ud800x\n"}]}}),
    "in a range": lambda uri: message({
        "jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [{"range": rng((1, 11), (1, 11)), "text": "é\ud800"}]}}),
    "encoded alone": lambda uri: frame(json.dumps({
        "jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [{"range": rng((1, 11), (1, 11)), "text": "@@"}]}}
    ).encode().replace(b"@@", b"\xed\xa0\x80")),
}


@pytest.mark.parametrize("send", SURROGATE_CHANGES.values(), ids=SURROGATE_CHANGES.keys())
def test_a_lone_surrogate_in_a_change_is_named_with_its_line(server: RawServer, send: Any) -> None:
    """The text is kept as sent (the document stays in sync); a refine of that line says what
    is wrong, one of another line works."""
    uri = f"file:///surrogate-{next(NAMES)}.py"
    server.open(uri, DOC)
    server.send_bytes(send(uri))
    answer = refine(server, uri, line=1)
    assert clear(answer["error"]["message"]) == (
        "the region has an unpaired surrogate at line 2: it cannot be encoded as UTF-8"), answer
    assert "result" in refine(server, uri, line=0)
    assert f"{uri} has an unpaired surrogate at line 2" in log_text(server)
