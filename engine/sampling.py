"""Turn logits into the distributions plain sampling would draw from: temperature, top-k, top-p."""

from __future__ import annotations

import torch

from engine.config import SamplingConfig


class Sampler:
    """Seeded sampling state; the same seed and method give the same tokens."""

    def __init__(self, config: SamplingConfig, device: torch.device) -> None:
        self.config = config
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(config.seed)

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Filtered, renormalised probabilities for each row of `logits`."""
        scores = logits.float() / self.config.temperature
        if self.config.top_k:
            kth = torch.topk(scores, min(self.config.top_k, scores.shape[-1])).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.config.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, descending=True)
            cumulative = sorted_scores.softmax(-1).cumsum(-1)
            drop_sorted = cumulative - sorted_scores.softmax(-1) >= self.config.top_p
            drop = drop_sorted.scatter(-1, order, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        return scores.softmax(-1)

    def uniform(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.rand(n, generator=self.generator, device=device)

    def draw(self, probs: torch.Tensor) -> torch.Tensor:
        """One sample per row."""
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
