"""Typed, validated settings for speculation and sampling, shared by the CLI, bench and server."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.index import POLICIES

METHODS = ("greedy", "copy", "draft", "copy+draft")
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
"""`auto` places the model with accelerate's device_map (GPUs, then CPU, then disk)."""
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DTYPES = ("auto", "float32", "bfloat16", "float16")
MAX_BLOCK = 256
"""The longest draft, unless the starting K is larger: far above 64, since a long unchanged
run verifies in one pass (`copyspec bench costs` measures what a width costs per device)."""
SMALL_MODEL_PARAMETERS = 50_000_000
"""Below this many parameters a CPU model runs on one thread unless told otherwise: its
forward passes are too short to gain from more, and on a busy CPU extra threads wait."""
MAX_NEW_TOKENS = 512
"""An answer's token budget when none is given (the CLI's and the server's)."""
COMPILE_CHOICES = ("auto", "on", "off")
COMPILE = "auto"
"""Whether decoding runs compiled with a static cache (`engine.compiled`): `auto` where that
was measured to pay (`engine.compiled.AUTO_COMPILES`), `on` wherever the model allows."""


def device_name(value: str) -> str:
    """`value` when it names a device this engine can use; ValueError otherwise."""
    if not isinstance(value, str) or not DEVICE_PATTERN.fullmatch(value):
        raise ValueError(f"unknown device {value!r}; choose one of {', '.join(DEVICES)}")
    return value


@dataclass(frozen=True)
class SpecConfig:
    """How tokens are proposed: method, γ, block length K and the match policy."""

    method: str = "copy"
    gamma: int = 3
    block: int = 16
    """K: tokens per copy; with policy `resync`, the shortest draft (it grows with alignment)."""
    adaptive: bool = True
    max_block: int | None = None
    """Ceiling of adaptive K (the longest draft); None means max(MAX_BLOCK, block), so a large K
    alone is valid."""
    policy: str = "resync"
    draft_block: int = 5
    cost_aware: bool = True
    """Cut each draft to the length worth its pass on this device, none when no length pays
    (`engine.schedule.DraftChooser` over the measured `engine.costs` curve); False verifies
    what the proposers choose, whatever it costs."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.gamma < 1:
            raise ValueError(f"gamma must be at least 1, got {self.gamma}")
        if self.block < 1:
            raise ValueError(f"block must be at least 1, got {self.block}")
        if self.max_block is None:
            object.__setattr__(self, "max_block", max(MAX_BLOCK, self.block))
        if self.max_block < self.block:
            raise ValueError(f"max_block ({self.max_block}) must be at least block ({self.block})")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        if self.draft_block < 1:
            raise ValueError(f"draft_block must be at least 1, got {self.draft_block}")

    @property
    def copies(self) -> bool:
        return self.method in ("copy", "copy+draft")

    @property
    def drafts(self) -> bool:
        return self.method in ("draft", "copy+draft")


@dataclass(frozen=True)
class SamplingConfig:
    """Temperature 0 means greedy; otherwise seeded sampling with top-k and top-p filtering."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
