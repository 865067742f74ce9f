"""Lifecycle faults against the real server over stdio: requests before initialize, exit
without shutdown, stdin closing mid-stream, cancel of a workspace/executeCommand job, shutdown
with work running, and check commands whose children must not outlive their timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from lsp_fixtures import held_stream
from raw_rpc import RawServer, rng, start

# slow lane: each test starts the real server in a subprocess (seconds of torch import)
pytestmark = pytest.mark.slow

URI = "file:///life.py"
DOC = "import os\n\n\ndef add(a, b):\n    total = a + b\n    return total\n"
REGION = rng((3, 0), (5, 16))
SERVER_CANCELLED = -32802
MAX_NEW = 48
"""Enough for a streamed answer; a test that must act while it streams holds it open with the
test gate (`held_stream`), never with a long budget."""


def refine(uri: str = URI, **extra: object) -> dict[str, object]:
    return {"textDocument": {"uri": uri}, "range": REGION, "instruction": "rename total",
            **extra}


def group_alive(pid_file: Path) -> bool:
    """Whether a live (not zombie) process is left in the group the check command led."""
    group = int(pid_file.read_text().split()[0])
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == group and process.info["status"] != "zombie":
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


@pytest.mark.timeout(300)
def test_before_initialize_and_exit_without_shutdown(tmp_path_factory) -> None:
    server = start(tmp_path_factory.getbasetemp())
    try:
        status = server.call("copyspec/status", timeout=180)
        assert status["error"]["code"] == -32002, status
        server.initialize()
        again = server.call("initialize", {"capabilities": {}})
        assert again["error"]["code"] == -32600 and "already" in again["error"]["message"]
        started = time.monotonic()
        server.notify("exit")
        assert server.exit_code(10) == 1, "exit without shutdown must exit 1"
        print(f"exit without shutdown: {time.monotonic() - started:.2f} s")
    finally:
        server.close()


@pytest.mark.timeout(300)
def test_stdin_closing_mid_stream_exits_0_quickly(tmp_path_factory) -> None:
    """The gate holds the answer open, so stdin closes while the model's turn is running."""
    server = start(tmp_path_factory.getbasetemp())
    try:
        server.initialize({"maxNewTokens": MAX_NEW, "gamma": 0})
        server.wait_ready()
        server.open(URI, DOC)
        index = len(server.seen)
        with held_stream():
            msg_id = server.request("copyspec/refine", refine())
            server.wait(lambda m: m.get("method") == "copyspec/chunk", 120, after=index)
            assert not server.responses(msg_id)
            started = time.monotonic()
            assert server.proc.stdin is not None
            server.proc.stdin.close()
            code = server.exit_code(10)
            took = time.monotonic() - started
        print(f"stdin closed mid-stream: exit {code} after {took:.2f} s")
        assert code == 0 and took < 2.0
    finally:
        server.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    raw = start(base, log_file=base / "lifecycle.log")
    raw.initialize({"maxNewTokens": MAX_NEW, "gamma": 0})
    raw.wait_ready()
    raw.open(URI, DOC)
    yield raw
    raw.close()


def settle(server: RawServer) -> None:
    """Wait until the engine is idle, then one more round trip: whatever the cancelled
    request could still have sent has arrived by then."""
    deadline = time.monotonic() + 60
    while server.call("copyspec/status")["result"]["queue"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server.call("copyspec/status")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("route", ["executeCommand", "request"])
def test_cancel_stops_every_route_and_nothing_follows(server: RawServer, route: str) -> None:
    uri = f"file:///cancel-{route}.py"
    server.open(uri, DOC)  # fresh: the streamed edits of another test change the text
    index = len(server.seen)
    with held_stream():  # the answer is still streaming when the cancel arrives
        if route == "executeCommand":
            msg_id = server.request("workspace/executeCommand",
                                    {"command": "copyspec.refine", "arguments": [refine(uri)]})
        else:
            msg_id = server.request("copyspec/refine", refine(uri))
        server.wait(lambda m: m.get("method") == "workspace/applyEdit", 120, after=index)
        server.notify("$/cancelRequest", {"id": msg_id})
        answer = server.response(msg_id)
    assert answer["error"]["code"] == -32800, answer
    answered_at = server.seen.index(answer)
    settle(server)
    after = [m.get("method") for m in server.seen[answered_at:]]
    assert "workspace/applyEdit" not in after and "copyspec/chunk" not in after, after
    assert len(server.responses(msg_id)) == 1
    stats = server.call("copyspec/status")["result"]["lastStats"]
    assert stats["cancelled"] and stats["new_tokens"] < MAX_NEW, stats


@pytest.mark.timeout(300)
def test_check_timeout_kills_the_whole_group(server: RawServer, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    command = ["/bin/sh", "-c", f"echo $$ > {pid_file}; sleep 30 & sleep 30; true"]
    server.notify("workspace/didChangeConfiguration", {"settings": {"copyspec": {
        "checkCommand": command, "checkTimeout": 1, "maxNewTokens": 8}}})
    uri = "file:///check.txt"
    server.open(uri, DOC, "plaintext")  # no grammar: no syntax check before the command
    started = time.monotonic()
    answer = server.call("copyspec/fix", refine(uri, apply="none", maxTurns=1), timeout=120)
    took = time.monotonic() - started
    result = answer["result"]
    errors = [e for turn in result["turns"] for e in (turn.get("check") or {}).get("errors", [])]
    assert any("timed out after 1 s" in e for e in errors), errors
    assert took < 20, f"answered after {took:.1f} s: the timeout was not honoured"
    assert not group_alive(pid_file), "a child of the check command outlived its timeout"


@pytest.mark.timeout(300)
def test_bad_file_names_are_reported_as_such(server: RawServer) -> None:
    uri = "file:///" + "x" * 300 + ".txt"
    server.open(uri, DOC, "plaintext")
    server.notify("workspace/didChangeConfiguration", {"settings": {"copyspec": {
        "checkCommand": ["true", "{file}"], "maxNewTokens": 8}}})
    answer = server.call("copyspec/fix", refine(uri, apply="none", maxTurns=1), timeout=120)
    message = answer["error"]["message"]
    assert "file name" in message and "model failed" not in message, message


@pytest.mark.timeout(300)
def test_shutdown_answers_running_work_32802(server: RawServer) -> None:
    """Last in this module: it shuts the module's server down. The gate holds the answer
    open, so the shutdown finds it streaming."""
    server.notify("workspace/didChangeConfiguration", {"settings": {"copyspec": {
        "checkCommand": None, "maxNewTokens": MAX_NEW}}})
    other = URI.replace("life", "other")
    server.open(other, DOC)
    index = len(server.seen)
    with held_stream():
        streaming = server.request("copyspec/refine", refine(other))
        server.wait(lambda m: m.get("method") == "copyspec/chunk", 120, after=index)
        shutdown = server.request("shutdown")
        assert server.response(shutdown, 30).get("result", "missing") is None
        answer = server.response(streaming, 10)
    assert answer["error"]["code"] == SERVER_CANCELLED, answer
    refused = server.call("copyspec/status")
    assert refused["error"]["code"] == -32600
    server.notify("exit")
    assert server.exit_code(10) == 0
