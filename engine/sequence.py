"""The model's view of one growing token sequence: tokens, KV cache and γ-gram index in lockstep.

Invariant after every public call: the cache holds the keys and values of every token except
the last, which is "pending" and becomes the first input of the next forward pass.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel

from engine.index import NgramIndex

PREFILL_CHUNK = 2048
"""Long prompts are prefilled in chunks to bound activation memory."""


class SequenceState:
    """Tokens plus the KV cache and index that describe them, kept consistent across turns."""

    def __init__(self, model: PreTrainedModel, gamma: int = 3, policy: str = "recent") -> None:
        self.model = model
        self.device = model.device
        self.index = NgramIndex(gamma, policy)
        self.cache = DynamicCache(config=model.config)

    @property
    def tokens(self) -> list[int]:
        return self.index.tokens

    @property
    def cached_length(self) -> int:
        return self.cache.get_seq_length()

    def sync(self, ids: list[int]) -> int:
        """Make the sequence equal `ids`, reusing the longest cached prefix; returns tokens fed."""
        if not ids:
            raise ValueError("cannot decode from an empty prompt")
        keep = min(
            _common_prefix(self.tokens, ids),
            len(ids) - 1,
            max(0, len(self.tokens) - 1),
            self.cached_length,
        )
        self._crop(keep)
        self.index.truncate(keep)
        self.index.extend(ids[keep:])
        todo = ids[keep:-1]
        for start in range(0, len(todo), PREFILL_CHUNK):
            self.forward(todo[start : start + PREFILL_CHUNK], logits_to_keep=1)
        return len(todo)

    @torch.inference_mode()
    def forward(self, input_ids: list[int], logits_to_keep: int = 0) -> torch.Tensor:
        """Run the model over `input_ids` after the cache; returns logits of shape (n, vocab)."""
        ids = torch.tensor([input_ids], dtype=torch.long, device=self.device)
        out = self.model(
            input_ids=ids,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=logits_to_keep,
        )
        return out.logits[0]

    def accept(self, tokens: list[int]) -> None:
        """Append accepted tokens and drop cached keys of anything rejected."""
        self.index.extend(tokens)
        self._crop(len(self.tokens) - 1)

    def _crop(self, length: int) -> None:
        """Keep the first `length` cached positions. `crop(-n)` removes n in every transformers
        version that has the Cache API; `crop(0)` would mean different things across them."""
        if length == 0:
            self.cache = DynamicCache(config=self.model.config)
        elif self.cached_length > length:
            self.cache.crop(length - self.cached_length)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
