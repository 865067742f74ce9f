"""How many tokens to propose next: fixed K, or adaptive K that follows recent acceptance."""

from __future__ import annotations


class BlockSchedule:
    """Adaptive mode doubles K after a fully accepted proposal and halves it after a rejection,
    staying within [1, max_block]; fixed mode always answers `block`."""

    def __init__(self, block: int, adaptive: bool, max_block: int) -> None:
        self.size = block
        self.adaptive = adaptive
        self.max_block = max_block

    def update(self, proposed: int, accepted: int) -> None:
        if not self.adaptive or proposed == 0:
            return
        if accepted == proposed:
            if proposed == self.size:
                self.size = min(2 * self.size, self.max_block)
        else:
            self.size = max(1, self.size // 2)
