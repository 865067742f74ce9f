"""Method runners: each replays a task's turns and reports, per turn, the tokens it produced and
what they cost. One narrow interface, so a test (or a new method) plugs in without mocks.

Our methods run through the engine's `Session`, exactly as the server does. `pld` runs
transformers' own prompt lookup on the full conversation at every turn, as a transformers user
would, so it re-prefills the history each turn while our sessions reuse their KV cache.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import torch
from transformers.generation.streamers import BaseStreamer

from engine.bench import check_methods
from engine.bench.tasks import Task
from engine.config import MAX_BLOCK, SpecConfig
from engine.detokenize import TextStream
from engine.loading import LoadedModel
from engine.session import Session, fit_budget
from engine.stats import TurnStats

GAMMA, BLOCK = SpecConfig.gamma, SpecConfig.block
"""Shared by copy and pld: the engine's defaults, also the original PLD setting (3-gram key,
10 tokens)."""


class MethodUnavailable(ValueError):
    """A method that is unknown, or known but not available in this engine or setup."""


@dataclass
class TurnOutcome:
    """One answered turn: new token ids (EOS included), the prompt it answered, wall seconds."""

    token_ids: list[int]
    prompt_ids: list[int]
    seconds: float
    stats: TurnStats


class Runner(Protocol):
    """Replays a task's turns in one conversation, yielding one outcome per turn. `config`
    describes the method for results.json and the ablation plots."""

    name: str
    config: dict[str, object]

    def run(self, task: Task, max_new_tokens: int) -> Iterator[TurnOutcome]: ...


class SessionRunner:
    """A method of our engine: one `Session` per task, its KV cache kept across turns, each
    turn given the prediction editors and `copyspec generate` give it (`predict=False`: none,
    as before predictions)."""

    def __init__(self, name: str, lm: LoadedModel, spec: SpecConfig, predict: bool = True,
                 **session_extra: object):
        self.name, self.lm, self.spec, self.session_extra = name, lm, spec, session_extra
        self.predict = predict
        self.config: dict[str, object] = {"engine": "copyspec", **asdict(spec),
                                          "predict": predict}
        Session(lm, spec, **session_extra)  # a setup the engine refuses fails now, not mid-run

    def run(self, task: Task, max_new_tokens: int) -> Iterator[TurnOutcome]:
        session = Session(self.lm, self.spec, system=task.system, **self.session_extra)
        for message in task.turns:
            started = time.perf_counter()
            prediction = session.expected(message) if self.predict else []
            result = session.send(message, max_new_tokens, prediction=prediction)
            seconds = time.perf_counter() - started
            yield TurnOutcome(result.token_ids, result.prompt_ids, seconds, result.stats)


class GenerateRunner:
    """transformers' `model.generate` on the whole rendered conversation at every turn: plain
    greedy (the reference check) or prompt lookup decoding when `lookup=(γ, K)` is given."""

    def __init__(self, name: str, lm: LoadedModel, lookup: tuple[int, int] | None = None):
        self.name, self.lm, self.lookup = name, lm, lookup
        gamma, block = lookup or (None, None)
        self.config: dict[str, object] = {
            "engine": "transformers.generate", "method": "pld" if lookup else "greedy",
            "gamma": gamma, "block": block,
        }

    def run(self, task: Task, max_new_tokens: int) -> Iterator[TurnOutcome]:
        # The same chat template and history text as our sessions, so prompts are comparable.
        renderer = Session(self.lm, SpecConfig("greedy"), system=task.system)
        messages = list(renderer.messages)
        for message in task.turns:
            messages.append({"role": "user", "content": message})
            prompt = renderer.render(messages)
            budget = fit_budget(len(prompt), max_new_tokens, self.lm.context_window)
            outcome = self.generate(prompt, budget)
            text = TextStream(self.lm.tokenizer).decode(outcome.token_ids)
            messages.append({"role": "assistant", "content": text})
            yield outcome

    def generate(self, prompt: list[int], max_new_tokens: int) -> TurnOutcome:
        model, counter, clock = self.lm.model, PassCounter(), FirstTokenClock()
        lookup = {}
        if self.lookup is not None:
            gamma, block = self.lookup
            lookup = {"prompt_lookup_num_tokens": block, "max_matching_ngram_size": gamma}
        ids = torch.tensor([prompt], dtype=torch.long, device=self.lm.device)
        eos = sorted(self.lm.eos_token_ids)
        hook = model.register_forward_pre_hook(counter, with_kwargs=True)
        try:
            started = clock.started = time.perf_counter()
            with torch.inference_mode():
                output = model.generate(
                    ids, attention_mask=torch.ones_like(ids), do_sample=False,
                    max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=eos[0],
                    streamer=clock, **lookup,
                )
            seconds = time.perf_counter() - started
        finally:
            hook.remove()
        tokens = output[0, len(prompt):].tolist()
        return TurnOutcome(tokens, prompt, seconds, counter.stats(tokens, prompt, clock, seconds))


class PassCounter:
    """Counts target forward passes and, after the prefill, those verifying a copied block."""

    def __init__(self) -> None:
        self.passes = 0
        self.attempts = 0

    def __call__(self, _module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if self.passes and ids is not None and ids.shape[-1] > 1:
            self.attempts += 1
        self.passes += 1

    def stats(
        self, tokens: list[int], prompt: list[int], clock: FirstTokenClock, seconds: float
    ) -> TurnStats:
        """TurnStats in the engine's shape: each pass yields one own token, the rest are copies."""
        first = clock.first_token_seconds or seconds
        return TurnStats(
            new_tokens=len(tokens), forward_passes=self.passes, copy_attempts=self.attempts,
            copied_tokens=max(0, len(tokens) - self.passes), prefill_tokens=len(prompt),
            prefill_seconds=first, decode_seconds=seconds - first, time_to_first_token=first,
            stop_reason="generate",
        )


