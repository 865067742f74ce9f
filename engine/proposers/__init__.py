"""Interchangeable strategies behind one narrow interface: given the context, propose tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from engine.sequence import SequenceState


@dataclass
class Proposal:
    """Tokens to verify, where they came from and, for a model draft, its probabilities."""

    tokens: list[int] = field(default_factory=list)
    source: str = "none"
    probs: torch.Tensor | None = None
    """Draft distributions, one row per token; None means a deterministic (one-hot) draft."""
    proposer: Proposer | None = None
    """Who proposed it, to hear back how much was accepted."""
    forward_passes: int = 0
    """Draft-model forwards spent on it (catching up included); copying costs none."""
    candidate: list[int] = field(default_factory=list)
    """What the proposer stands behind, `tokens` being its own choice of a prefix: a chooser
    may verify any prefix of it instead (empty: `tokens`)."""
    mode: str = ""
    """How the proposer found it (e.g. an aligned pointer, or a guess after a divergence)."""
    aligned: int = 0
    """Tokens of agreement behind it: the proposer's confidence, by which acceptance is learned."""

    def __post_init__(self) -> None:
        if not self.candidate:
            self.candidate = list(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)


class Proposer(Protocol):
    """Given the sequence so far, propose at most `limit` next tokens (possibly none)."""

    source: str
    """What it proposes: "copy" (free to propose) or "draft" (a model forward per token)."""

    def propose(self, state: SequenceState, limit: int) -> Proposal: ...

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        """Learn how many proposed tokens were accepted (e.g. to adapt the block length)."""
