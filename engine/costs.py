"""What one verify pass costs on this device, by width: the curve the draft-length chooser weighs
a draft's expected tokens against.

A pass over [pending token, draft…] costs roughly its width on a CPU and stays nearly flat to a
few hundred tokens on a GPU, so the same draft can pay on one device and lose on another. The
curve is measured with the real model (a few timed forwards at a handful of widths after a short
context, about a second), interpolated in between, and kept on disk under
`${XDG_CACHE_HOME:-~/.cache}/copyspec/costs/`, keyed by the model's files, device, dtype,
threads, whether it decodes compiled (`engine.compiled`: a static cache and compiled forwards
cost differently) and torch version. `copyspec bench costs` measures the same curve at more
widths and contexts.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import platform
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel

from engine.compiled import decodes_compiled
from engine.sequence import SequenceState

WIDTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Pass widths measured (the pending token plus width − 1 drafted tokens)."""
CONTEXT = 256
"""Cached tokens before the timed passes. A longer context makes wide passes relatively cheaper
(the per-pass work over the cache is shared), so a short one errs towards shorter drafts."""
FIRST = (1, 2, 4, 8, 16, 32, 64)
"""Timed once whatever the budget (so a large model on a CPU takes longer than the budget):
the widths most passes use (a CPU's curve has steps, SmolLM2's one from 4 to 8), up to one
wide enough that wider ones are extrapolated along a slope where cost grows with width."""
BUDGET_SECONDS = 1.0
"""Measuring stops adding widths and repeats once this much time is spent."""
REPEATS = 5
"""Timed forwards per width when the budget allows; the fastest counts (interference from
other work only ever adds time)."""
TINY_PARAMETERS = 1_000_000
"""Below this many parameters a forward is all overhead, width barely shows (the tests'
90k-parameter models: width 64 within 1.6x of width 1) and timing it is noise on a busy
machine: such a model gets the flat curve, unmeasured."""
STORE_AFTER_SECONDS = 0.2
"""A curve that took less than this to measure is measured again rather than stored: a tiny
model measures in milliseconds, and tests should not write to the user's cache."""
CALIBRATION_HALF_LIFE = 64
"""Passes after which a timed pass counts half in the online correction."""
CALIBRATION_WEIGHT = 4.0
"""Passes of evidence the measured curve is worth, for one-token and for drafted passes."""
CLIP = math.log(8)
"""A pass further off the curve than this (either way) counts as this far: it may have waited
on another process."""
REMEASURE_BEYOND = 2.0
"""A curve that a turn's passes found off by more than this factor (drafted widths relative to
one token, either way) is forgotten, in memory and on disk, and measured again at the next
turn: it was timed while the machine was busier or quieter than it is now."""
FORMAT = 3
"""Bumped when the stored curve's meaning changes, so older files are measured again."""


@dataclass(frozen=True)
class CostCurve:
    """Seconds per verify pass at measured widths; any width is interpolated linearly between
    them, and past the widest extrapolated along the last segment, or along the whole curve's
    average slope where that is steeper (a flat last segment can be noise, and a pass whose
    cost has grown with width does not stop growing)."""

    widths: tuple[int, ...]
    seconds: tuple[float, ...]
    measured: bool = False
    """Timed on this machine (`measure`), so worth correcting by the passes' own times
    (`Calibrated`); a curve given by hand, or the flat one, is taken as it is."""

    def __post_init__(self) -> None:
        if not self.widths or len(self.widths) != len(self.seconds):
            raise ValueError("a cost curve needs one cost per width, and at least one width")
        if list(self.widths) != sorted(set(self.widths)) or self.widths[0] < 1:
            raise ValueError(f"widths must be increasing and positive, got {self.widths}")
        if self.seconds[0] <= 0 or list(self.seconds) != sorted(self.seconds):
            raise ValueError(f"costs must be positive and never fall, got {self.seconds}")

    @classmethod
    def flat(cls) -> CostCurve:
        """Every width costs one pass: what counting passes assumes."""
        return cls((1, 1 << 30), (1.0, 1.0))

    def __call__(self, width: int) -> float:
        """Seconds of one pass of `width` tokens."""
        widths, seconds = self.widths, self.seconds
        if width <= widths[0] or len(widths) == 1:
            return seconds[0]
        i = bisect.bisect_left(widths, width)
        if i == len(widths):
            slope = max((seconds[-1] - seconds[-2]) / (widths[-1] - widths[-2]),
                        (seconds[-1] - seconds[0]) / (widths[-1] - widths[0]))
            return seconds[-1] + slope * (width - widths[-1])
        slope = (seconds[i] - seconds[i - 1]) / (widths[i] - widths[i - 1])
        return seconds[i - 1] + slope * (width - widths[i - 1])

    def relative(self) -> list[float]:
        """Each measured width's cost over the width-1 cost."""
        return [s / self(1) for s in self.seconds]

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        return {"widths": list(self.widths), "seconds": list(self.seconds)}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> CostCurve:
        return cls(tuple(int(w) for w in data["widths"]),
                   tuple(float(s) for s in data["seconds"]), measured=True)


