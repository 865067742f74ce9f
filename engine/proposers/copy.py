"""Copy proposer: continue the latest γ-gram match found in the session's index."""

from __future__ import annotations

from engine.proposers import Proposal
from engine.schedule import BlockSchedule
from engine.sequence import SequenceState


class CopyProposer:
    """Proposes the tokens that followed an earlier occurrence of the last γ tokens."""

    def __init__(self, schedule: BlockSchedule) -> None:
        self.schedule = schedule

    def propose(self, state: SequenceState, limit: int) -> Proposal:
        tokens = state.index.lookup(min(self.schedule.size, limit))
        return Proposal(tokens, "copy", proposer=self) if tokens else Proposal()

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        self.schedule.update(len(proposal), accepted)
