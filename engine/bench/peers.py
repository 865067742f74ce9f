"""The proposers the replay compares: ours (the engine's own copy proposer) and five peers.

Each peer follows its real source, cited by file and commit where it is defined; two are driven
through their real packages (transformers' `PromptLookupCandidateGenerator`, `arctic-inference`).
The others are re-implemented here because their packages do not run on this machine (vLLM's
needs CUDA and numba, llama.cpp is C++); tests check them against literal ports of the loops.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch

from engine.config import SpecConfig
from engine.costs import CostCurve
from engine.indentation import LineStarts
from engine.index import NgramIndex
from engine.proposers import Indexed, Proposal, Proposer
from engine.proposers.copy import ResyncProposer
from engine.schedule import Acceptance, DraftChooser
from engine.turn import build_proposers

NO_LIMIT = 1 << 30
"""The replay has no token budget, so the engine's proposer is never clipped by one."""


class Ours:
    """The engine's copy proposer exactly as a session builds it from a `SpecConfig`, driven
    through the engine's own proposer interface on a model-free context.

    With a `cost` curve, the engine's draft-length chooser cuts each candidate as decoding
    would on that device, learning acceptance as `copyspec serve` does: each conversation is
    a session of one running estimate over all of them (`Acceptance.session`), so what a
    session learns carries across its turns and seeds the next conversation. `carry=False` is
    the ablation without carried edits."""

    def __init__(self, name: str, spec: SpecConfig, cost: CostCurve | None = None,
                 carry: bool = True, line_starts: LineStarts | None = None) -> None:
        self.name, self.spec, self.cost, self.carry = name, spec, cost, carry
        self.line_starts = line_starts
        self._index = NgramIndex(spec.gamma, spec.policy)
        self._proposer = self._build()
        self._chooser: DraftChooser | None = None
        self._conversation = ""
        self._running = Acceptance()
        self._acceptance = self._running.session()
        self._made: list[Proposal] = []
        self._last = Proposal()

    def _build(self) -> Proposer:
        proposer = build_proposers(self.spec, line_starts=self.line_starts)[0]
        if isinstance(proposer, ResyncProposer):
            proposer.carry = self.carry
        return proposer

    def begin(self, pair_id: str, context: list[int]) -> None:
        self._index = NgramIndex(self.spec.gamma, self.spec.policy)
        self._index.extend(context)
        self._proposer = self._build()
        conversation = pair_id.rpartition("/")[0]
        if conversation != self._conversation:
            self._conversation, self._acceptance = conversation, self._running.session()
        if self.cost is not None:
            self._chooser = DraftChooser(self.cost, None, self._acceptance)

    def propose(self, tokens: list[int]) -> list[int]:
        proposal = self._proposer.propose(Indexed(self._index), NO_LIMIT)
        self._made = [proposal]
        if self._chooser is not None:
            proposal = self._chooser.cut(proposal)
        self._last = proposal
        return proposal.tokens

    def feedback(self, drafted: list[int], accepted: int, emitted: list[int]) -> None:
        if self._last.proposer is not None:
            self._last.proposer.feedback(self._last, accepted)
        if self._chooser is not None:
            self._chooser.observe(self._made, emitted)
        self._index.extend(emitted)

    def end(self) -> None:
        pass


class _Stateless:
    """Peers that look only at the sequence: nothing to learn between passes."""

    name = ""

    def begin(self, pair_id: str, context: list[int]) -> None:
        pass

    def feedback(self, drafted: list[int], accepted: int, emitted: list[int]) -> None:
        pass

    def end(self) -> None:
        pass


class HFPromptLookup(_Stateless):
    """HF prompt lookup, driven through transformers' own `PromptLookupCandidateGenerator`
    (transformers/generation/candidate_generator.py, the installed transformers 5.x): n-gram
    sizes from `max_matching_ngram_size` down to 1, first (earliest) match, K fixed."""

    def __init__(self, ngram: int = 3, k: int = 10) -> None:
        from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

        self.name = f"HF prompt lookup (n ≤ {ngram}, K {k})"
        self._generator = PromptLookupCandidateGenerator(
            num_output_tokens=k, max_matching_ngram_size=ngram, max_length=NO_LIMIT
        )

    def propose(self, tokens: list[int]) -> list[int]:
        ids = torch.tensor([tokens], dtype=torch.long)
        candidates, _ = self._generator.get_candidates(ids)
        return candidates[0, len(tokens) :].tolist()