class Calibrated:
    """A measured curve corrected by the passes decoding actually times.

    The curve was timed once, maybe on a busier or quieter machine, and after a shorter
    context than now; what the chooser needs is a draft's cost relative to one token's, as it
    is now. So it keeps decayed means of log(observed / curve) for one-token passes and for
    drafted ones, each pass clipped to ±CLIP and shrunk towards no correction, and scales every
    drafted width by the difference: one factor, so widths never tried are neither singled out
    nor left behind."""

    def __init__(self, curve: CostCurve) -> None:
        self.curve = curve
        self._decay = 0.5 ** (1 / CALIBRATION_HALF_LIFE)
        self._sums = [[0.0, 0.0], [0.0, 0.0]]
        """For one-token passes and for drafted ones: decayed weight and weighted log ratio."""
        self._base: list[float] = []
        """curve(w) for w = 1, 2, …, filled as wider widths are asked about."""

    def observe(self, width: int, seconds: float) -> None:
        """A pass of `width` tokens took `seconds` (forward and host sync)."""
        ratio = min(max(math.log(seconds / self.curve(width)), -CLIP), CLIP)
        for sums in self._sums:
            sums[0] *= self._decay
            sums[1] *= self._decay
        sums = self._sums[width > 1]
        sums[0] += 1.0
        sums[1] += ratio

    def factor(self) -> float:
        """How much dearer drafted passes are, relative to one token, than the curve says."""
        one, drafted = ((total / (weight + CALIBRATION_WEIGHT)) for weight, total in self._sums)
        return math.exp(drafted - one)

    def contradicted(self) -> bool:
        """Whether the passes found the curve off by more than REMEASURE_BEYOND."""
        return not 1 / REMEASURE_BEYOND < self.factor() < REMEASURE_BEYOND

    def table(self, widths: int) -> list[float]:
        """Corrected seconds of passes of 1, 2, …, `widths` tokens."""
        base = self._base
        base.extend(self.curve(w) for w in range(len(base) + 1, widths + 1))
        factor = self.factor()
        return [base[0], *(cost * factor for cost in base[1:widths])]


@torch.inference_mode()
def measure(model: PreTrainedModel, widths: Sequence[int] = WIDTHS,
            budget: float = BUDGET_SECONDS, repeats: int = REPEATS,
            reserve: int = 0) -> CostCurve:
    """Time passes of each width after CONTEXT cached tokens, through the engine's own forward
    (`SequenceState`: the same cache and call as decoding), rolling the cache back after each.
    `reserve` sizes a static cache as decoding's (`SequenceState.reserve`), so a compiled
    model times, and compiles, the cache size it will decode with.

    FIRST comes first, then every width in rounds, narrowest first, so interference spreads
    over all of them, until the budget is spent; widths never timed are interpolated or
    extrapolated. Each pass ends with the host sync of an argmax, as the acceptance rule's
    does, so the time is real on any device."""
    state = SequenceState(model)
    state.reserve(reserve)
    vocab = min(model.config.vocab_size, model.get_input_embeddings().weight.shape[0])
    window = getattr(model.config, "max_position_embeddings", None) or CONTEXT + max(widths)
    widths = [w for w in widths if w < window // 2] or [1]
    context = min(CONTEXT, window - max(widths))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (context + max(widths),), generator=generator).tolist()
    state.sync(ids[:context])
    state.accept([])  # the last token is pending again, as before every decoding step
    _time_pass(state, [])  # warm-up
    fastest: dict[int, float] = {}
    first = [w for w in FIRST if w in widths]
    started = time.perf_counter()
    for visit, width in enumerate([*first, *(w for _ in range(repeats) for w in widths)]):
        if visit >= len(first) and time.perf_counter() - started > budget:
            break
        seconds = _time_pass(state, ids[context : context + width - 1])
        fastest[width] = min(seconds, fastest.get(width, seconds))
    timed = sorted(fastest)
    costs, lowest = [], float("inf")
    for width in reversed(timed):  # a narrower pass never costs more; noise only ever adds
        lowest = min(lowest, fastest[width])
        costs.append(lowest)
    return CostCurve(tuple(timed), tuple(reversed(costs)), measured=True)


