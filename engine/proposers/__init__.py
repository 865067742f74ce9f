"""Interchangeable strategies behind one narrow interface: given the context, propose tokens.

The engine's decode loop, the bench replay and the vLLM adapter all drive proposers through
`Proposer`: a `Context` in (the sequence so far and its index), a `Proposal` out, then how
much of it was accepted. A `SequenceState` is the context where a model runs; `Indexed` is the
same without one, where only proposing runs (the replay, vLLM's hook)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

COPIED_ELSEWHERE = -1
"""A proposal token's origin when it was not copied from a source position (a carried edit,
a model draft)."""


class CopySource(Protocol):
    """A token sequence and the searches a copy proposer makes over it: `engine.index.NgramIndex`,
    or `engine.prediction.SourcedIndex`, which puts a prediction before it."""

    @property
    def tokens(self) -> Sequence[int]: ...

    def __len__(self) -> int: ...

    def agreement(self, start: int, cap: int = ...) -> int: ...

    def match(self, cap: int = ..., scan: int = ...) -> int | None: ...

    def anchor(self, near: int, window: int, cap: int, scan: int = ...) -> tuple[int, int]: ...

    def copy(self, start: int, k: int) -> list[int]: ...

    def continuation(self) -> int | None: ...


class Context(Protocol):
    """What a proposer reads of the sequence so far: its tokens and their index."""

    @property
    def tokens(self) -> Sequence[int]: ...

    @property
    def index(self) -> CopySource: ...


@dataclass
class Indexed:
    """A context with no model behind it: its tokens are its index's."""

    index: CopySource

    @property
    def tokens(self) -> Sequence[int]:
        return self.index.tokens


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
    origins: list[int] = field(default_factory=list)
    """For a copy, the source position each candidate token was copied from
    (COPIED_ELSEWHERE for a token a carried edit put there); empty when not known."""
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

    def propose(self, context: Context, limit: int) -> Proposal: ...

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        """Learn how many proposed tokens were accepted (e.g. to adapt the block length)."""
