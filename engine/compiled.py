"""The compiled decode path: a static KV cache and one compiled forward per bucket of widths.

Eager decoding spends a small model's pass in Python (transformers' forward, the DynamicCache
growing by `torch.cat`), not in arithmetic, and on a GPU eager per-step overhead is several
times a 7B model's memory-bound step. As gpt-fast does, the cache here is preallocated
(transformers' `StaticCache`) and `torch.compile` sees a few fixed shapes: CUDA graphs on CUDA
(mode `reduce-overhead`), inductor elsewhere.

- Widths are bucketed (`BUCKETS`): [pending token, proposal…] is padded up to its bucket.
  The padding sits after the real tokens, so causal masking leaves their logits as an
  unpadded pass gives them; its logits are dropped and its keys land past the sequence, where
  the mask hides them (by position) until a later pass overwrites them.
- A crop moves the write position back; nothing is freed or copied.
- Sliding-window layers keep every position (as `RewindableSlidingLayer` does eagerly) and the
  mask applies the window, so they crop like full layers.
- The cache covers prompt + answer budget + the widest bucket (`reserve`), rounded up to a
  power of two so that a growing chat reallocates rarely. Every bucket is compiled when a
  cache is allocated (a compile per bucket and cache size), never midway through a turn.
- Wider passes (long prefills), and padded passes that would reach past the context window,
  run eagerly on the same static cache.

Whether to compile is `engine.config.COMPILE` (`auto|on|off`, the CLI's `--compile`), set per
model with `use_compile`; `auto` compiles where measuring showed it pays (`AUTO_COMPILES`).
A model this path cannot take (recurrent state, no compile support, spread over devices), or
whose compile fails, decodes eagerly after one warning: never a crash.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, StaticCache
from transformers.cache_utils import StaticLayer, StaticSlidingWindowLayer

from engine.config import COMPILE, COMPILE_CHOICES

log = logging.getLogger(__name__)

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Compiled pass widths; a pass is padded up to the next one, and a wider one runs eagerly."""
RECOMPILE_LIMIT = 128
"""Graphs dynamo may keep per forward: one per bucket and cache size, shared by every model of
the same class (a target and its draft), so well above 9 buckets × a few sizes."""
AUTO_COMPILES: frozenset[str] = frozenset()
"""Device types where `--compile auto` compiles: those where measuring showed it pays. None
yet: on a 2-core CPU a pass got 1.03–1.45x cheaper after minutes of compiling
(docs/performance.md); CUDA is not measured yet (scripts/compiled_costs.py --device cuda)."""
PAD_ID = 0
"""Token fed as padding: any id the embedding has; its logits and keys are never used."""


@dataclass
class _Plan:
    """How one model decodes: the asked setting, its compiled forward once made, and why it
    runs eagerly instead (said once)."""

    setting: str = COMPILE
    compiled: Callable[..., object] | None = None
    eager_because: str | None = None


_plans: weakref.WeakKeyDictionary[PreTrainedModel, _Plan] = weakref.WeakKeyDictionary()


def use_compile(model: PreTrainedModel, setting: str) -> None:
    """Set `model`'s compile setting (`auto`, `on` or `off`) for every sequence made after."""
    if setting not in COMPILE_CHOICES:
        raise ValueError(f"unknown compile setting {setting!r}; choose one of "
                         f"{', '.join(COMPILE_CHOICES)}")
    _plans[model] = _Plan(setting)


def compiles(setting: str, device: torch.device) -> bool:
    """Whether `setting` compiles on `device`: `on` and `off` as said, `auto` on the device
    types of AUTO_COMPILES."""
    if setting == "auto":
        return device.type in AUTO_COMPILES
    return setting == "on"


def decodes_compiled(model: PreTrainedModel) -> bool:
    """Whether `model`'s new sequences take the compiled path: its setting compiles on its
    device, and nothing made it decode eagerly (what a pass costs depends on it)."""
    plan = _plans.get(model) or _Plan()
    return (plan.eager_because is None and compiles(plan.setting, model.device)
            and unsupported(model) is None)


def static_forward(
    model: PreTrainedModel, call: Callable[..., torch.Tensor]
) -> StaticForward | None:
    """The compiled path for a new sequence of `model`, or None to decode eagerly (with one
    warning per model when compiling was wanted but cannot be)."""
    plan = _plans.setdefault(model, _Plan())
    if plan.eager_because is not None or not compiles(plan.setting, model.device):
        return None
    reason = unsupported(model)
    if reason is not None:
        fall_back(model, reason)
        return None
    if plan.compiled is None:
        try:
            plan.compiled = torch.compile(
                model, mode="reduce-overhead" if model.device.type == "cuda" else None,
                fullgraph=True, dynamic=False, recompile_limit=RECOMPILE_LIMIT,
            )
        except Exception as error:  # compiling is lazy; this is torch refusing up front
            fall_back(model, describe(error))
            return None
    return StaticForward(model, call, plan.compiled)


def fall_back(model: PreTrainedModel, reason: str) -> None:
    """Decode `model` eagerly from now on, saying why once."""
    plan = _plans.setdefault(model, _Plan())
    if plan.eager_because is None:
        plan.eager_because = reason
        log.warning("%s: compiled decoding is off (%s); decoding eagerly",
                    model.name_or_path or type(model).__name__, reason)


