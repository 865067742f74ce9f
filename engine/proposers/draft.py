"""Draft-model proposer: a small model with the target's tokenizer guesses the next D tokens.

The draft keeps its own `SequenceState` (tokens and KV cache over the draft model). Before each
proposal it is synced to the target's tokens, so it sees every accepted token, whether it came
from a draft, a copy or the target itself, and its rejected guesses are cropped. The reference
implementation crops one position too many after a rejection and drafts from a context that is
one token short; here the draft's cache always equals a fresh prefill of the target's tokens.
"""

from __future__ import annotations

import torch

from engine.proposers import Context, Proposal
from engine.sampling import Sampler
from engine.schedule import BlockSchedule
from engine.sequence import PREFILL_CHUNK, SequenceState

MAX_BLOCK_FACTOR = 4
"""Adaptive D grows to at most 4×D: every draft token costs a draft forward, and a long block
that the target rejects early wastes up to half of them."""


class DraftProposer:
    """Proposes up to D tokens drafted one forward each by the draft model.

    Greedy decoding drafts the draft's argmax. Sampling draws from the draft's probabilities,
    filtered with the same temperature, top-k and top-p as the target's, and returns them as
    `Proposal.probs` so that verification can apply the min(1, p/q) rule.
    """

    source = "draft"

    def __init__(
        self,
        draft: SequenceState,
        block: int,
        adaptive: bool,
        sampler: Sampler | None = None,
        *,
        width: int,
    ) -> None:
        self.draft = draft
        self.width = width
        """The target's logit width (its config's vocab_size): ids it can take, rows of q."""
        self.schedule = BlockSchedule(block, adaptive, MAX_BLOCK_FACTOR * block)
        self.sampler = sampler
        self.embeddable = draft.model.get_input_embeddings().weight.shape[0]
        self.window: int | None = getattr(draft.model.config, "max_position_embeddings", None)

    def propose(self, context: Context, limit: int) -> Proposal:
        ids = list(context.tokens)
        size = min(self.schedule.size, limit)
        if self.window is not None:
            # A draft with a shorter context than the target stops drafting at its window.
            size = min(size, self.window - len(ids))
        if size <= 0:
            return Proposal()
        width = self.width
        if width > self.embeddable and max(ids) >= self.embeddable:
            # The target emitted one of its padding ids, which the draft cannot embed.
            return Proposal()
        # `sync` feeds the catch-up and holds the logits after it: the first draft step is free.
        fed = self.draft.sync(ids)
        tokens: list[int] = []
        rows: list[torch.Tensor] = []
        for _ in range(size):
            token, probs = self._choose(self.draft.step([])[-1:, :width], width)
            tokens.append(token)
            if probs is not None:
                rows.append(probs)
            self.draft.accept([token])
        passes = -(-fed // PREFILL_CHUNK) + size - 1
        probs = torch.cat(rows) if rows else None
        return Proposal(tokens, "draft", probs, self, forward_passes=passes)

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        self.schedule.update(len(proposal), accepted)

    def _choose(self, logits: torch.Tensor, width: int) -> tuple[int, torch.Tensor | None]:
        """The next draft token and, when sampling, the (1, width) row it was drawn from."""
        if self.sampler is None:
            return int(logits.argmax()), None
        probs = self.sampler.probs(logits)
        if probs.shape[-1] < width:
            # A draft with a smaller padded vocabulary never proposes the missing ids: q = 0.
            probs = torch.nn.functional.pad(probs, (0, width - probs.shape[-1]))
        return int(self.sampler.draw(probs)), probs
