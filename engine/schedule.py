"""How many tokens to propose next: fixed K, or adaptive K that follows recent acceptance."""

from __future__ import annotations


class BlockSchedule:
    """Adaptive mode doubles K after a fully accepted proposal and halves it after a rejection,
    staying within [min_block, max_block]; fixed mode always answers `block`."""

    def __init__(self, block: int, adaptive: bool, max_block: int, min_block: int = 1) -> None:
        self.size = block
        self.adaptive = adaptive
        self.max_block = max_block
        self.min_block = min(min_block, block)

    def update(self, proposed: int, accepted: int) -> None:
        if not self.adaptive or proposed == 0:
            return
        if accepted == proposed:
            if proposed == self.size:
                self.size = min(2 * self.size, self.max_block)
        else:
            self.size = max(self.min_block, self.size // 2)