class FirstTokenClock(BaseStreamer):
    """A streamer that only notes when the first generated tokens arrive (after the prompt)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.calls = 0
        self.first_token_seconds: float | None = None

    def put(self, value: torch.Tensor) -> None:
        self.calls += 1
        if self.calls == 2:
            self.first_token_seconds = time.perf_counter() - self.started

    def end(self) -> None:
        """Nothing to flush: no text is produced."""


def build_runners(
    lm: LoadedModel,
    methods: Sequence[str],
    gammas: Sequence[int] = (),
    blocks: Sequence[int] = (),
    policies: Sequence[str] = (),
    draft_lm: LoadedModel | None = None,
    cost_aware: bool = SpecConfig.cost_aware,
) -> list[Runner]:
    """Greedy first (the reference), then the asked methods, then the ablation variants:
    adaptive copy per γ and per policy, fixed-K copy per K, every one of ours cost-aware or
    not. Duplicates are dropped."""
    try:
        check_methods(methods)
    except ValueError as error:
        raise MethodUnavailable(str(error)) from None
    specs: dict[str, SpecConfig] = {"greedy": SpecConfig("greedy")}
    runners: list[Runner] = []
    for method in methods:
        if method == "pld":
            runners.append(GenerateRunner("pld", lm, (GAMMA, BLOCK)))
        else:
            specs[method] = base_spec(method)
    for gamma in gammas:
        specs.setdefault(f"copy[gamma={gamma}]", copy_spec(gamma=gamma))
    for block in blocks:
        specs.setdefault(f"copy-fixed[K={block}]", copy_spec(block=block, adaptive=False))
    for policy in policies:
        specs.setdefault(f"copy[policy={policy}]", copy_spec(policy=policy))
    specs = dedupe({name: spec if name == "greedy" else replace(spec, cost_aware=cost_aware)
                    for name, spec in specs.items()})
    session_runners: list[Runner] = []
    for name, spec in specs.items():
        extra = {}
        if spec.drafts:
            extra = {"draft": check_draft(name, draft_lm)}
        session_runners.append(SessionRunner(name, lm, spec, **extra))
    return [session_runners[0], *runners, *session_runners[1:]]


def base_spec(method: str) -> SpecConfig:
    """The engine configuration behind a method name (all but pld)."""
    if method == "copy":
        return copy_spec()
    if method == "copy-fixed":
        return copy_spec(adaptive=False)
    return SpecConfig(method)


def copy_spec(
    gamma: int = GAMMA, block: int = BLOCK, adaptive: bool = True, policy: str = "recent"
) -> SpecConfig:
    """A copy configuration; invalid values raise ValueError naming them."""
    max_block = MAX_BLOCK if adaptive else block
    return SpecConfig("copy", gamma, block, adaptive, max(max_block, block), policy)


def dedupe(specs: dict[str, SpecConfig]) -> dict[str, SpecConfig]:
    """Keep the first name of each distinct configuration (e.g. copy[gamma=3] is `copy`)."""
    kept: dict[str, SpecConfig] = {}
    for name, spec in specs.items():
        if spec not in kept.values():
            kept[name] = spec
    return kept


def check_draft(method: str, draft_lm: LoadedModel | None) -> LoadedModel:
    """The draft model for a draft method, or a clear refusal."""
    if draft_lm is None:
        raise MethodUnavailable(f"method {method!r} needs a draft model (--draft-model)")
    return draft_lm
