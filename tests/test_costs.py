"""The forward-cost curve: measured through the engine's own forward within its budget, kept in
memory per model, and on disk per model files, device, dtype, threads, compiled or eager decoding
and torch version."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine import costs
from engine.compiled import decodes_compiled, use_compile
from engine.costs import CostCurve, curve_for, measure
from engine.loading import LoadedModel

from tiny_models import loaded, save

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return loaded("llama", seed=2)


def test_measure_times_every_width_of_a_tiny_model_quickly(tiny: LoadedModel) -> None:
    """A tiny model measures every width in milliseconds, so the test lane never notices; the
    costs never fall with width, and the cache is left as it was found."""
    started = time.perf_counter()
    curve = measure(tiny.model)
    assert time.perf_counter() - started < 1.5
    assert curve.widths == costs.WIDTHS
    assert list(curve.seconds) == sorted(curve.seconds) and curve(1) > 0
    assert curve(512) > curve(256)


def test_measure_stops_at_its_budget(tiny: LoadedModel) -> None:
    """With no time to spare it still times the first widths, the last of them wide enough
    to extrapolate along."""
    curve = measure(tiny.model, budget=0.0)
    assert curve.widths == costs.FIRST
    assert curve(256) >= curve(64) >= curve(2) >= curve(1)


def test_measure_keeps_within_a_short_window() -> None:
    lm = loaded("llama", seed=2)
    lm.model.config.max_position_embeddings = 40
    curve = measure(lm.model)
    assert curve.widths == (1, 2, 4, 8, 16)


def test_a_tiny_model_is_not_measured(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its forward is all overhead and timing it is noise: the flat curve, so the tests'
    choices do not depend on how busy the machine is."""
    monkeypatch.setattr(costs, "measure", None)
    assert curve_for(tiny.model) == CostCurve.flat()


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Tiny models measured and stored as bigger ones are, in a cache under tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(costs, "TINY_PARAMETERS", 0)
    monkeypatch.setattr(costs, "STORE_AFTER_SECONDS", 0.0)
    return tmp_path / "cache" / "copyspec" / "costs"


def test_curves_are_kept_per_model_and_threads(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch, measured: Path
) -> None:
    """Asked again, the same curve; with other threads, another measurement. A model built in
    memory is never written to disk."""
    monkeypatch.setattr(costs, "STORE_AFTER_SECONDS", 0.0)
    calls: list[int] = []
    real = costs.measure
    monkeypatch.setattr(costs, "measure", lambda model: calls.append(1) or real(model))
    first = curve_for(tiny.model)
    assert curve_for(tiny.model) is first and len(calls) == 1
    try:
        torch.set_num_threads(2)
        curve_for(tiny.model)
    finally:
        torch.set_num_threads(1)
    assert len(calls) == 2
    assert not measured.exists()


def test_a_model_on_disk_reads_its_curve_back(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch, measured: Path, tmp_path: Path
) -> None:
    """Stored under $XDG_CACHE_HOME/copyspec/costs, read back by a fresh load of the same files
    without measuring; changed weights (another size or time) are measured again."""
    directory = save(tiny, tmp_path / "model")
    stored = curve_for(AutoModelForCausalLM.from_pretrained(directory))
    files = list(measured.glob("*.json"))
    assert len(files) == 1
    assert CostCurve.from_dict(json.loads(files[0].read_text())["curve"]) == stored

    def refuse(model: object) -> CostCurve:
        raise AssertionError("measured although the curve was stored")

    monkeypatch.setattr(costs, "measure", refuse)
    assert curve_for(AutoModelForCausalLM.from_pretrained(directory)) == stored
    weights = next(directory.glob("*.safetensors"))
    later = weights.stat().st_mtime_ns + 10**9
    os.utime(weights, ns=(later, later))
    with pytest.raises(AssertionError, match="measured"):
        curve_for(AutoModelForCausalLM.from_pretrained(directory))


def test_a_damaged_cache_file_is_measured_again(
    tiny: LoadedModel, measured: Path, tmp_path: Path
) -> None:
    directory = save(tiny, tmp_path / "model")
    curve_for(AutoModelForCausalLM.from_pretrained(directory))
    for path in measured.glob("*.json"):
        path.write_text("{not json")
    assert curve_for(AutoModelForCausalLM.from_pretrained(directory)).widths == costs.WIDTHS


def test_a_curve_needs_sane_points() -> None:
    with pytest.raises(ValueError, match="one cost per width"):
        CostCurve((1, 2), (1.0,))
    with pytest.raises(ValueError, match="increasing"):
        CostCurve((2, 1), (1.0, 2.0))
    with pytest.raises(ValueError, match="positive"):
        CostCurve((1,), (0.0,))


