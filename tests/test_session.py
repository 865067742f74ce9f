"""Multi-turn sessions: cache reuse changes nothing in the output and really skips prefill."""

from __future__ import annotations

import threading

import pytest

from engine.config import SpecConfig
from engine.loading import LoadedModel
from engine.session import PromptTooLongError, Session
from engine.stats import TurnStats

SYSTEM = "You edit code. Answer with the code only."
TURNS = [
    "def area(w, h):\n    return w * h\n\nRename w to width.",
    "Now also rename h to height.",
    "Add a docstring.",
]


@pytest.mark.parametrize("method", ["copy", "greedy"])
def test_reused_cache_equals_fresh_session_fed_the_history(
    copying_llama: LoadedModel, method: str
) -> None:
    spec = SpecConfig(method=method)
    session = Session(copying_llama, spec, system=SYSTEM)
    previous = None
    for turn, message in enumerate(TURNS):
        result = session.send(message, max_new_tokens=40)
        fresh = Session(copying_llama, spec, system=SYSTEM, history=session.messages[1:-2])
        replay = fresh.send(message, max_new_tokens=40)
        assert result.token_ids == replay.token_ids, f"turn {turn + 1}"
        assert result.prompt_ids == replay.prompt_ids
        assert replay.stats.prefill_tokens == len(replay.prompt_ids) - 1
        if previous is None:
            assert not result.stats.cache_reused
        else:
            # Everything but the previous answer's last token (never fed back) is reused.
            history = len(previous.prompt_ids) + len(previous.token_ids) - 1
            assert result.stats.reused_tokens >= history, "earlier turns were prefilled again"
            assert result.stats.prefill_tokens < replay.stats.prefill_tokens
        previous = result


def test_stats_add_up(copying_llama: LoadedModel) -> None:
    session = Session(copying_llama)
    seen: list[str] = []
    result = session.send(TURNS[0] * 3, max_new_tokens=50, on_text=lambda d, _: seen.append(d))
    stats = result.stats
    assert "".join(seen) == result.text
    assert stats.new_tokens == len(result.token_ids)
    assert stats.copied_tokens <= stats.new_tokens
    assert stats.forward_passes == stats.new_tokens - stats.copied_tokens
    assert stats.tau == pytest.approx(stats.copied_tokens / max(stats.copy_attempts, 1))
    assert stats.decode_seconds > 0 and stats.prefill_seconds > 0
    assert stats.time_to_first_token >= stats.prefill_seconds
    assert set(stats.to_dict()) >= {"tau", "copied_share", "passes_per_token", "tokens_per_second"}


def test_cancel_stops_within_one_step_and_keeps_history_clean(copying_llama: LoadedModel) -> None:
    session = Session(copying_llama)
    stop = threading.Event()

    def stop_after_first_text(_delta: str, _stats: TurnStats) -> None:
        stop.set()

    result = session.send(
        TURNS[0], max_new_tokens=60, stop_event=stop, on_text=stop_after_first_text
    )
    assert result.stats.cancelled
    assert result.stats.forward_passes == 1
    assert session.messages == []
    after = session.send(TURNS[0], max_new_tokens=20)
    assert after.token_ids == Session(copying_llama).send(TURNS[0], max_new_tokens=20).token_ids


def test_cancel_from_another_thread_stops_within_one_step(copying_llama: LoadedModel) -> None:
    """The decoding thread holds in its first `on_text` until this thread sets the stop event
    (as the server's test gate holds it), so the stop lands mid-answer however fast the model
    is; the turn then ends without another forward pass."""
    session = Session(copying_llama, SpecConfig(method="greedy"))
    stop, first_text = threading.Event(), threading.Event()
    passes_seen: list[int] = []
    results = []

    def on_text(_delta: str, stats: TurnStats) -> None:
        passes_seen.append(stats.forward_passes)
        first_text.set()
        stop.wait(30)

    worker = threading.Thread(
        target=lambda: results.append(
            session.send(TURNS[0], max_new_tokens=60, stop_event=stop, on_text=on_text)
        )
    )
    worker.start()
    assert first_text.wait(30)
    at_stop = passes_seen[-1]
    stop.set()
    worker.join(10)
    assert not worker.is_alive()
    assert len(passes_seen) == 1, "no text after the stop"
    assert results[0].stats.cancelled and results[0].stats.new_tokens < 60
    assert results[0].stats.forward_passes == at_stop, "a forward pass after the stop"


def test_prompt_longer_than_window_names_the_limit(copying_llama: LoadedModel) -> None:
    window = copying_llama.context_window
    with pytest.raises(PromptTooLongError, match=str(window)):
        Session(copying_llama).send("x" * (window + 10))


def test_budget_is_clamped_to_the_window(copying_llama: LoadedModel) -> None:
    window = copying_llama.context_window
    session = Session(copying_llama)
    prompt_len = len(session.render([{"role": "user", "content": "y" * (window - 30)}]))
    result = session.send("y" * (window - 30), max_new_tokens=500)
    assert len(result.prompt_ids) + result.stats.new_tokens <= window
    assert prompt_len == len(result.prompt_ids)


def test_empty_message_is_refused(copying_llama: LoadedModel) -> None:
    with pytest.raises(ValueError, match="empty"):
        Session(copying_llama).send("   ")