class _StartIndex:
    """Start positions of every n-gram of a growing sequence, for the peers' exact searches."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.starts: dict[tuple[int, ...], list[int]] = {}
        self.indexed = 0

    def update(self, tokens: list[int]) -> None:
        n = self.n
        for start in range(max(0, self.indexed - n + 1), len(tokens) - n + 1):
            self.starts.setdefault(tuple(tokens[start : start + n]), []).append(start)
        self.indexed = len(tokens)


class VLLMNgram(_Stateless):
    """vLLM's `NgramProposer` (vllm/v1/spec_decode/ngram_proposer.py, vllm-project/vllm at
    016e8ede870e3c087fdcdfb36ed3622112712f10, `_find_longest_matched_ngram_and_propose_tokens`):
    the longest suffix n-gram with min_n ≤ n ≤ max_n that occurred before, the earliest such
    occurrence, then up to k tokens after it, never past the end of the sequence.

    The KMP scan over the reversed tokens is replaced by per-n start indexes that answer the
    same question (for n from max_n down, the earliest earlier occurrence)."""

    def __init__(self, min_n: int = 2, max_n: int = 5, k: int = 10) -> None:
        self.name = f"vLLM ngram ({min_n}–{max_n}, K {k})"
        self.min_n, self.max_n, self.k = min_n, max_n, k
        self._indexes: dict[int, _StartIndex] = {}

    def begin(self, pair_id: str, context: list[int]) -> None:
        self._indexes = {n: _StartIndex(n) for n in range(self.min_n, self.max_n + 1)}

    def propose(self, tokens: list[int]) -> list[int]:
        total = len(tokens)
        for n in range(self.max_n, self.min_n - 1, -1):
            if total <= n:
                continue
            index = self._indexes[n]
            index.update(tokens)
            starts = index.starts.get(tuple(tokens[total - n :]))
            if starts and starts[0] + n < total:  # the earliest one that is not the suffix
                begin = starts[0] + n
                return tokens[begin : begin + self.k]
        return []


class LlamaCppNgramSimple(_Stateless):
    """llama.cpp `ngram-simple` (common/ngram-map.cpp, `common_ngram_simple_draft`, ggml-org/
    llama.cpp at 003c90352d1784dc688199277af83e62224bbbef): the most recent earlier occurrence
    of the last n tokens (searched backwards from cur_len − n − 1 down to 1, position 0 never
    matches), then min(m, what follows) tokens, only if that is at least n. `tokens` there is
    the history without the last sampled token, which ends the pattern."""

    def __init__(self, n: int = 4, m: int = 48) -> None:
        self.name = f"llama.cpp ngram-simple (n {n}, m {m})"
        self.n, self.m = n, m
        self._index = _StartIndex(n)

    def begin(self, pair_id: str, context: list[int]) -> None:
        self._index = _StartIndex(self.n)

    def propose(self, tokens: list[int]) -> list[int]:
        n, m = self.n, self.m
        cur_len = len(tokens) - 1  # `tokens` in llama.cpp excludes `sampled`, our last token
        if cur_len <= n + m + 1:
            return []
        self._index.update(tokens)
        starts = self._index.starts.get(tuple(tokens[cur_len + 1 - n :]), [])
        match = _last_at_most(starts, cur_len - n - 1)
        if match <= 0:
            return []
        copy_max = min(m, cur_len - (match + n))
        if copy_max < n:
            return []
        return tokens[match + n : match + n + copy_max]


def _last_at_most(sorted_starts: list[int], limit: int) -> int:
    """The largest element ≤ limit of an ascending list, or -1 (lists are short at the end)."""
    for start in reversed(sorted_starts):
        if start <= limit:
            return start
    return -1


class CopySpecReference(_Stateless):
    """The CopySpec authors' loop (RazvanDu/CopySpec, speculative_copying.py, `generate_raw` at
    HEAD 8797be8; the rule is unchanged since 063d07240e40d81cb89abf3627ab83b458de72a2): hash
    the last γ tokens, take the earliest occurrence s with s + γ < len, copy up to K tokens."""

    def __init__(self, gamma: int = 3, k: int = 10) -> None:
        self.name = f"CopySpec reference (γ {gamma}, K {k}, earliest)"
        self.gamma, self.k = gamma, k
        self._index = _StartIndex(gamma)

    def begin(self, pair_id: str, context: list[int]) -> None:
        self._index = _StartIndex(self.gamma)

    def propose(self, tokens: list[int]) -> list[int]:
        gamma = self.gamma
        if len(tokens) < gamma:
            return []
        self._index.update(tokens)
        starts = self._index.starts.get(tuple(tokens[-gamma:]))
        if not starts or starts[0] + gamma >= len(tokens):
            return []
        begin = starts[0] + gamma
        return tokens[begin : begin + self.k]


@dataclass(frozen=True)
class SuffixSettings:
    """SuffixDecoding knobs, named as in arctic-inference's `SuffixDecodingCache.speculate`."""

    label: str
    max_tree_depth: int
    max_spec_tokens: int
    max_spec_factor: float = 1.0
    min_token_prob: float = 0.1
    max_cached_requests: int = 10_000


