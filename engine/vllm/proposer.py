"""The engine's copy proposer as a vLLM `speculative_config` `custom_class`.

What vLLM's hook allows, read from vllm 0.32 (`v1/spec_decode/custom_class_proposer.py`,
`GPUModelRunner.propose_draft_token_ids`): `propose(sampled_token_ids, num_tokens_no_spec,
token_ids_cpu, slot_mappings)` is called once per step for the whole batch, by batch ROW, with
no request ids; rows are swapped and condensed as requests come and go. So each request's
state (its index and proposer) is found again by content every step: the state whose indexed
tokens the row's tokens begin with, its own row's first (the usual case, one comparison), then
any other's (after a swap); then only the new tokens are indexed, as the engine does each
step, and a row no state continues starts afresh. Proposals come from the engine's own
proposer through its own interface (`engine.proposers`), at most K = `num_speculative_tokens`
of them; vLLM verifies them, so output stays exactly the model's.

  --speculative-config '{"method": "custom_class",
     "model": "engine.vllm.proposer.CopySpecProposer", "num_speculative_tokens": 16}'
  (with this repository on PYTHONPATH; COPYSPEC_GAMMA and COPYSPEC_POLICY set γ and the match
  policy, the engine's defaults otherwise)

The served model's tokenizer (`model_config.tokenizer`, read from local files) gives the copy
its line starts, so it carries re-indented blocks as the engine does; without one it copies
the source as it is.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from engine.config import SpecConfig
from engine.indentation import LineStarts, line_starts_of
from engine.index import NgramIndex
from engine.proposers import Indexed, Proposal, Proposer
from engine.proposers.copy import copy_proposer


class _Row:
    """One batch row's request as the engine sees it: its indexed tokens and its proposer."""

    def __init__(self, spec: SpecConfig, starts: LineStarts | None) -> None:
        self.index = NgramIndex(spec.gamma, spec.policy)
        self.proposer: Proposer = copy_proposer(spec, starts)
        self.known = np.empty(0, dtype=np.int64)
        self.last = Proposal()

    def continues(self, tokens: np.ndarray) -> bool:
        """Whether `tokens` begin with everything this row has indexed (the same request)."""
        return len(self.known) <= len(tokens) and np.array_equal(tokens[: len(self.known)],
                                                                self.known)

    def follow(self, tokens: np.ndarray) -> None:
        """Index what was written since the last step, and tell the proposer how much of its
        last proposal vLLM accepted (the new tokens but the last, which the model sampled)."""
        written = tokens[len(self.known) :].tolist()
        if self.last.proposer is not None and written:
            accepted = 0
            while (accepted < min(len(self.last), len(written) - 1)
                   and self.last.tokens[accepted] == written[accepted]):
                accepted += 1
            self.last.proposer.feedback(self.last, accepted)
        self.index.extend(written)
        self.known = np.array(tokens, dtype=np.int64)

    def propose(self, limit: int) -> list[int]:
        self.last = self.proposer.propose(Indexed(self.index), limit)
        return self.last.tokens[:limit]


class CopySpecProposer:
    """Constructed by vLLM with its VllmConfig."""

    def __init__(self, vllm_config: Any) -> None:
        self.k = int(vllm_config.speculative_config.num_speculative_tokens)
        self.max_model_len = int(vllm_config.model_config.max_model_len)
        defaults = SpecConfig()
        self.spec = SpecConfig(
            gamma=int(os.environ.get("COPYSPEC_GAMMA", defaults.gamma)),
            policy=os.environ.get("COPYSPEC_POLICY", defaults.policy),
            block=self.k, max_block=self.k,  # vLLM verifies K slots each step: propose K
        )
        self._rows: dict[int, _Row] = {}
        self.line_starts = served_line_starts(vllm_config.model_config)

    def propose(
        self,
        sampled_token_ids: list[list[int]],
        num_tokens_no_spec: np.ndarray,
        token_ids_cpu: np.ndarray,
        slot_mappings: Any = None,
    ) -> list[list[int]]:
        last, self._rows = self._rows, {}
        proposals: list[list[int]] = []
        for row, sampled in enumerate(sampled_token_ids):
            n = int(num_tokens_no_spec[row])
            if not sampled or n >= self.max_model_len:
                if row in last:  # still prefilling, or no room left: nothing to propose
                    self._rows[row] = last.pop(row)
                proposals.append([])
                continue
            tokens = token_ids_cpu[row, :n]
            state = self._rows[row] = self._claim(last, row, tokens)
            state.follow(tokens)
            proposals.append(state.propose(min(self.k, self.max_model_len - n)))
        return proposals  # states no row claimed belonged to finished requests

    def _claim(self, states: dict[int, _Row], row: int, tokens: np.ndarray) -> _Row:
        """The state of the request `tokens` belong to, taken out of `states`; a new one if
        none continues them."""
        if row in states and states[row].continues(tokens):
            return states.pop(row)
        found = [r for r, state in states.items() if state.continues(tokens)]
        if found:
            return states.pop(max(found, key=lambda r: len(states[r].known)))
        return _Row(self.spec, self.line_starts)

    def load_model(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to load: the proposer is the context itself."""


def served_line_starts(model_config: Any) -> LineStarts | None:
    """The line starts of the served model's tokenizer; None when it names none that loads
    from local files (the copy then carries no indentation shifts)."""
    name = getattr(model_config, "tokenizer", None)
    if not name:
        return None
    from transformers import AutoTokenizer

    try:
        return line_starts_of(AutoTokenizer.from_pretrained(name, local_files_only=True))
    except (OSError, ValueError) as error:
        logging.getLogger(__name__).warning("no indentation shifts: tokenizer %s: %s", name,
                                            error)
        return None
