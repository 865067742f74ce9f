"""Malformed frames and params against the real server over stdio: after each bad input a
good request must still be answered (no wedge), the process must live (no crash), every
request gets exactly one answer, and no error message shows Python internals. Seeded."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from raw_rpc import UNCLEAR, RawServer, frame, message, rng, start

# slow lane: each test starts the real server in a subprocess (seconds of torch import)
pytestmark = pytest.mark.slow

SEED = 13
FUZZ_CASES = 120
URI = "file:///fuzz.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    raw = start(base, log_file=base / "framing.log")
    raw.initialize({"maxNewTokens": 4})
    raw.open(URI, "def f(x):\n    return x\n")
    yield raw
    raw.close()


FRAMING_CASES: list[tuple[str, bytes]] = [
    ("one byte short", b"Content-Length: 40\r\n\r\n" + json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "copyspec/status"}).encode()[:40]),
    ("one byte long", b"Content-Length: 57\r\n\r\n" + json.dumps(
        {"jsonrpc": "2.0", "id": "long", "method": "copyspec/status"}).encode()[:-1]),
    ("not a number", b"Content-Length: abc\r\n\r\n{}"),
    ("negative", b"Content-Length: -5\r\n\r\n{}"),
    ("huge", b"Content-Length: 1000000000000\r\n\r\n{}"),
    ("2^31", b"Content-Length: 2147483648\r\n\r\n{}"),
    ("lower case header", b"content-length: 2\r\n\r\n{}"),
    ("LF only", b"Content-Length: 2\n\n{}"),
    ("no header", b'{"jsonrpc": "2.0", "id": 9, "method": "copyspec/status"}\r\n'),
    ("two headers", b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
    ("garbage", b"\x00\xff\xfe garbage \r\n\r\n"),
    ("not UTF-8", frame(b"\xff\xfe{}")),
    ("not JSON", frame(b"{nope")),
    ("deep nesting", frame("[" * 10000 + "]" * 10000)),
    ("batch", message([{"jsonrpc": "2.0", "id": 2, "method": "copyspec/status"}])),
    ("a number", message(5)),
]


def check_alive(server: RawServer, name: str) -> None:
    """A good request after the bad input is answered: the reader resynchronised."""
    answer = server.call("copyspec/status", timeout=20)
    assert "result" in answer, (name, answer)
    assert server.proc.poll() is None, f"{name}: the server died"


def errors_since(server: RawServer, index: int) -> list[dict[str, Any]]:
    return [m["error"] for m in server.seen[index:] if "error" in m]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "data"), FRAMING_CASES, ids=[c[0] for c in FRAMING_CASES])
def test_bad_frames_never_wedge_or_crash(server: RawServer, name: str, data: bytes) -> None:
    index = len(server.seen)
    server.send_bytes(data)
    check_alive(server, name)
    for error in errors_since(server, index):
        assert not UNCLEAR.search(error["message"]), (name, error)


BAD_MESSAGES: list[tuple[str, dict[str, Any], int]] = [
    ("status without params", {"jsonrpc": "2.0", "id": 10, "method": "copyspec/status"}, 0),
    ("key type_name", {"jsonrpc": "2.0", "id": 11, "method": "copyspec/status",
                       "params": {"type_name": 1, "a b": 2}}, 0),
    ("no jsonrpc", {"id": 12, "method": "copyspec/status"}, -32600),
    ("jsonrpc 1.0", {"jsonrpc": "1.0", "id": 13, "method": "copyspec/status"}, -32600),
    ("method 5", {"jsonrpc": "2.0", "id": 14, "method": 5}, -32600),
    ("codeAction without range", {"jsonrpc": "2.0", "id": 15, "method": "textDocument/codeAction",
                                  "params": {"textDocument": {"uri": URI}, "context": {
                                      "diagnostics": []}}}, -32602),
    ("refine lone surrogate", {"jsonrpc": "2.0", "id": 16, "method": "copyspec/refine",
                               "params": {"textDocument": {"uri": URI},
                                          "range": rng((0, 0), (1, 0)),
                                          "instruction": "\ud800 x", "apply": "none"}}, -32602),
    ("refine 10 MB instruction", {"jsonrpc": "2.0", "id": 17, "method": "copyspec/refine",
                                  "params": {"textDocument": {"uri": URI},
                                             "range": rng((0, 0), (1, 0)),
                                             "instruction": "x" * 10_000_000}}, -32602),
    ("unknown method", {"jsonrpc": "2.0", "id": 18, "method": "nope/nope"}, -32601),
    ("second initialize", {"jsonrpc": "2.0", "id": 19, "method": "initialize",
                           "params": {"capabilities": {}}}, -32600),
    ("params a string", {"jsonrpc": "2.0", "id": 20, "method": "copyspec/status",
                         "params": "x"}, -32600),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "body", "code"), BAD_MESSAGES, ids=[c[0] for c in BAD_MESSAGES])
def test_every_request_gets_one_clear_answer(
    server: RawServer, name: str, body: dict[str, Any], code: int
) -> None:
    server.send(body)
    answer = server.response(body["id"], timeout=20)
    if code:
        assert answer.get("error", {}).get("code") == code, (name, answer)
        assert not UNCLEAR.search(answer["error"]["message"]), (name, answer)
    else:
        assert "result" in answer, (name, answer)
    check_alive(server, name)
    assert len(server.responses(body["id"])) == 1


@pytest.mark.timeout(120)
def test_notifications_about_unknown_documents_are_not_popped_up(server: RawServer) -> None:
    index = len(server.seen)
    server.notify("textDocument/didChange", {"textDocument": {"uri": "file:///nope.py",
                                                              "version": 2},
                                             "contentChanges": [{"text": "x"}]})
    server.notify("textDocument/didClose", {"textDocument": {"uri": "file:///nope.py"}})
    check_alive(server, "unknown document")
    assert not [m for m in server.seen[index:] if m.get("method") == "window/showMessage"]


def random_value(rand: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "str", "none", "bool", "float"] + (["list", "dict"] if depth < 3 else [])
    kind = rand.choice(kinds)
    if kind == "int":
        return rand.choice([0, -1, 1, 2**31, 2**63, rand.randint(-5, 5)])
    if kind == "str":
        return rand.choice(["", "x", "\ud800", "a b", URI, "file:///nope.py", "é" * 50])
    if kind == "list":
        return [random_value(rand, depth + 1) for _ in range(rand.randint(0, 3))]
    if kind == "dict":
        keys = ["uri", "range", "start", "line", "character", "textDocument", "instruction",
                "apply", "session", "maxTurns", "maxNewTokens", "diagnostics", "a b", "type_name"]
        return {rand.choice(keys): random_value(rand, depth + 1) for _ in range(rand.randint(0, 4))}
    return {"none": None, "bool": rand.random() < 0.5, "float": 0.5}[kind]


def random_params(rand: random.Random) -> Any:
    """Random, mostly well-shaped params: a valid refine/codeAction body with one field
    broken, or anything at all."""
    base = {"textDocument": {"uri": URI}, "range": rng((0, 0), (1, 0)), "instruction": "x",
            "apply": "none", "maxNewTokens": 2,
            "context": {"diagnostics": []}}
    if rand.random() < 0.3:
        return random_value(rand)
    key = rand.choice(list(base))
    base[key] = random_value(rand)
    return base


METHODS = ["copyspec/status", "copyspec/refine", "copyspec/fix", "textDocument/codeAction",
           "workspace/executeCommand", "shutdownx", "textDocument/hover"]


@pytest.mark.timeout(600)
def test_seeded_fuzz_of_frames_and_params(server: RawServer) -> None:
    """FUZZ_CASES random requests, some framed badly; counts are printed for the docs."""
    rand = random.Random(SEED)
    crashes = hangs = unclear = 0
    ids = []
    for case in range(FUZZ_CASES):
        msg_id = 5000 + case
        method = rand.choice(METHODS)
        params = random_params(rand)
        if method == "workspace/executeCommand":
            params = {"command": rand.choice(["copyspec.refine", "copyspec.cancel", "nope"]),
                      "arguments": [params]}
        data = message({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        if rand.random() < 0.2:  # a framing fault before it: the request itself may be lost
            fault = rand.choice(FRAMING_CASES)[1]
            data = fault + data
        server.send_bytes(data)
        ids.append(msg_id)
        if server.proc.poll() is not None:
            crashes += 1
            break
        check_alive(server, f"case {case}")
    for msg_id in ids:
        answers = server.responses(msg_id)
        assert len(answers) <= 1, answers
        for answer in answers:
            if "error" in answer and UNCLEAR.search(answer["error"]["message"]):
                unclear += 1
    answered = sum(bool(server.responses(i)) for i in ids)
    print(f"fuzz: {FUZZ_CASES} cases, {answered} answered, crashes={crashes}, hangs={hangs}, "
          f"unclear={unclear}")
    assert crashes == 0 and unclear == 0
    assert answered >= FUZZ_CASES * 0.75  # the rest were swallowed by the framing faults
