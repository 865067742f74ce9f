"""The service's per-session state without HTTP: the same answers as the in-process `Session`
for copy+draft and seeded sampling over three turns, token-exact history (nothing generated
is tokenized or prefilled again), the memory-bounded LRU, and the draft chooser's acceptance
estimate kept per session and seeded from the service's running one."""

from __future__ import annotations

import threading

import pytest

from engine.config import SamplingConfig, SpecConfig
from engine.loading import LoadedModel, load_model
from engine.paths import demo_model_path
from engine.schedule import Acceptance
from engine.serve.engine import ServeEngine
from engine.serve.history import ServedSession
from engine.session import Session
from engine.session_cache import SessionCache
from engine.stats import TurnStats
from engine.turn import generate_ids

from tiny_models import loaded

pytestmark = pytest.mark.timeout(120)

SYSTEM = "You are a coding assistant. Reply with the complete edited code only."
TURNS = ["def add(a, b):\n    total = a + b\n    return total\nRename total", "Add hints",
         "Add a docstring"]


def served_turns(served: ServedSession, turns: list[str], max_new: int,
                 sampling: SamplingConfig | None = None) -> list[str]:
    """Answers the way the service drives a session: the client's whole conversation as its
    history each turn, then the last message."""
    messages = [{"role": "system", "content": SYSTEM}]
    texts = []
    for user in turns:
        served.messages = list(messages)
        result = served.send(user, max_new, sampling, (), threading.Event(), lambda *_: None)
        messages += [{"role": "user", "content": user},
                     {"role": "assistant", "content": result.text}]
        texts.append(result.text)
    return texts


@pytest.mark.parametrize("sampling", [None, SamplingConfig(temperature=0.8, top_p=0.9, seed=5)],
                         ids=["greedy", "sampled"])
def test_copy_and_draft_match_the_in_process_session(sampling) -> None:
    lm, draft = loaded("llama", mixing=0.1), loaded("llama", seed=1, mixing=0.1)
    spec = SpecConfig("copy+draft")
    local = Session(lm, spec, system=SYSTEM, draft=draft)
    expected = [local.send(t, 40, sampling).text for t in TURNS]
    assert served_turns(ServedSession(lm, spec, draft), TURNS, 40, sampling) == expected


def test_follow_up_turns_carry_the_generated_ids_verbatim() -> None:
    lm: LoadedModel = load_model(demo_model_path(), "cpu")  # its BPE: re-tokenizing can differ
    served = ServedSession(lm, SpecConfig("copy"), None)
    served.messages = [{"role": "system", "content": SYSTEM}]
    first = served.send(TURNS[0], 48, stop_event=threading.Event(), stats=TurnStats())
    # the client echoes the history back, as text: the session keeps its generated ids
    served.messages = [{"role": "system", "content": SYSTEM},
                       {"role": "user", "content": TURNS[0]},
                       {"role": "assistant", "content": first.text}]
    second = served.send(TURNS[1], 48, stop_event=threading.Event(), stats=TurnStats())
    carried = served.carried
    generated = [t for t in first.token_ids if t not in lm.eos_token_ids]
    assert second.prompt_ids[:carried] == first.prompt_ids + generated
    # fed: the new suffix less its pending last token, plus turn 1's own last token, which was
    # pending (never fed) when turn 1 ended; nothing generated is fed twice
    assert second.stats.prefill_tokens <= len(second.prompt_ids) - carried
    plain, _ = generate_ids(lm, second.prompt_ids, SpecConfig("greedy"), 48)
    assert second.token_ids == plain, "lossless on the ids the service used"


def test_the_lru_keeps_the_budget_and_the_latest_session() -> None:
    lm = loaded("llama", mixing=0.1)
    cache: SessionCache[str, ServedSession] = SessionCache(1)
    for name in ("a", "b"):
        cache.put(name, ServedSession(lm, SpecConfig("copy"), None))
        served_turns(cache.peek(name), TURNS[:1], 16)
        cache.trim()
    assert cache.peek("a") is None and cache.peek("b") is not None and cache.evicted == 1
    assert cache.get("a") is None, "an evicted session is made afresh"
    again = ServedSession(lm, SpecConfig("copy"), None)
    assert served_turns(again, TURNS[:1], 16) == served_turns(
        ServedSession(lm, SpecConfig("copy"), None), TURNS[:1], 16
    ), "an evicted session costs a re-prefill, not a different answer"


def test_a_session_keeps_what_its_drafts_learned_across_requests() -> None:
    """The draft-length chooser's acceptance estimate goes on from one request of a session
    to the next, as in the in-process `Session`: after three requests both learned the same
    (a session that started each request afresh would know only the last one's passes)."""
    lm = loaded("llama", mixing=0.1)
    spec = SpecConfig("copy")
    local = Session(lm, spec, system=SYSTEM)
    for turn in TURNS:
        local.send(turn, 40)
    served = ServedSession(lm, spec, None)
    served_turns(served, TURNS, 40)
    learned = served.acceptance.summary()
    assert learned and learned != Acceptance().summary()
    assert learned == local.acceptance.summary()


def test_a_new_session_starts_from_the_servers_running_estimate() -> None:
    """Not from scratch: what every earlier session's drafts showed, as the engine's running
    estimate holds it, which goes on learning from the new session too."""
    engine = ServeEngine(loaded("llama", mixing=0.1), SpecConfig("copy"))
    try:
        served_turns(engine.session("a"), TURNS[:2], 40)
        first = engine.session("a").acceptance.summary()
        assert first and engine.acceptance.summary() == first
        fresh = engine.session("b")
        assert fresh.acceptance.summary() == first
        served_turns(fresh, TURNS[2:], 40)
        assert engine.acceptance.summary() == fresh.acceptance.summary() != first
        assert engine.describe("b")["acceptance"] == fresh.acceptance.summary()
    finally:
        engine.close()