SUFFIX_SETTINGS = (
    # vLLM's `SpeculativeConfig` suffix defaults (vllm/config/speculative.py, vllm-project/vllm
    # main): depth 24, num_speculative_tokens = depth, factor 1.0, min prob 0.1, 10000 cached.
    SuffixSettings("vLLM defaults: depth 24, k 24", 24, 24),
    # Arctic Inference's default tree depth (`SuffixDecodingCache(max_tree_depth=64)`), as the
    # issue's best SuffixDecoding row: up to 64 speculated tokens.
    SuffixSettings("depth 64, k 64", 64, 64),
)


def arctic_available() -> bool:
    return importlib.util.find_spec("arctic_inference") is not None


class SuffixDecoding:
    """SuffixDecoding through the real `arctic-inference` package (`SuffixDecodingCache`): a
    per-request suffix tree over prompt and output plus a global tree of earlier responses of
    the same conversation, as vLLM's `SuffixDecodingProposer` drives it
    (vllm/v1/spec_decode/suffix_decoding.py: start_request, speculate on the last
    max_tree_depth tokens, add_active_response, stop_request)."""

    def __init__(self, settings: SuffixSettings) -> None:
        from arctic_inference.suffix_decoding import SuffixDecodingCache

        self.settings = settings
        self.name = f"SuffixDecoding ({settings.label})"
        self._new_cache = lambda: SuffixDecodingCache(
            max_tree_depth=settings.max_tree_depth,
            max_cached_requests=settings.max_cached_requests)
        self._cache = self._new_cache()
        self._conversation = ""
        self._request = ""
        self._pending: list[int] = []

    def begin(self, pair_id: str, context: list[int]) -> None:
        conversation = pair_id.rpartition("/")[0]
        if conversation != self._conversation:
            # The global tree holds earlier responses of this conversation only: other records
            # can share a target (the same commit as a function, a file and a chain turn), and
            # caching those would let it copy answers it could never have seen.
            self._cache = self._new_cache()
            self._conversation = conversation
        self._request = pair_id
        self._cache.start_request(pair_id, context)

    def propose(self, tokens: list[int]) -> list[int]:
        s = self.settings
        pattern = tokens[-s.max_tree_depth :]
        draft = self._cache.speculate(
            self._request, pattern, max_spec_tokens=s.max_spec_tokens,
            max_spec_factor=s.max_spec_factor, min_token_prob=s.min_token_prob,
        )
        return list(draft.token_ids)

    def feedback(self, drafted: list[int], accepted: int, emitted: list[int]) -> None:
        self._cache.add_active_response(self._request, emitted)

    def end(self) -> None:
        self._cache.stop_request(self._request)


PeerFactory = Callable[[], object]


def peer_factories() -> dict[str, PeerFactory]:
    """Every peer at the settings the issue compares, SuffixDecoding only when installed."""
    factories: dict[str, PeerFactory] = {
        "hf": HFPromptLookup,
        "vllm-ngram": VLLMNgram,
        "llamacpp-ngram-simple": LlamaCppNgramSimple,
        "copyspec-ref": CopySpecReference,
    }
    if arctic_available():
        for settings in SUFFIX_SETTINGS:
            factories[f"suffix-{settings.max_tree_depth}"] = (
                lambda settings=settings: SuffixDecoding(settings))
    return factories
