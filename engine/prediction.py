"""Predicted outputs: text the answer is expected to resemble, as the copy pointer's first source.

OpenAI's Predicted Outputs (`prediction: {type: "content", content}`) hand the server the output
it expects, typically the code being rewritten. Its tokens become a side source: the copy
proposer sees them ahead of the sequence and its pointer starts on their first token, but they
are never fed to the model, so the output is exactly what it would be without them (verifying
a deterministic draft is lossless, greedy or sampled); only the forward passes change.

`SourcedIndex` is the index the copy proposer sees: the prediction at positions [0, S), `GAP`
empty positions, then the sequence. `Predicted` wraps a copy proposer around it and counts the
prediction tokens it had verified: OpenAI's accepted and rejected prediction tokens.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import cast

from engine.index import AGREEMENT_CAP, ANCHOR_SCAN, LONGEST_SCAN, NgramIndex
from engine.proposers import Proposal, Proposer
from engine.sequence import SequenceState
from engine.stats import TurnStats

GAP = 2
"""Empty positions between the prediction and the sequence: a copy from the prediction's end,
or from the one-token substitution guessed just past it, yields nothing rather than the
conversation's opening tokens (and the plain copy proposer takes over)."""
EMPTY = -1
"""What an empty position holds: no token id, so no agreement runs across it."""


class SourcedIndex:
    """A read-only view of the sequence's index with the prediction placed before it.

    It answers the questions a copy proposer asks of `NgramIndex` (agreement, match, anchor,
    copy, lookup) over both; the prediction wins ties, and until the output's first token the
    prediction's first token is the match: the prediction is what follows the prompt."""

    def __init__(self, prediction: Sequence[int], index: NgramIndex) -> None:
        self.source = list(prediction)
        self.index = index
        self.offset = len(self.source) + GAP
        """Where the sequence's position 0 lies in this view."""
        self.begin = len(index)
        """The sequence's length when the output began (the prompt's)."""
        self.tokens = _Joined(self)
        self.copied = 0
        """Prediction tokens in the last `copy` (the proposer's proposal)."""
        self._follows: dict[tuple[int, ...], list[int]] = {}
        """The prediction's γ-grams → the positions just after them, as in `NgramIndex`..."""
        self._after: dict[int, list[int]] = {}
        """...and its tokens → the positions just after them."""
        gamma = index.gamma
        for end in range(1, len(self.source) + 1):
            self._after.setdefault(self.source[end - 1], []).append(end)
            if end >= gamma:
                self._follows.setdefault(tuple(self.source[end - gamma : end]), []).append(end)

    def __len__(self) -> int:
        return self.offset + len(self.index)

    def agreement(self, start: int, cap: int = AGREEMENT_CAP) -> int:
        """How many tokens before `start` equal the tokens before the sequence's end (≤ cap)."""
        if start >= self.offset:
            return self.index.agreement(start - self.offset, cap)
        tokens, source = self.index.tokens, self.source
        limit = min(start, cap, len(tokens)) if start <= len(source) else 0
        length = 0
        while length < limit and source[start - 1 - length] == tokens[-1 - length]:
            length += 1
        return length

    def copy(self, start: int, k: int) -> list[int]:
        """The `k` tokens from `start` on; a copy from the prediction stops at its end."""
        if start >= self.offset:
            self.copied = 0
            return self.index.copy(start - self.offset, k)
        proposal = self.source[start : start + k]
        self.copied = len(proposal)
        return proposal

    def match(self, cap: int = AGREEMENT_CAP, scan: int = LONGEST_SCAN) -> int | None:
        """`NgramIndex.match` over the prediction and the sequence."""
        if len(self.index) == self.begin:
            return 0
        found = self.index.match(cap, scan)
        ours = self._source_match(cap, scan)
        if ours is not None and (
            found is None or self.agreement(ours, cap) >= self.index.agreement(found, cap)
        ):
            return ours
        return None if found is None else found + self.offset

    def anchor(
        self, near: int, window: int, cap: int, scan: int = ANCHOR_SCAN
    ) -> tuple[int, int]:
        """`NgramIndex.anchor` in the source that `near` lies in (the prediction or the
        sequence)."""
        if near >= self.offset:
            position, agreement = self.index.anchor(near - self.offset, window, cap, scan)
            return position + self.offset, agreement
        tokens = self.index.tokens
        positions = self._after.get(tokens[-1], []) if tokens else []
        middle = bisect.bisect_left(positions, near)
        lo = max(bisect.bisect_left(positions, near - window), middle - scan)
        hi = min(bisect.bisect_right(positions, near + window), middle + scan)
        best, best_key = near, (0, 0)
        for position in positions[lo:hi]:
            key = (self.agreement(position, cap), -abs(position - near) * 2 + (position >= near))
            if key > best_key:
                best, best_key = position, key
        return best, best_key[0]

    def lookup(self, k: int) -> list[int]:
        """`NgramIndex.lookup` (the γ-gram policies), the prediction first."""
        if len(self.index) == self.begin:
            return self.copy(0, k)
        ours = self._source_match(AGREEMENT_CAP, LONGEST_SCAN)
        return self.copy(ours, k) if ours is not None else self.index.lookup(k)

    def _source_match(self, cap: int, scan: int) -> int | None:
        """Where in the prediction the sequence's last γ tokens occur with the longest
        agreement (latest on ties), as the position just after them."""
        gamma, tokens = self.index.gamma, self.index.tokens
        if len(tokens) < gamma:
            return None
        positions = self._follows.get(tuple(tokens[-gamma:]))
        if not positions:
            return None
        return max(reversed(positions[-scan:]), key=lambda start: self.agreement(start, cap))


