"""One chat-session interface (`engine.session.ChatSession`) for every kind of session: the
engine's in-process `Session`, `copyspec serve`'s `ServedSession` and the language server's
`RemoteSession`, plus the test-only `ScriptedTurn` that stands in for one. Each `send` takes
the protocol's parameters with its defaults, and driven through the protocol alone the three
real kinds answer the same conversation with the same text (the remote one through a real
`copyspec serve` app on a loopback port)."""

from __future__ import annotations

import inspect
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from copyspec_lsp.adapters.remote import RemoteModel, RemoteSession
from copyspec_lsp.adapters.scripted import ScriptedTurn
from engine.config import SpecConfig
from engine.loading import LoadedModel
from engine.serve.app import build_app
from engine.serve.engine import ServeEngine
from engine.serve.history import ServedSession
from engine.session import ChatSession, Session

from tiny_models import loaded

pytestmark = pytest.mark.timeout(60)

SYSTEM = "You are a coding assistant. Reply with the complete edited code only."
TURNS = ["def add(a, b):\n    total = a + b\n    return total\nRename total", "Add hints"]
KINDS = [Session, ServedSession, RemoteSession, ScriptedTurn]


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_each_send_takes_the_protocols_parameters(kind: type) -> None:
    """Every parameter of `ChatSession.send` by the same name, kind-compatible and with the
    same default; whatever a kind adds has a default, so a protocol call never misses it."""
    wanted = inspect.signature(ChatSession.send).parameters
    given = inspect.signature(kind.send).parameters
    for name, parameter in wanted.items():
        assert name in given, f"{kind.__name__}.send has no {name!r}"
        assert given[name].default == parameter.default, f"{kind.__name__}.send: {name!r}"
        if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            assert given[name].kind is parameter.kind, f"{kind.__name__}.send: {name!r}"
    extra = [p for name, p in given.items() if name not in wanted]
    assert all(p.default is not inspect.Parameter.empty for p in extra), kind.__name__


def converse(chat: ChatSession, turns: list[str]) -> list[str]:
    """The turns through the protocol alone; each answer streams whole through `on_text` and
    joins the history with its message."""
    answers = []
    pieces: list[str] = []
    for turn in turns:
        before = list(chat.messages)
        pieces.clear()
        result = chat.send(turn, 24, stop_event=threading.Event(),
                           on_text=lambda text, _stats: pieces.append(text))
        assert "".join(pieces) == result.text
        assert chat.messages == [*before, {"role": "user", "content": turn},
                                 {"role": "assistant", "content": result.text}]
        answers.append(result.text)
    return answers


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    return loaded("llama", mixing=0.1)


@pytest.fixture(scope="module")
def served_url(lm: LoadedModel) -> Iterator[str]:
    """A real `copyspec serve` app (uvicorn, the service's engine) on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = ServeEngine(lm, SpecConfig("copy"))
    server = uvicorn.Server(uvicorn.Config(build_app(engine), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    engine.close()


def test_every_kind_answers_the_same_conversation_alike(lm: LoadedModel, served_url: str) -> None:
    remote_model = RemoteModel(served_url)
    sessions: dict[str, ChatSession] = {
        "in process": Session(lm, SpecConfig("copy"), system=SYSTEM),
        "served": ServedSession(lm, SpecConfig("copy"), None),
        "remote": RemoteSession(remote_model, "conformance", SYSTEM),
    }
    sessions["served"].messages = [{"role": "system", "content": SYSTEM}]
    try:
        answers = {name: converse(chat, TURNS) for name, chat in sessions.items()}
    finally:
        remote_model.close()
    assert all(isinstance(chat, ChatSession) for chat in sessions.values())
    assert answers["in process"][0], "the model said something"
    assert answers["served"] == answers["in process"]
    assert answers["remote"] == answers["in process"]


def test_a_stopped_turn_leaves_the_history_alone(lm: LoadedModel) -> None:
    """Stopped before its first step, a turn of either in-process kind changes no history."""
    stop = threading.Event()
    stop.set()
    for chat in (Session(lm, SpecConfig("copy"), system=SYSTEM),
                 ServedSession(lm, SpecConfig("copy"), None)):
        before = list(chat.messages)
        result = chat.send(TURNS[0], 24, stop_event=stop)
        assert result.stats.cancelled and chat.messages == before, type(chat).__name__
