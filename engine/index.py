"""Incremental γ-gram index over a token sequence: O(1) append, O(1) lookup, exact keys.

Each γ-gram maps to the positions just after its occurrences, in the order they were seen,
so the most recent earlier occurrence is the second-to-last entry (the last is the current
suffix itself). Truncation pops entries in reverse, which keeps multi-turn cache cropping cheap.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

POLICIES = ("resync", "recent", "oldest", "longest")
"""`resync` matches like `longest`; the copy proposer then follows the match as a pointer."""
LONGEST_SCAN = 64
"""How many of the most recent occurrences the `longest` policy compares, to bound its cost."""
ANCHOR_SCAN = 32
"""How many occurrences on each side of the divergence re-anchoring compares, to bound its cost."""
AGREEMENT_CAP = 256
"""Backward agreement is counted up to here: longer runs rank the same and cost stays bounded."""


class NgramIndex:
    """Every γ-token window of a growing sequence, with the continuations that followed it."""

    def __init__(self, gamma: int = 3, policy: str = "recent") -> None:
        if gamma < 1:
            raise ValueError(f"gamma must be at least 1, got {gamma}")
        if policy not in POLICIES:
            raise ValueError(f"unknown match policy {policy!r}; choose one of {POLICIES}")
        self.gamma = gamma
        self.policy = policy
        self.tokens: list[int] = []
        self._follows: dict[tuple[int, ...], list[int]] = {}
        self._after: dict[int, list[int]] = {}
        """Each token → the positions just after its occurrences, for re-anchoring nearby."""

    def __len__(self) -> int:
        return len(self.tokens)

    def append(self, token: int) -> None:
        self.tokens.append(token)
        end = len(self.tokens)
        self._after.setdefault(token, []).append(end)
        if end >= self.gamma:
            key = tuple(self.tokens[end - self.gamma : end])
            self._follows.setdefault(key, []).append(end)

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            self.append(token)

    def truncate(self, length: int) -> None:
        """Forget every token from `length` on, as if they had never been appended."""
        for end in range(len(self.tokens), length, -1):
            after = self._after[self.tokens[end - 1]]
            after.pop()
            if not after:
                del self._after[self.tokens[end - 1]]
        for end in range(len(self.tokens), max(length, self.gamma - 1), -1):
            key = tuple(self.tokens[end - self.gamma : end])
            positions = self._follows[key]
            positions.pop()
            if not positions:
                del self._follows[key]
        del self.tokens[length:]

    def lookup(self, k: int) -> list[int]:
        """Up to `k` tokens that followed an earlier occurrence of the last γ tokens."""
        start = self.continuation()
        return [] if k <= 0 or start is None else self.copy(start, k)

    def continuation(self) -> int | None:
        """Where the policy's earlier occurrence of the last γ tokens ends (what `lookup`
        copies from); None when they never occurred before."""
        end = len(self.tokens)
        if end < self.gamma:
            return None
        positions = self._follows[tuple(self.tokens[end - self.gamma : end])]
        return self._choose(positions[:-1]) if len(positions) >= 2 else None

    def match(self, cap: int = AGREEMENT_CAP, scan: int = LONGEST_SCAN) -> int | None:
        """Where the last γ tokens occurred before with the longest agreement (newest on ties)
        among their `scan` latest occurrences, as the position just after that occurrence;
        None when they never did."""
        end = len(self.tokens)
        if end < self.gamma:
            return None
        positions = self._follows[tuple(self.tokens[end - self.gamma : end])]
        if len(positions) < 2:
            return None
        return max(reversed(positions[-1 - scan : -1]),
                   key=lambda start: self.agreement(start, cap))

    def copy(self, start: int, k: int) -> list[int]:
        """The `k` tokens from `start` on. A copy that runs into the current end continues with
        itself: in "abcabc|" a copy from distance 3 proposes "abcabc..." rather than stopping."""
        end = len(self.tokens)
        proposal = self.tokens[start : start + k]
        while len(proposal) < k:
            proposal.append(proposal[len(proposal) - (end - start)])
        return proposal

    def anchor(self, near: int, window: int, cap: int, scan: int = ANCHOR_SCAN
               ) -> tuple[int, int]:
        """The position after an occurrence of the last token within `window` of `near` whose
        backward agreement (up to `cap`) is longest, nearest to `near` on ties (later first);
        returns (position, agreement), agreement 0 when there is none."""
        end = len(self.tokens)
        if not end:
            return near, 0
        positions = self._after[self.tokens[-1]]
        middle = bisect.bisect_left(positions, near)
        lo = max(bisect.bisect_left(positions, near - window), middle - scan)
        hi = min(bisect.bisect_right(positions, min(near + window, end - 1)), middle + scan)
        best, best_key = near, (0, 0)
        for position in positions[lo:hi]:
            agreement = self.agreement(position, cap)
            key = (agreement, -abs(position - near) * 2 + (position >= near))
            if key > best_key:
                best, best_key = position, key
        return best, best_key[0]

    def _choose(self, earlier: list[int]) -> int:
        if self.policy == "recent":
            return earlier[-1]
        if self.policy == "oldest":
            return earlier[0]
        return max(reversed(earlier[-LONGEST_SCAN:]), key=self.agreement)

    def agreement(self, start: int, cap: int = AGREEMENT_CAP) -> int:
        """How many tokens before `start` equal the tokens before the current end (≤ cap)."""
        tokens, end, length = self.tokens, len(self.tokens), 0
        limit = min(start, cap)
        while length < limit and tokens[start - 1 - length] == tokens[end - 1 - length]:
            length += 1
        return length
