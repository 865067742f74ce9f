"""The remote client against vLLM's streaming format, by contract: a loopback HTTP server
replays SSE transcripts of vLLM's OpenAI server (tests/transcripts; vLLM itself cannot run in
the tests: it needs its own venv and minutes to start). The client under test is the real
`copyspec_lsp.adapters.remote`; only the server side is a recording."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from copyspec_lsp.adapters.remote import RemoteModel, RemoteSession, RemoteUnavailable
from engine.session import PromptTooLongError

# slow lane: a loopback HTTP server and retries with back-off
pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

TRANSCRIPTS = Path(__file__).parent / "transcripts"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    """Seconds between events."""
    hold: threading.Event | None = None
    """When given, the stream stops after its first event with text until this is set (at
    most `hold_seconds`), so it is still open whatever the client does with that text."""
    hold_seconds: float = 10.0


@dataclass
class Replay:
    """What the server will answer, in order, and what it was asked."""

    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    broken: threading.Event = field(default_factory=threading.Event)
    """Set when the client closed a stream before its end."""
    hold_expired: threading.Event = field(default_factory=threading.Event)
    """Set when a held stream went on because nobody resumed it within 10 s."""


@pytest.fixture
def replay() -> Iterator[tuple[str, Replay]]:
    state = Replay()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._send(200, json.dumps({"object": "list", "data": [{"id": "default"}]}).encode())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"headers": dict(self.headers), "body": body})
            reply = state.replies.pop(0)
            if reply.status != 200:
                self._send(reply.status, reply.body)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            hold = reply.hold
            try:
                for event in reply.body.split(b"\n\n"):
                    if event.strip():
                        self.wfile.write(event + b"\n\n")
                        self.wfile.flush()
                        if hold is not None and has_text(event):
                            if not hold.wait(reply.hold_seconds):
                                state.hold_expired.set()
                            hold = None
                        time.sleep(reply.delay)
            except (BrokenPipeError, ConnectionResetError):
                state.broken.set()

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def has_text(event: bytes) -> bool:
    """Whether an SSE event carries answer text (not the role-only first delta)."""
    return any(choice["delta"].get("content") for parsed in sse_events(event)
               for choice in parsed["choices"])


def transcript(name: str) -> bytes:
    return (TRANSCRIPTS / name).read_bytes()


def sse_events(sse: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in sse.decode().splitlines()
            if line.startswith("data: {")]


def streamed_text(sse: bytes) -> str:
    return "".join(choice["delta"].get("content") or ""
                   for event in sse_events(sse) for choice in event["choices"])


def test_a_vllm_stream_becomes_text_history_and_stats(replay) -> None:
    url, state = replay
    sse = transcript("vllm_turn1.sse")
    state.replies.append(Reply(body=sse))
    session = RemoteSession(RemoteModel(url), "lsp-session-7", "be terse")
    seen: list[str] = []
    result = session.send("rename total", 64, on_text=lambda delta, _: seen.append(delta))
    assert result.text == streamed_text(sse) and "".join(seen) == result.text
    request = state.requests[0]
    assert request["headers"]["x-session-id"] == "lsp-session-7"
    assert request["body"]["stream"] is True and request["body"]["model"] == "default"
    assert request["body"]["messages"] == [{"role": "system", "content": "be terse"},
                                           {"role": "user", "content": "rename total"}]
    usage = [event["usage"] for event in sse_events(sse) if event.get("usage")][-1]
    assert result.stats.new_tokens == usage["completion_tokens"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    assert result.stats.reused_tokens == cached
    assert result.stats.prefill_tokens == usage["prompt_tokens"] - cached
    assert result.stats.stop_reason in ("stop", "length") and not result.stats.cancelled
    assert session.messages[-1] == {"role": "assistant", "content": result.text}


def test_turn_two_sends_the_whole_conversation(replay) -> None:
    url, state = replay
    state.replies += [Reply(body=transcript("vllm_turn1.sse")),
                      Reply(body=transcript("vllm_turn2.sse"))]
    session = RemoteSession(RemoteModel(url), "s", "sys")
    first = session.send("one", 64)
    second = session.send("two", 64)
    assert state.requests[1]["body"]["messages"] == [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "one"},
        {"role": "assistant", "content": first.text}, {"role": "user", "content": "two"},
    ]
    assert second.stats.reused_tokens > 0, "vLLM's prefix cache hit reaches the stats"


def test_our_final_chunk_stats_win_over_counting(replay) -> None:
    url, state = replay
    state.replies.append(Reply(body=transcript("copyspec_turn.sse")))
    result = RemoteSession(RemoteModel(url), "s").send("x", 64)
    assert result.stats.copied_tokens > 0 and result.stats.forward_passes < result.stats.new_tokens


def test_a_too_long_prompt_is_the_same_error_as_locally(replay) -> None:
    url, state = replay
    state.replies.append(Reply(400, transcript("vllm_too_long.json")))
    with pytest.raises(PromptTooLongError, match="maximum context length"):
        RemoteSession(RemoteModel(url), "s").send("x", 64)


def test_an_error_event_mid_stream_fails_the_turn(replay) -> None:
    url, state = replay
    state.replies.append(Reply(body=transcript("vllm_error_event.sse")))
    with pytest.raises(RemoteUnavailable, match="failed"):
        RemoteSession(RemoteModel(url), "s").send("x", 64)


def test_a_failure_before_any_text_is_retried(replay) -> None:
    url, state = replay
    state.replies += [Reply(503, b'{"error": {"message": "replica died", "code": 503}}'),
                      Reply(body=transcript("vllm_turn1.sse"))]
    result = RemoteSession(RemoteModel(url), "s").send("x", 64)
    assert result.text and len(state.requests) == 2


def test_cancel_closes_the_stream(replay) -> None:
    """The server holds its stream after the first text until the client has cancelled, so
    the cancel lands mid-stream whatever the machine's speed; the server then writes the
    rest, and only a stream the client closed breaks."""
    url, state = replay
    resume = threading.Event()
    state.replies.append(Reply(body=transcript("vllm_turn1.sse"), delay=0.05, hold=resume))
    stop = threading.Event()
    session = RemoteSession(RemoteModel(url), "s")
    seen: list[str] = []

    def on_text(delta: str, _: Any) -> None:
        seen.append(delta)
        stop.set()  # cancel from the first streamed text, as an editor's cancel would
        resume.set()

    result = session.send("x", 64, stop_event=stop, on_text=on_text)
    assert result.stats.cancelled and len(seen) == 1
    assert state.broken.wait(10), "the server saw the stream closed"
    assert not state.hold_expired.is_set(), "the stream was still held when the client cancelled"
    assert session.messages == [], "a cancelled turn is not history"


def test_cancel_closes_a_quiet_stream_at_once(replay) -> None:
    """A cancel while the server sends nothing (a long prefill, a busy replica) must still end
    the turn: the server holds its stream after the first text and never resumes it, so
    only the client's own close can end the read before the hold runs out."""
    url, state = replay
    state.replies.append(Reply(body=transcript("vllm_turn1.sse"), hold=threading.Event(),
                               hold_seconds=3.0))
    stop = threading.Event()
    result = RemoteSession(RemoteModel(url), "s").send(
        "x", 64, stop_event=stop, on_text=lambda *_: stop.set())
    assert not state.hold_expired.is_set(), "the turn ended only when the server went on"
    assert result.stats.cancelled