class _Joined:
    """The token at each position of a `SourcedIndex` (negative positions count from the
    sequence's end, as the proposer reads the last token)."""

    def __init__(self, view: SourcedIndex) -> None:
        self._view = view

    def __len__(self) -> int:
        return len(self._view)

    def __getitem__(self, position: int) -> int:
        view = self._view
        if position < 0:
            return view.index.tokens[position]
        if position >= view.offset:
            return view.index.tokens[position - view.offset]
        return view.source[position] if position < len(view.source) else EMPTY


class _SourcedState:
    """What a copy proposer reads of the state: the index, here with the prediction."""

    def __init__(self, index: SourcedIndex) -> None:
        self.index = index


class Predicted:
    """A copy proposer that reads the prediction first, counting the prediction tokens it had
    verified into `stats`: accepted ones are in the output, rejected ones were thrown away.

    It goes first among the turn's proposers; once its pointer runs off the prediction's end
    it proposes nothing more, and the turn's own copy proposer goes on."""

    source = "copy"

    def __init__(
        self, proposer: Proposer, prediction: Sequence[int], state: SequenceState,
        stats: TurnStats,
    ) -> None:
        self.proposer = proposer
        self.index = SourcedIndex(prediction, state.index)
        self.state = cast(SequenceState, _SourcedState(self.index))
        self.stats = stats
        self._copied = 0
        self._last: tuple[int, int] | None = None
        """(sequence length, accepted) at the last verified copy from the prediction, until
        the next step: only the turn's last step can be cut short by a stop."""

    def propose(self, state: SequenceState, limit: int) -> Proposal:
        self._last = None
        self.index.copied = 0
        proposal = self.proposer.propose(self.state, limit)
        self._copied = self.index.copied
        proposal.proposer = self
        return proposal

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        self.proposer.feedback(proposal, accepted)
        copied = min(self._copied, len(proposal))  # a chooser may have cut the copy short
        if copied:
            self.stats.accepted_prediction_tokens += accepted
            self.stats.rejected_prediction_tokens += copied - accepted
            self._last = (len(self.index.index), accepted)

    def settle(self) -> None:
        """After the turn: accepted tokens past a stop (EOS, a stop string) in the last step
        never reached the output, so they count as rejected."""
        if self._last is None:
            return
        before, accepted = self._last
        cut = accepted - min(accepted, len(self.index.index) - before)
        self.stats.accepted_prediction_tokens -= cut
        self.stats.rejected_prediction_tokens += cut
