"""The vLLM custom_class adapter proposes, for every request, exactly what the engine's own
copy proposer proposes when driven directly on that request's sequence, though vLLM's hook
calls it by batch row with no request ids and swaps and condenses rows (vLLM itself cannot run
in the tests: it needs its own venv and, for real speed, a GPU; the calls here have the hook's
shapes and the batch moves rows as vLLM's `InputBatch` does)."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from engine.config import SpecConfig
from engine.indentation import line_starts_of
from engine.index import NgramIndex
from engine.paths import demo_model_path
from engine.proposers import COPIED_ELSEWHERE, Indexed
from engine.proposers.copy import copy_proposer
from engine.vllm.proposer import CopySpecProposer

pytestmark = pytest.mark.timeout(60)

K = 8
WIDTH = 512


def vllm_config(k: int = K, max_model_len: int = WIDTH, tokenizer: str | None = None
                ) -> SimpleNamespace:
    return SimpleNamespace(speculative_config=SimpleNamespace(num_speculative_tokens=k),
                           model_config=SimpleNamespace(max_model_len=max_model_len,
                                                        tokenizer=tokenizer))


class Request:
    """A request as vLLM runs it: each step the accepted prefix of the proposal plus one
    sampled token, from `target` (what the model writes). Beside it the engine's copy proposer,
    driven directly on the same sequence: what the adapter must propose for it."""

    def __init__(self, prompt: list[int], target: list[int], spec: SpecConfig) -> None:
        self.target, self.done = target, 0
        self.index = NgramIndex(spec.gamma, spec.policy)
        self.index.extend(prompt)
        self.engine = copy_proposer(spec)

    @property
    def finished(self) -> bool:
        return self.done >= len(self.target)

    def expected(self) -> list[int]:
        self.last = self.engine.propose(Indexed(self.index), K)
        return self.last.tokens[:K]

    def step(self, proposal: list[int]) -> None:
        accepted = 0
        while (accepted < len(proposal) and self.done + accepted < len(self.target) - 1
               and proposal[accepted] == self.target[self.done + accepted]):
            accepted += 1
        self.engine.feedback(self.last, accepted)
        emitted = self.target[self.done : self.done + accepted + 1]
        self.index.extend(emitted)
        self.done += len(emitted)


def edited(source: list[int], rng: random.Random) -> list[int]:
    """The source with a few substitutions and insertions, as a model's rewrite would be."""
    out = []
    for token in source:
        roll = rng.random()
        if roll < 0.04:
            out.append(rng.randrange(40, 50))
        elif roll < 0.06:
            out += [token, rng.randrange(40, 50)]
        else:
            out.append(token)
    return out


def requests(spec: SpecConfig, count: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        source = [rng.randrange(0, 30) for _ in range(rng.randrange(40, 120))]
        made.append(Request([*source, 99], edited(source, rng), spec))
    return made


@pytest.mark.parametrize("policy", ["resync", "recent"])
def test_each_request_gets_the_engines_proposal_through_swaps_and_condensing(
    monkeypatch: pytest.MonkeyPatch, policy: str,
) -> None:
    monkeypatch.setenv("COPYSPEC_POLICY", policy)
    adapter = CopySpecProposer(vllm_config())
    spec = SpecConfig(policy=policy, block=K, max_block=K)
    rows = requests(spec, 4, seed=7)
    checked = swapped = condensed = 0
    step = 0
    while rows:
        step += 1
        if step % 5 == 0 and len(rows) > 1:  # InputBatch.swap_states
            rows[0], rows[-1] = rows[-1], rows[0]
            swapped += 1
        ids = np.zeros((len(rows), WIDTH), dtype=np.int64)
        lengths = np.array([len(r.index) for r in rows])
        for i, request in enumerate(rows):
            ids[i, : lengths[i]] = request.index.tokens
        drafts = adapter.propose([[r.index.tokens[-1]] for r in rows], lengths, ids)
        for request, draft in zip(rows, drafts, strict=True):
            assert draft == request.expected()
            request.step(draft)
            checked += bool(draft)
        if any(r.finished for r in rows):  # InputBatch.condense: the last rows move up
            rows = [r for r in rows if not r.finished]
            condensed += 1
    assert checked > 20 and swapped and condensed, "the drafts, swaps and condensing went untested"


def test_rows_without_a_sampled_token_or_room_get_nothing() -> None:
    adapter = CopySpecProposer(vllm_config(k=4, max_model_len=12))
    ids = np.zeros((3, 12), dtype=np.int64)
    ids[0, :9] = [1, 2, 3, 7, 8, 9, 1, 2, 3]
    ids[1, :12] = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7, 8]
    ids[2, :10] = [1, 2, 3, 4, 5, 6, 1, 2, 3, 4]
    drafts = adapter.propose([[3], [8], []], np.array([9, 12, 10]), ids)
    assert drafts == [[7, 8, 9], [], []], "3 tokens of room at most; row 1 full; row 2 prefills"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=80),
       st.sampled_from(["resync", "recent", "longest"]), st.integers(1, 4))
def test_a_first_call_proposes_what_a_fresh_engine_proposer_does(
    tokens: list[int], policy: str, gamma: int,
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COPYSPEC_POLICY", policy)
        patch.setenv("COPYSPEC_GAMMA", str(gamma))
        adapter = CopySpecProposer(vllm_config())
    index = NgramIndex(gamma, policy)
    index.extend(tokens)
    spec = SpecConfig(gamma=gamma, policy=policy, block=K, max_block=K)
    expected = copy_proposer(spec).propose(Indexed(index), K).tokens[:K]
    row = np.array([tokens + [0] * (WIDTH - len(tokens))])
    assert adapter.propose([[tokens[-1]]], np.array([len(tokens)]), row) == [expected]


def test_the_served_tokenizer_gives_the_copy_its_line_starts(tmp_path: Path) -> None:
    """With the served model's tokenizer the adapter's proposals for a re-indented answer are
    the engine's with that tokenizer's line starts, which carry the shift; a tokenizer that
    does not load leaves the copy as it is, with a warning, never a crash."""
    tokenizer = AutoTokenizer.from_pretrained(str(demo_model_path()))
    adapter = CopySpecProposer(vllm_config(tokenizer=str(demo_model_path())))
    assert adapter.line_starts == line_starts_of(tokenizer)
    body = [f"value_{i} = compute({i}, limit)" for i in range(8)]
    source = tokenizer.encode("def f(limit):\n" + "".join(f"    {b}\n" for b in body),
                              add_special_tokens=False)
    target = tokenizer.encode("def f(limit):\n    try:\n"
                              + "".join(f"        {b}\n" for b in body), add_special_tokens=False)
    spec = SpecConfig(block=K, max_block=K)
    request = Request([*source, 0], target, spec)
    request.engine = copy_proposer(spec, line_starts_of(tokenizer))
    carried = 0
    while not request.finished:
        tokens = request.index.tokens
        row = np.array([list(tokens) + [0] * (WIDTH - len(tokens))])
        draft = adapter.propose([[tokens[-1]]], np.array([len(tokens)]), row)[0]
        assert draft == request.expected()
        carried += COPIED_ELSEWHERE in request.last.origins
        request.step(draft)
    assert carried >= 2, "no draft carried the shift"
    assert CopySpecProposer(vllm_config(tokenizer=str(tmp_path))).line_starts is None