def _time_pass(state: SequenceState, draft: list[int]) -> float:
    """One pass over [pending token, draft…] and its host sync, then the draft is dropped."""
    begin = time.perf_counter()
    state.forward([state.tokens[-1], *draft]).argmax(dim=-1).tolist()
    seconds = time.perf_counter() - begin
    state.accept([])
    return seconds


Running = tuple[str, str, int, bool]
"""How a model runs now: device, dtype, torch's threads, and whether it decodes compiled."""

_measured: weakref.WeakKeyDictionary[PreTrainedModel, dict[Running, CostCurve]] = (
    weakref.WeakKeyDictionary()
)
"""Curves already known in this process, per model object and how it runs."""


def running(model: PreTrainedModel) -> Running:
    """What of `model`'s setup a pass's cost depends on, besides the model itself."""
    return (str(model.device), str(model.dtype), torch.get_num_threads(),
            decodes_compiled(model))


def curve_for(model: PreTrainedModel) -> CostCurve:
    """The cost curve of `model` as it runs now (its device and dtype, torch's threads,
    compiled or eager): flat for a tiny model, else from this process's memory, else from the
    disk cache, else measured (and stored when that took a while).

    A compile that fails while measuring leaves the model eager: the curve is then kept, in
    memory and on disk, as the eager one it is."""
    if sum(p.numel() for p in model.parameters()) < TINY_PARAMETERS:
        return CostCurve.flat()
    known = _measured.setdefault(model, {})
    now = running(model)
    if now not in known:
        key = cache_key(model)
        curve = _read(_cache_file(key), key)
        if curve is None:
            started = time.perf_counter()
            curve = measure(model)
            now, key = running(model), cache_key(model)
            if time.perf_counter() - started >= STORE_AFTER_SECONDS and _fingerprint(model):
                _write(_cache_file(key), key, curve)
        known[now] = curve
    return known[now]


def forget(model: PreTrainedModel) -> None:
    """Drop `model`'s curve as it runs now, from memory and disk: the next use measures it."""
    _measured.get(model, {}).pop(running(model), None)
    _cache_file(cache_key(model)).unlink(missing_ok=True)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "copyspec" / "costs"


def _cache_file(key: str) -> Path:
    return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def cache_key(model: PreTrainedModel) -> str:
    """What the curve depends on: the model (its files' sizes and times, its config and size),
    the device (with its name), the dtype, torch's threads, whether it decodes compiled, and
    torch's version."""
    device = model.device
    if device.type == "cuda":
        where = f"{device} {torch.cuda.get_device_name(device)}"
    else:
        where = f"{device} {platform.processor() or platform.machine()} {os.cpu_count()} cores"
    parameters = sum(p.numel() for p in model.parameters())
    config = hashlib.sha256(model.config.to_json_string().encode()).hexdigest()[:16]
    return json.dumps({
        "format": FORMAT, "model": model.name_or_path, "files": _fingerprint(model),
        "config": config, "parameters": parameters, "device": where, "dtype": str(model.dtype),
        "threads": torch.get_num_threads(), "compiled": decodes_compiled(model),
        "torch": torch.__version__,
    }, sort_keys=True)


def _fingerprint(model: PreTrainedModel) -> list[tuple[str, int, int]]:
    """(name, size, mtime in ns) of the file or the directory's files the model was loaded
    from; empty when it was not loaded from disk (such a model's curve is never stored)."""
    location = Path(model.name_or_path or "")
    if not model.name_or_path:
        return []
    files = [location] if location.is_file() else sorted(
        p for p in location.glob("*") if p.is_file()) if location.is_dir() else []
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def _read(path: Path, key: str) -> CostCurve | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return CostCurve.from_dict(data["curve"]) if data.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, unreadable or from another version: measure again


def _write(path: Path, key: str, curve: CostCurve) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({"key": key, "curve": curve.to_dict()}), encoding="utf-8")
        partial.replace(path)
    except OSError:
        pass  # a read-only cache costs a second per load, nothing more
