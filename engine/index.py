"""Incremental γ-gram index over a token sequence: O(1) append, O(1) lookup, exact keys.

Each γ-gram maps to the positions just after its occurrences, in the order they were seen,
so the most recent earlier occurrence is the second-to-last entry (the last is the current
suffix itself). Truncation pops entries in reverse, which keeps multi-turn cache cropping cheap.
"""

from __future__ import annotations

from collections.abc import Iterable

POLICIES = ("recent", "oldest", "longest")
LONGEST_SCAN = 64
"""How many of the most recent occurrences the `longest` policy compares, to bound its cost."""


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

    def __len__(self) -> int:
        return len(self.tokens)

    def append(self, token: int) -> None:
        self.tokens.append(token)
        end = len(self.tokens)
        if end >= self.gamma:
            key = tuple(self.tokens[end - self.gamma : end])
            self._follows.setdefault(key, []).append(end)

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            self.append(token)

    def truncate(self, length: int) -> None:
        """Forget every token from `length` on, as if they had never been appended."""
        for end in range(len(self.tokens), max(length, self.gamma - 1), -1):
            key = tuple(self.tokens[end - self.gamma : end])
            positions = self._follows[key]
            positions.pop()
            if not positions:
                del self._follows[key]
        del self.tokens[length:]

    def lookup(self, k: int) -> list[int]:
        """Up to `k` tokens that followed an earlier occurrence of the last γ tokens."""
        end = len(self.tokens)
        if k <= 0 or end < self.gamma:
            return []
        positions = self._follows[tuple(self.tokens[end - self.gamma : end])]
        if len(positions) < 2:
            return []
        start = self._choose(positions[:-1])
        proposal = self.tokens[start : start + k]
        # A match that runs into the current end continues with its own copy: in "abcabc|"
        # the match at distance 3 proposes "abcabc..." rather than stopping after 3 tokens.
        while len(proposal) < k:
            proposal.append(proposal[len(proposal) - (end - start)])
        return proposal

    def _choose(self, earlier: list[int]) -> int:
        if self.policy == "recent":
            return earlier[-1]
        if self.policy == "oldest":
            return earlier[0]
        return max(reversed(earlier[-LONGEST_SCAN:]), key=self._backward_agreement)

    def _backward_agreement(self, start: int) -> int:
        """How many tokens before `start` equal the tokens before the current end."""
        tokens, end, length = self.tokens, len(self.tokens), 0
        while length < start and tokens[start - 1 - length] == tokens[end - 1 - length]:
            length += 1
        return length