def unsupported(model: PreTrainedModel) -> str | None:
    """Why the static, compiled path cannot take `model`, or None when it can."""
    if not getattr(model, "_can_compile_fullgraph", False):
        return f"{type(model).__name__} does not support torch.compile"
    if len({str(p.device) for p in model.parameters()}) > 1:
        return "the model is spread over several devices"
    try:
        layers = StaticCache(config=model.config, max_cache_len=1).layers
    except Exception as error:  # a config transformers' StaticCache cannot read
        return f"no static cache for it: {describe(error)}"
    kinds = {type(layer) for layer in layers}
    if not kinds <= {StaticLayer, StaticSlidingWindowLayer}:
        names = ", ".join(sorted(k.__name__ for k in kinds))
        return f"its cache layers ({names}) keep state that cannot be rewound"
    return None


def describe(error: Exception) -> str:
    """An error in one line, for the warning that says why decoding went eager."""
    first = (str(error).strip() or "no message").splitlines()[0]
    return f"{type(error).__name__}: {first}"


def bucket(width: int) -> int | None:
    """The compiled width a pass of `width` tokens is padded to; None beyond the widest."""
    return next((b for b in BUCKETS if b >= width), None)


class StaticForward:
    """One sequence's static KV cache and its passes through the model's compiled forward.

    Every bucket is compiled as soon as a cache is allocated, so no pass stalls midway through
    decoding (and a timed pass is a pass, not a compile). The caller (`SequenceState`) keeps
    the count of cached tokens and passes it in: reading it from the cache costs a device sync.
    """

    def __init__(self, model: PreTrainedModel, call: Callable[..., torch.Tensor],
                 compiled: Callable[..., object]) -> None:
        self.model = model
        self.call = call
        """`ForwardCall`: how this model's forward takes the cache and logits to keep."""
        self.compiled = compiled
        self.graphs = model.device.type == "cuda"
        """CUDA graphs: outputs live in buffers the next replay overwrites, so they are cloned."""
        self.window: int | None = getattr(model.config, "max_position_embeddings", None)
        self.cache: StaticCache | None = None
        self.capacity = 0
        self.reserved = 0
        self.compile_seconds: dict[int, float] = {}
        """Seconds of each bucket's first pass (its compile) for the current cache size."""

    def reserve(self, tokens: int) -> None:
        """Make room for a sequence of `tokens` (prompt + answer budget) before it grows, so
        a turn does not reallocate midway (every compiled width would then compile again)."""
        self.reserved = max(self.reserved, tokens)

    def forward(self, input_ids: list[int], cached: int, keep: int) -> torch.Tensor:
        """Logits of `input_ids` after the `cached` tokens (the last `keep`, or all for 0)."""
        n = len(input_ids)
        width = bucket(n)
        if width is not None and not self._fits(cached, width):
            width = None
        self._make_room(cached, cached + (width or n))
        if width is None:
            ids = torch.tensor([input_ids], dtype=torch.long, device=self.model.device)
            return self.call(self.model, ids, self.cache, keep)
        logits = self._compiled_pass(input_ids, width)[:n]
        logits = logits[-keep:] if keep else logits
        return logits.clone() if self.graphs else logits

    @torch.inference_mode()  # the cache was made in inference mode, so is only written there
    def crop(self, tokens: int) -> None:
        """Forget the last `tokens` cached positions (they are overwritten later)."""
        if tokens > 0 and self.cache is not None:
            self.cache.crop(-tokens)

    def _fits(self, cached: int, width: int) -> bool:
        """Whether a padded pass stays inside the window: learned position tables (GPT-2) have
        no row past it, so such passes run eagerly at their own width."""
        return self.window is None or cached + width <= self.window

    def _compiled_pass(self, input_ids: list[int], width: int) -> torch.Tensor:
        """Logits of `input_ids` padded to `width`; the padding's keys are left past the end."""
        n = len(input_ids)
        ids = torch.tensor([input_ids + [PAD_ID] * (width - n)], dtype=torch.long,
                           device=self.model.device)
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()
        logits = self.call(self.compiled, ids, self.cache, 0)
        if width > n:
            self.cache.crop(n - width)  # the write position goes back to the real tokens' end
        return logits

    def _make_room(self, cached: int, end: int) -> None:
        if end <= self.capacity:
            return
        widest = BUCKETS[-1]
        size = 1 << (max(end, self.reserved) + widest - 1).bit_length()
        if self.window is not None:
            size = min(size, self.window + widest)
        self._allocate(cached, max(size, end))
        self._compile(cached)

    def _allocate(self, cached: int, size: int) -> None:
        """A cache of `size` positions holding the first `cached` of the old one. One eager
        pass allocates its layers (in a compiled graph they could not be marked static)."""
        cache = StaticCache(config=self.model.config, max_cache_len=size)
        cache.layers = [StaticLayer(size) for _ in cache.layers]
        pad = torch.full((1, 1), PAD_ID, dtype=torch.long, device=self.model.device)
        self.call(self.model, pad, cache, 1)
        for i, layer in enumerate(cache.layers):
            if self.cache is not None:
                old = self.cache.layers[i]
                layer.keys[:, :, :cached] = old.keys[:, :, :cached]
                layer.values[:, :, :cached] = old.values[:, :, :cached]
            layer.cumulative_length.fill_(cached)
        self.cache, self.capacity = cache, size

    def _compile(self, cached: int) -> None:
        """Compile every bucket that fits, with a pass of padding after the `cached` tokens."""
        self.compile_seconds = {}
        for width in BUCKETS:
            if cached + width <= self.capacity and self._fits(cached, width):
                begin = time.perf_counter()
                self._compiled_pass([], width)
                self.compile_seconds[width] = time.perf_counter() - begin
        log.info("%s: compiled %d widths for a %d-token cache in %.1f s",
                 self.model.name_or_path or type(self.model).__name__,
                 len(self.compile_seconds), self.capacity, sum(self.compile_seconds.values()))
