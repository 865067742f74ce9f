"""Predicted outputs: text the answer is expected to resemble, as the copy pointer's first source.

OpenAI's Predicted Outputs (`prediction: {type: "content", content}`) hand the server the output
it expects, typically the code being rewritten. Its tokens become a side source: the copy
proposer sees them ahead of the sequence and its pointer starts on their first token, but they
are never fed to the model, so the output is exactly what it would be without them (verifying
a deterministic draft is lossless, greedy or sampled); only the forward passes change.

`SourcedIndex` is the index the copy proposer sees: the prediction at positions [0, S), `GAP`
empty positions, then the sequence. `Predicted` wraps a copy proposer around it and counts,
with OpenAI's meanings, the prediction tokens that appeared in the output (accepted) and those
it drafted that the output did not use (rejected), each prediction token once.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from engine.index import AGREEMENT_CAP, ANCHOR_SCAN, LONGEST_SCAN, NgramIndex
from engine.proposers import Context, Indexed, Proposal, Proposer
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
    copy, continuation) over both; the prediction wins ties, and until the output's first token
    the prediction's first token is the match: the prediction is what follows the prompt."""

    def __init__(self, prediction: Sequence[int], index: NgramIndex) -> None:
        self.source = list(prediction)
        self.index = index
        self.offset = len(self.source) + GAP
        """Where the sequence's position 0 lies in this view."""
        self.begin = len(index)
        """The sequence's length when the output began (the prompt's)."""
        self.tokens = _Joined(self)
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
        """How many tokens before `start` equal the tokens before the sequence's end (≤ cap).

        In the prediction, the tokens before its first one are the prompt's (the prediction is
        what follows the prompt), so its start agrees in full before the output's first token,
        as a copy along an unbroken run does: the client's word is evidence, not a guess."""
        if start >= self.offset:
            return self.index.agreement(start - self.offset, cap)
        if start > len(self.source):
            return 0
        tokens, source, begin = self.index.tokens, self.source, self.begin
        limit = min(cap, len(tokens), start + begin)
        length = 0
        while length < limit:
            back = start - 1 - length
            before = source[back] if back >= 0 else tokens[begin + back]
            if before != tokens[-1 - length]:
                break
            length += 1
        return length

    def copy(self, start: int, k: int) -> list[int]:
        """The `k` tokens from `start` on; a copy from the prediction stops at its end."""
        if start >= self.offset:
            return self.index.copy(start - self.offset, k)
        return self.source[start : start + k]

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

    def continuation(self) -> int | None:
        """`NgramIndex.continuation` (the γ-gram policies), the prediction first."""
        if len(self.index) == self.begin:
            return 0
        ours = self._source_match(AGREEMENT_CAP, LONGEST_SCAN)
        if ours is not None:
            return ours
        found = self.index.continuation()
        return None if found is None else found + self.offset

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


class Predicted:
    """A copy proposer that reads the prediction first, counting into `stats`, with OpenAI's
    meanings, the prediction tokens that appeared in the output (accepted: the output wrote
    them where the pointer expected them, drafted or as a pass's own token) and those some
    pass verified that the output did not use (rejected), each prediction position once.

    It goes first among the turn's proposers; once its pointer runs off the prediction's end
    it proposes nothing more, and the turn's own copy proposer goes on."""

    source = "copy"

    def __init__(
        self, proposer: Proposer, prediction: Sequence[int], index: NgramIndex,
        stats: TurnStats,
    ) -> None:
        self.proposer = proposer
        self.index = SourcedIndex(prediction, index)
        self.stats = stats
        self._verified: set[int] = set()
        """Prediction positions some pass verified."""
        self._used: set[int] = set()
        """Prediction positions whose token the output wrote where the pointer expected it."""
        self._last: tuple[int, Proposal] | None = None
        """The sequence's length at the last proposal, and that proposal: what the output then
        wrote is compared with it at the next one (or when the turn settles)."""

    def propose(self, context: Context, limit: int) -> Proposal:
        self._compare()
        proposal = self.proposer.propose(Indexed(self.index), limit)
        proposal.proposer = self
        self._last = (len(self.index.index), proposal)
        return proposal

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        self.proposer.feedback(proposal, accepted)
        size = len(self.index.source)
        self._verified.update(p for p in proposal.origins[: len(proposal)] if 0 <= p < size)

    def settle(self) -> None:
        """After the turn: count what the last pass wrote. Tokens a stop (EOS, a stop string)
        cut off never reached the output: verified, they count as rejected."""
        self._compare()

    def _compare(self) -> None:
        """Which prediction tokens of the last proposal's candidate the output then wrote."""
        if self._last is None:
            return
        before, proposal = self._last
        written, size = self.index.index.tokens[before:], len(self.index.source)
        matched = 0
        while (matched < min(len(written), len(proposal.candidate))
               and proposal.candidate[matched] == written[matched]):
            matched += 1
        self._used.update(p for p in proposal.origins[:matched] if 0 <= p < size)
        self._last = None
        self.stats.accepted_prediction_tokens = len(self._used)
        self.stats.rejected_prediction_tokens = len(self._verified - self._used)
