"""The model's view of one growing token sequence: tokens, KV cache and γ-gram index in lockstep.

Invariant after every public call: the cache holds the keys and values of every token except
the last, which is "pending" and becomes the first input of the next forward pass — or, right
after `sync`, the cache holds every token and `step` reuses the logits the prefill already
computed for the last one. That is how `generate` prefills (the whole prompt in one forward),
so plain greedy decoding runs the very same shapes and is identical even in bfloat16.

Sliding-window layers keep every position but attend over the window alone, exactly as
transformers' `DynamicSlidingWindowLayer` does (same keys, same shapes, so even bfloat16 rounds
the same); that layer drops the older keys and then cannot crop back past the window, which
speculation and multi-turn rewinds need.

Recurrent state (SSM, linear attention, short convolutions) cannot be rewound: such caches only
grow, a turn that rewinds them re-prefills from scratch, and they are marked not `speculative`.

Where the model's compile setting asks for it, passes run through `engine.compiled` instead: a
static cache and compiled forwards per bucket of widths; should that fail, the cached tokens
are fed again to a DynamicCache and decoding goes on eagerly.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache, PreTrainedModel, StaticCache

from engine.compiled import describe, fall_back, static_forward
from engine.index import NgramIndex

try:  # transformers >= 4.56 names the layers of a cache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
except ImportError:  # pragma: no cover - older caches hold full layers only
    DynamicLayer = DynamicSlidingWindowLayer = None

PREFILL_CHUNK = 2048
"""Long prompts are prefilled in chunks to bound activation memory."""


class SequenceState:
    """Tokens plus the KV cache and index that describe them, kept consistent across turns."""

    def __init__(self, model: PreTrainedModel, gamma: int = 3, policy: str = "recent") -> None:
        self.model = model
        self.device = model.device
        self.index = NgramIndex(gamma, policy)
        self.call = ForwardCall.of(model)
        self._dynamic = self._new_cache()
        self.speculative = not _has_recurrent_state(self._dynamic)
        """Whether rejected tokens can be cropped from the cache (no recurrent state)."""
        self.static = static_forward(model, self.call)
        """The compiled static-cache path (`engine.compiled`), or None when decoding eagerly."""
        self._cached = 0
        self._logits: torch.Tensor | None = None

    @property
    def cache(self) -> DynamicCache | StaticCache | None:
        """The KV cache: static while compiled (None before its first pass), else dynamic."""
        return self.static.cache if self.static is not None else self._dynamic

    @property
    def tokens(self) -> list[int]:
        return self.index.tokens

    @property
    def cached_length(self) -> int:
        """Tokens whose keys and values (or recurrent state) the cache holds."""
        return self._cached

    def reserve(self, tokens: int) -> None:
        """The sequence will reach about `tokens` (prompt + answer budget): a static cache
        sizes itself for that once, rather than growing midway. Nothing to do when eager."""
        if self.static is not None:
            self.static.reserve(tokens)

    def sync(self, ids: list[int]) -> int:
        """Make the sequence equal `ids`, reusing the longest cached prefix; returns tokens fed.

        Everything not cached is fed, the last token too, so the logits after `ids` are ready
        for the next `step`."""
        if not ids:
            raise ValueError("cannot decode from an empty prompt")
        keep = min(_common_prefix(self.tokens, ids), len(ids) - 1, self._cached)
        if keep < self._cached and not self.speculative:
            keep = 0  # recurrent state cannot be rewound: start again
        self._crop(keep)
        self.index.truncate(keep)
        self.index.extend(ids[keep:])
        todo = ids[keep:]
        for start in range(0, len(todo), PREFILL_CHUNK):
            self._logits = self.forward(todo[start : start + PREFILL_CHUNK], logits_to_keep=1)
        return len(todo)

    def step(self, proposal: list[int]) -> torch.Tensor:
        """Logits after the last token and after each proposed token: shape (1 + len, vocab)."""
        if self._logits is None:
            return self.forward([self.tokens[-1], *proposal])
        held, self._logits = self._logits, None
        if not proposal:
            return held
        return torch.cat([held, self.forward(proposal)])

    @torch.inference_mode()
    def forward(self, input_ids: list[int], logits_to_keep: int = 0) -> torch.Tensor:
        """Run the model over `input_ids` after the cache; returns logits of shape (n, vocab)."""
        self._logits = None
        logits = self._static_forward(input_ids, logits_to_keep) if self.static else None
        if logits is None:
            ids = torch.tensor([input_ids], dtype=torch.long, device=self.device)
            logits = self.call(self.model, ids, self._dynamic, logits_to_keep)
        self._cached += len(input_ids)
        return logits

    def _static_forward(self, input_ids: list[int], keep: int) -> torch.Tensor | None:
        """The compiled pass; None when it failed, after the cached tokens were fed again to a
        fresh DynamicCache, so the caller runs the pass eagerly."""
        try:
            return self.static.forward(input_ids, self._cached, keep)
        except Exception as error:  # any compile or run failure: decoding goes on eagerly
            fall_back(self.model, describe(error))
        self.static, self._dynamic = None, self._new_cache()
        cached = self.tokens[: self._cached]
        for start in range(0, len(cached), PREFILL_CHUNK):
            ids = torch.tensor([cached[start : start + PREFILL_CHUNK]], device=self.device)
            self.call(self.model, ids, self._dynamic, 1)
        return None

    def accept(self, tokens: list[int]) -> None:
        """Append accepted tokens and drop cached keys of anything rejected."""
        self.index.extend(tokens)
        self._crop(len(self.tokens) - 1)

    def _new_cache(self) -> DynamicCache:
        cache = DynamicCache(config=self.model.config)
        if DynamicSlidingWindowLayer is not None:
            cache.layers = [
                RewindableSlidingLayer(layer.sliding_window)
                if type(layer) is DynamicSlidingWindowLayer else layer
                for layer in cache.layers
            ]
        return cache

    def _crop(self, length: int) -> None:
        """Keep the first `length` cached positions. `crop(-n)` removes n in every transformers
        version that has the Cache API; `crop(0)` would mean different things across them."""
        if self.static is not None:
            self.static.crop(self._cached - length)
            self._cached = min(self._cached, length)
        elif length == 0:
            self._dynamic, self._cached = self._new_cache(), 0
        elif self._cached > length:
            self._dynamic.crop(length - self._cached)
            self._cached = length


if DynamicSlidingWindowLayer is not None:

    class RewindableSlidingLayer(DynamicSlidingWindowLayer):
        """A sliding-window layer that keeps every position, so it crops like a full layer,
        and hands attention the same last `window - 1 + new` keys as the stock layer."""

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if self.keys is None or not getattr(self, "is_initialized", True):
                try:
                    self.lazy_initialization(key_states, value_states)
                except TypeError:  # transformers 4.x takes the keys alone
                    self.lazy_initialization(key_states)
            self.cumulative_length += key_states.shape[-2]
            self.keys = torch.cat([self.keys, key_states], dim=-2)
            self.values = torch.cat([self.values, value_states], dim=-2)
            visible = self.sliding_window - 1 + key_states.shape[-2]
            return self.keys[..., -visible:, :], self.values[..., -visible:, :]

        def crop(self, tokens_to_remove: int) -> None:
            DynamicLayer.crop(self, tokens_to_remove)
            self.cumulative_length = self.keys.shape[-2]


class ForwardCall:
    """How this model's `forward` takes the cache and the logits to keep, read once from its
    signature: transformers 5 renamed `past_key_values` to `cache`, and remote code written
    before `logits_to_keep` has no such argument (its logits are then sliced here)."""

    def __init__(self, cache_name: str, keeps_logits: bool) -> None:
        self.cache_name = cache_name
        self.keeps_logits = keeps_logits

    @classmethod
    def of(cls, model: PreTrainedModel) -> ForwardCall:
        names = inspect.signature(model.forward).parameters
        cache_name = "cache" if "cache" in names else "past_key_values"
        return cls(cache_name, "logits_to_keep" in names)

    def __call__(
        self, model: PreTrainedModel, ids: torch.Tensor, cache: DynamicCache, keep: int
    ) -> torch.Tensor:
        kwargs = {self.cache_name: cache, "use_cache": True}
        if self.keeps_logits:
            kwargs["logits_to_keep"] = keep
        logits = model(input_ids=ids, **kwargs).logits[0]
        return logits[-keep:] if keep and not self.keeps_logits else logits


def recurrent(model: PreTrainedModel) -> bool:
    """Whether this model's cache keeps recurrent state, so cannot roll back (no speculation)."""
    return _has_recurrent_state(DynamicCache(config=model.config))


def _has_recurrent_state(cache: DynamicCache) -> bool:
    """Whether any layer keeps state that is not one key/value row per token."""
    return any(hasattr(layer, "recurrent_states") for layer in getattr(cache, "layers", ()))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
