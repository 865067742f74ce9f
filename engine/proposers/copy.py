"""Copy proposers: continue an earlier occurrence of what was just written.

`CopyProposer` is CopySpec's rule: look the last γ tokens up, copy K tokens after the match.
`ResyncProposer` (policy `resync`, the default) keeps a pointer into the source it is copying,
so a rewrite of code it has seen is followed as one alignment rather than looked up γ tokens at a
time: the pointer advances with every accepted token, and after a divergence it guesses a
substitution at once, then re-anchors at the nearest multi-token match around the divergence,
falling back to the global index. Its draft length follows the alignment length.
"""

from __future__ import annotations

from engine.index import NgramIndex
from engine.proposers import Proposal
from engine.schedule import BlockSchedule
from engine.sequence import SequenceState

ANCHOR_WINDOW = 4096
"""How far around a divergence the re-anchoring search looks (tokens)."""
ANCHOR_CAP = 32
"""Agreement is compared up to this many tokens when ranking anchors (bounds the cost)."""
ANCHOR_SCAN = 16
"""Occurrences compared on each side of a divergence, and of the last γ tokens globally: with
many copies of one file in the context every comparison runs long, so this bounds the cost."""
ANCHOR_MIN = 1
"""Tokens of agreement an anchor needs; below it the source is assumed to resume in place."""
SUBSTITUTE_BELOW = 2
"""Right after a divergence, guess a one-token substitution unless an anchor agrees this much."""


class CopyProposer:
    """Proposes the tokens that followed an earlier occurrence of the last γ tokens."""

    source = "copy"

    def __init__(self, schedule: BlockSchedule) -> None:
        self.schedule = schedule

    def propose(self, state: SequenceState, limit: int) -> Proposal:
        tokens = state.index.lookup(min(self.schedule.size, limit))
        return Proposal(tokens, "copy", proposer=self) if tokens else Proposal()

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        self.schedule.update(len(proposal), accepted)


class ResyncProposer:
    """A pointer into the source being rewritten, re-synchronised right after each divergence.

    Draft length: twice the current alignment (the tokens before the pointer that equal the
    tokens just written, or the run copied along it with halving at divergences), within
    [min_block, max_block]; a long unchanged run earns a long draft, a fresh guess a short one.
    The candidate runs on to max_block, for a chooser that weighs lengths by their cost.

    It learns from the sequence itself: before each proposal it compares what was written
    since the last one with its source, so it follows along whether its tokens were verified,
    cut short by a chooser, or not verified at all."""

    source = "copy"

    def __init__(self, min_block: int, max_block: int) -> None:
        self.min_block, self.max_block = min_block, max_block
        self._pointer: int | None = None
        """Source position expected to hold the next output token, while aligned."""
        self._diverged: int | None = None
        """Source position where the output last left the source, until re-anchored."""
        self._since = 0
        """Tokens written since that divergence."""
        self._run = 0
        """Tokens copied along the current alignment, halved at each divergence: an edit
        inside a long unchanged run keeps most of the run's draft length."""
        self._start: int | None = None
        """Where the last proposal copied from (None: it proposed nothing)."""
        self._seen = 0

    def propose(self, state: SequenceState, limit: int) -> Proposal:
        index = state.index
        self._follow(index)
        start, mode = self._choose(index)
        self._seen, self._start = len(index), None
        if start is None or start >= len(index) or limit <= 0:
            return Proposal()
        self._start = start
        run = self._run if self._diverged is None or self._since == 1 else 0
        aligned = max(run, index.agreement(start, self.max_block // 2))
        k = min(limit, max(self.min_block, min(self.max_block, 2 * aligned)))
        candidate = index.copy(start, min(limit, self.max_block))
        return Proposal(candidate[:k], "copy", proposer=self, candidate=candidate, mode=mode,
                        aligned=aligned)

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        """Nothing to do: the next `propose` reads what was written from the index."""

    def _follow(self, index: NgramIndex) -> None:
        """Move the pointer over what was written since the last proposal, or note where it
        left the source."""
        written = len(index) - self._seen
        if written <= 0 or not self._seen:
            return
        if self._start is None:
            self._since += written  # no proposal: still off the source
            return
        matched, tokens = 0, index.tokens
        while (matched < written and self._start + matched < self._seen
               and tokens[self._start + matched] == tokens[self._seen + matched]):
            matched += 1
        if matched == written:
            self._pointer, self._diverged, self._since = self._start + written, None, 0
            self._run += written
        elif matched == 0 and self._pointer is None:
            self._since += written  # a guess that failed: still off the source
        else:
            self._pointer, self._diverged = None, self._start + matched
            self._since = written - matched
            self._run = (self._run + matched) // 2

    def _choose(self, index: NgramIndex) -> tuple[int | None, str]:
        """Where to copy from, and how that was found."""
        if self._pointer is not None:
            return self._pointer, "aligned"
        if self._diverged is None:
            return index.match(ANCHOR_CAP, ANCHOR_SCAN), "match"
        anchor, agreement = index.anchor(self._diverged, ANCHOR_WINDOW, ANCHOR_CAP, ANCHOR_SCAN)
        match = index.match(ANCHOR_CAP, ANCHOR_SCAN)
        if match is not None and index.agreement(match, ANCHOR_CAP) > agreement:
            anchor, agreement = match, index.agreement(match, ANCHOR_CAP)
        if self._since == 1 and agreement < SUBSTITUTE_BELOW:  # a substitution: skip one token
            return self._diverged + 1, "substitute"
        if agreement >= ANCHOR_MIN:
            return anchor, "anchor"
        return self._diverged, "resume"  # an insertion so far: the source may resume here