MEASURED = CostCurve((1, 4, 16, 64), (1.0, 1.5, 2.0, 4.0), measured=True)


def test_calibration_follows_what_passes_cost_now() -> None:
    """Passes timed as the curve says change nothing; drafted passes timed twice as dear
    (one-token ones as measured) make every drafted width close to twice as dear; a machine
    busier for every width alike changes no ratio."""
    calibrated = costs.Calibrated(MEASURED)
    for _ in range(10):
        calibrated.observe(1, 1.0)
        calibrated.observe(16, 2.0)
    assert calibrated.table(64) == pytest.approx([MEASURED(w) for w in range(1, 65)])
    for _ in range(60):
        calibrated.observe(1, 1.0)
        calibrated.observe(16, 4.0)
    table = calibrated.table(64)
    assert table[0] == MEASURED(1)
    assert table[63] / MEASURED(64) == pytest.approx(table[1] / MEASURED(2))
    assert 1.6 < table[63] / MEASURED(64) <= 2.0
    busy = costs.Calibrated(MEASURED)
    for _ in range(60):
        busy.observe(1, 3.0)
        busy.observe(16, 6.0)
    assert busy.table(64) == pytest.approx([MEASURED(w) for w in range(1, 65)], rel=0.01)


def test_calibration_shrugs_off_a_stalled_pass() -> None:
    """One pass that waited on another process (100x) moves the drafted widths' cost by at
    most the clip, shared with the evidence the curve is worth; it takes several to say the
    curve is wrong."""
    calibrated = costs.Calibrated(MEASURED)
    calibrated.observe(16, 100 * MEASURED(16))
    shared = costs.CLIP / (1 + costs.CALIBRATION_WEIGHT)
    assert calibrated.factor() == pytest.approx(math.exp(shared))
    assert not calibrated.contradicted()
    for _ in range(8):
        calibrated.observe(16, 100 * MEASURED(16))
    assert calibrated.contradicted()


def test_a_contradicted_curve_is_forgotten_and_measured_again(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch, measured: Path, tmp_path: Path
) -> None:
    """Memory and disk: the next use measures afresh (a curve timed under a load that has
    gone, or come, is not kept)."""
    model = AutoModelForCausalLM.from_pretrained(save(tiny, tmp_path / "model"))
    first = curve_for(model)
    assert len(list(measured.glob("*.json"))) == 1
    costs.forget(model)
    assert not list(measured.glob("*.json"))
    calls: list[int] = []
    real = costs.measure
    monkeypatch.setattr(costs, "measure", lambda m: calls.append(1) or real(m))
    assert curve_for(model).widths == first.widths and calls == [1]


@pytest.fixture
def uncompiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The static-cache path with the model's own forward for the compiled one: compiling for
    real takes minutes here (tests/test_compiled.py compiles for real in the slow lane)."""
    monkeypatch.setattr(torch, "compile", lambda model, **_: model)


def test_compiled_and_eager_decoding_keep_curves_of_their_own(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch, measured: Path, tmp_path: Path,
    uncompiled: None,
) -> None:
    """A compiled pass costs differently: turning compiling on measures and stores another
    curve, under a key that says so; turning it off again finds the eager one."""
    model = AutoModelForCausalLM.from_pretrained(save(tiny, tmp_path / "model"))
    calls: list[int] = []
    real = costs.measure
    monkeypatch.setattr(costs, "measure", lambda m: calls.append(1) or real(m))
    eager = curve_for(model)
    use_compile(model, "on")
    compiled = curve_for(model)
    assert calls == [1, 1] and compiled is not eager
    stored = [json.loads(json.loads(p.read_text())["key"]) for p in measured.glob("*.json")]
    assert sorted(key["compiled"] for key in stored) == [False, True]
    use_compile(model, "off")
    assert curve_for(model) is eager and calls == [1, 1]


def test_a_compile_that_fails_while_measuring_stores_an_eager_curve(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch, measured: Path, tmp_path: Path
) -> None:
    """The passes were timed eagerly, so the curve is filed as eager, and found again."""
    def broken(model: object, **_: object) -> object:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    model = AutoModelForCausalLM.from_pretrained(save(tiny, tmp_path / "model"))
    use_compile(model, "on")
    assert decodes_compiled(model), "before its first sequence, the model means to compile"
    curve = curve_for(model)
    assert not decodes_compiled(model)
    (stored,) = [json.loads(json.loads(p.read_text())["key"]) for p in measured.glob("*.json")]
    assert stored["compiled"] is False
    monkeypatch.setattr(costs, "measure", None)
    assert curve_for(model) is curve
