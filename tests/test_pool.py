"""A real Ray Serve pool (`copyspec serve --replicas 2`) on this one CPU node, with the built-in
model and one thread per replica: greedy output identical to the in-process engine, a
session's turn 2 on the same replica reusing its cache, a cancel that stops the replica within
one step, 8 concurrent sessions, and a killed replica costing only a re-prefill. One pool
serves the module (starting Ray and two replicas costs most of the time)."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from copyspec_lsp.adapters.remote import RemoteModel, RemoteSession
from engine.config import SpecConfig
from engine.loading import load_model
from engine.paths import demo_model_path
from engine.session import Session

from lsp_fixtures import free_port, held_stream
from pool_fixtures import (
    PY_CODE,
    SYSTEM,
    chat,
    conversation,
    serve_command,
    spawn,
    stop,
    wait_healthy,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ASK = f"{PY_CODE}\nRename total to result"
FOLLOW = "Now add type hints"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.getbasetemp() / "pool.log"
    port = free_port()
    command = serve_command(port, "--replicas", "2", "--num-cpus", "2",
                            "--cpus-per-replica", "0.5")
    process = spawn(command, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log, 180)
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def reference() -> Session:
    """The in-process engine the pool must match, token for token (greedy)."""
    return Session(load_model(demo_model_path(), "cpu"), SpecConfig("copy"), system=SYSTEM)


def session_info(url: str, session: str) -> dict:
    """What the replica holding `session` caches (routed there by the same header)."""
    return httpx.get(f"{url}/v1/sessions/{session}", headers={"x-session-id": session},
                     timeout=30).json()


def test_greedy_matches_in_process_and_turn_two_stays_on_its_replica(pool, reference) -> None:
    expected_1 = reference.send(ASK, 48).text
    expected_2 = reference.send(FOLLOW, 48)
    first = chat(pool, "affinity", conversation(ASK))
    assert first["text"] == expected_1
    second = chat(pool, "affinity", conversation(ASK, first["text"], FOLLOW))
    assert second["text"] == expected_2.text
    assert second["replica"] == first["replica"], "turn 2 went where the cache is"
    stats = second["copyspec"]["stats"]
    assert stats["reused_tokens"] > 0 and stats["cache_reused"]
    assert second["copyspec"]["carried_tokens"] > len(first["text"]) // 4, "ids carried over"
    assert stats["prefill_tokens"] < expected_2.stats.prefill_tokens + 8
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == stats["reused_tokens"]


def test_a_dropped_stream_stops_the_replica_within_one_step(pool) -> None:
    """The replica's turn holds after each streamed text while the test gate is closed
    (engine/gate.py; Ray's workers inherit the environment), so it cannot finish before the
    stream is dropped, however fast the model is."""
    body = {"messages": conversation(ASK), "stream": True, "max_tokens": 400}
    with held_stream(), httpx.Client(timeout=60) as http, http.stream(
        "POST", f"{pool}/v1/chat/completions", json=body, headers={"x-session-id": "cancel"}
    ) as response:
        for line in response.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # the first text: close the stream mid-answer
    deadline = time.monotonic() + 30
    while (info := session_info(pool, "cancel"))["passes_after_stop"] is None:
        assert time.monotonic() < deadline, f"the replica never saw the stream close: {info}"
        time.sleep(0.05)
    assert info["last_stats"]["cancelled"] and info["last_stats"]["new_tokens"] < 400
    assert info["passes_after_stop"] <= 1, "one engine step at most after the stop flag"
    assert info["turns"] == 0, "a cancelled turn is not history"


def test_eight_concurrent_sessions_are_all_answered(pool, reference) -> None:
    asks = [f"{PY_CODE}\nRename total to value{i}" for i in range(8)]
    with ThreadPoolExecutor(8) as workers:
        answers = list(workers.map(
            lambda i: chat(pool, f"many-{i}", conversation(asks[i]), 24), range(8)
        ))
    assert all(a["text"] and a["copyspec"]["stats"]["new_tokens"] > 0 for a in answers)
    fresh = Session(reference.lm, SpecConfig("copy"), system=SYSTEM)
    assert answers[3]["text"] == fresh.send(asks[3], 24).text


def test_a_killed_replica_costs_only_a_re_prefill(pool, reference) -> None:
    remote = RemoteSession(RemoteModel(pool), "lost", SYSTEM)
    local = Session(reference.lm, SpecConfig("copy"), system=SYSTEM)
    assert remote.send(ASK, 48).text == local.send(ASK, 48).text
    before = session_info(pool, "lost")
    assert before["cached"]
    os.kill(before["pid"], signal.SIGKILL)  # the replica process dies, its cache with it
    result = remote.send(FOLLOW, 48)
    assert result.text == local.send(FOLLOW, 48).text, "same answer from another replica"
    assert result.stats.reused_tokens == 0 and result.stats.prefill_tokens > 40, "re-prefilled"
    after = session_info(pool, "lost")
    assert after["pid"] != before["pid"] and after["turns"] == 1
