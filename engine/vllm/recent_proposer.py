"""CopySpec's proposal as a vLLM `speculative_config` `custom_class`: the K tokens that followed
the MOST RECENT earlier occurrence of the last γ tokens (vLLM's `ngram` takes the earliest).

What vLLM's hook allows, read from vllm 0.32 (`v1/spec_decode/custom_class_proposer.py`,
`GPUModelRunner.propose_draft_token_ids`): `propose(sampled_token_ids, num_tokens_no_spec,
token_ids_cpu, slot_mappings)` is called once per step for the whole batch, by batch ROW, with
no request ids; rows are swapped and condensed as requests come and go. So no state can be
kept per request: not our incremental γ-gram index, not the adaptive block length fed back by
acceptance. This proposer is therefore stateless (it scans the row each step, as vLLM's ngram
does) with a fixed K = `num_speculative_tokens`. vLLM verifies the proposal itself, so output
stays exactly the model's.

  --speculative-config '{"method": "custom_class",
     "model": "engine.vllm.recent_proposer.RecentMatchProposer", "num_speculative_tokens": 10}'
  (with this repository on PYTHONPATH; COPYSPEC_GAMMA sets γ, default 3)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

DEFAULT_GAMMA = 3


def most_recent_continuation(tokens: np.ndarray, gamma: int, k: int) -> list[int]:
    """Up to k tokens after the latest earlier occurrence of the last `gamma` tokens."""
    n = len(tokens)
    if n <= gamma:
        return []
    key = tokens[n - gamma :]
    windows = np.lib.stride_tricks.sliding_window_view(tokens[: n - 1], gamma)
    hits = np.flatnonzero((windows == key).all(axis=1))
    if not len(hits):
        return []
    start = int(hits[-1]) + gamma
    proposal = tokens[start : min(n, start + k)].tolist()
    # as engine.index.NgramIndex.lookup: a match running into the end repeats its own period
    while proposal and len(proposal) < k:
        proposal.append(proposal[len(proposal) - (n - start)])
    return proposal


class RecentMatchProposer:
    """Constructed by vLLM with its VllmConfig."""

    def __init__(self, vllm_config: Any) -> None:
        self.k = int(vllm_config.speculative_config.num_speculative_tokens)
        self.gamma = int(os.environ.get("COPYSPEC_GAMMA", DEFAULT_GAMMA))
        self.max_model_len = int(vllm_config.model_config.max_model_len)

    def propose(
        self,
        sampled_token_ids: list[list[int]],
        num_tokens_no_spec: np.ndarray,
        token_ids_cpu: np.ndarray,
        slot_mappings: Any = None,
    ) -> list[list[int]]:
        proposals: list[list[int]] = []
        for row, sampled in enumerate(sampled_token_ids):
            n = int(num_tokens_no_spec[row])
            if not sampled or n >= self.max_model_len:
                proposals.append([])
                continue
            k = min(self.k, self.max_model_len - n)
            proposals.append(most_recent_continuation(token_ids_cpu[row, :n], self.gamma, k))
        return proposals

    def load_model(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to load: the proposer is the context itself."""
