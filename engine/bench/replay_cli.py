"""`copyspec bench replay` and `copyspec bench costs`: arguments, progress and output files.

replay: the oracle replay of our proposer against the peers and both bounds, on JSONL workloads
or on edits extracted from a local git repository; `--timed` adds real forwards of a
real-size model shape. costs: one forward's cost by width and context, and the draft cap that
follows from it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from transformers import PreTrainedModel

from engine.bench.peers import Ours, peer_factories
from engine.bench.replay import Pair, PairResult, bound_results, replay, summarize
from engine.bench.replay_report import summary_table, timed_table, write_all
from engine.bench.shapes import BUILTIN, UnknownShape, build, vocab_size
from engine.bench.timing import TimedPair, forward_costs, suggested_cap, timed_replay
from engine.bench.workloads import WorkloadError, extract, read_jsonl, tokenize
from engine.config import SpecConfig
from engine.costs import CONTEXT, CostCurve, curve_for, measure
from engine.indentation import LineStarts, line_starts_of
from engine.loading import (
    ModelLoadError,
    load_model,
    resolve_device,
    resolve_dtype,
    use_cpu_threads,
)
from engine.options import UsageError
from engine.paths import demo_model_path

OURS = "ours (default)"
"""The engine's copy proposer at its own draft lengths (what `cost_aware=False` verifies)."""
CHOSEN = "ours + chooser, {curve} curve"
"""The engine's default as it decodes on a device: the chooser cuts each draft by that curve."""
WITHOUT_CARRY = " without carried edits"
WITHOUT_SHIFTS = " without indentation shifts"
PREVIOUS = "previous default (recent, K 10→64)"
LONGEST = "ours, policy longest (K 10→64)"
PROPOSER_CONTEXTS = (8192, 32768)
"""Context lengths at which the proposer's own µs per pass is reported."""


def integers(text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise UsageError(f"{flag} expects comma-separated integers, got {text!r}") from error
    if not values or min(values) < 1:
        raise UsageError(f"{flag} needs positive integers, got {text!r}")
    return values


def load_pairs(args: argparse.Namespace, tokenizer: Any) -> tuple[list[Pair], dict[str, Any]]:
    """The pairs to replay, and where they came from (for the JSON's meta)."""
    try:
        if args.repo is not None:
            workloads = extract(args.repo, args.max_commits, args.max_pairs)
            source = {"repo": str(args.repo.resolve()),
                      "records": {name: len(r) for name, r in workloads.items()}}
            pairs = [pair for name, records in workloads.items() if records
                     for pair in tokenize(records, name, tokenizer, args.limit)]
        else:
            source = {"workloads": [str(path) for path in args.workload]}
            pairs = [pair for path in args.workload
                     for pair in tokenize(read_jsonl(path), path.stem, tokenizer, args.limit)]
    except WorkloadError as error:
        raise UsageError(str(error)) from error
    if not pairs:
        raise UsageError("no pairs to replay (the repository has no modified Python?)")
    return pairs, source


def methods(args: argparse.Namespace, curves: dict[str, CostCurve],
            starts: LineStarts | None) -> list[Any]:
    """Ours first (the reference of every ratio), then ours with the chooser on each curve,
    the ablations, and the peers. Ours reads line starts as `starts` (the tokenizer's)."""
    try:
        spec = SpecConfig(gamma=args.gamma, block=args.block, policy=args.policy,
                          max_block=max(args.max_block, args.block))
    except ValueError as error:
        raise UsageError(str(error)) from error
    variants = [(OURS, None), *((CHOSEN.format(curve=name), curve)
                                for name, curve in curves.items())]
    chosen: list[Any] = [Ours(name, spec, cost, line_starts=starts) for name, cost in variants]
    if not args.no_ablations:
        chosen += [Ours(name + WITHOUT_CARRY, spec, cost, carry=False) for name, cost in variants]
        chosen += [Ours(name + WITHOUT_SHIFTS, spec, cost) for name, cost in variants]
        chosen += [Ours(PREVIOUS, SpecConfig(policy="recent", block=10, max_block=64)),
                   Ours(LONGEST, SpecConfig(policy="longest", block=10, max_block=64))]
    factories = peer_factories()
    names = list(factories) if args.peers is None else args.peers.split(",")
    for name in (n.strip() for n in names if n.strip()):
        if name not in factories:
            hint = " (pip install 'copyspec-lsp[replay]')" if name.startswith("suffix") else ""
            raise UsageError(f"unknown or unavailable peer {name!r}{hint}; "
                                   f"available: {', '.join(factories)}")
        chosen.append(factories[name]())
    return chosen


def run_replay(args: argparse.Namespace) -> int:
    if args.timed and not args.model_shape:
        raise UsageError("--timed needs --model-shape")
    curves = cost_curves(args)
    tokenizer = load_tokenizer(args.tokenizer)
    pairs, source = load_pairs(args, tokenizer)
    if args.timed:
        check_vocabulary(args, pairs)
    chosen = methods(args, curves, line_starts_of(tokenizer))
    results: list[PairResult] = bound_results(pairs)
    for method in chosen:
        started = time.perf_counter()
        results += [replay(method, pair) for pair in pairs]
        print(f"{method.name}: {len(pairs)} pairs in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    rows = summarize(results, OURS, curves)
    extra: dict[str, Any] = {"proposer_us_per_pass": proposer_costs(chosen[0], pairs)}
    if args.timed:
        extra["timed"] = run_timed(args, pairs, chosen[0])
    meta = {"command": " ".join(["copyspec", *sys.argv[1:]]), "tokenizer": str(args.tokenizer),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "ours": chosen[0].spec.__dict__, "pairs": len(pairs), **source,
            "curves": {name: curve.to_dict() for name, curve in curves.items()},
            "protocol": "draft before every pass; emitted = accepted + 1, capped at the target's "
                        "end; no token budget; the end token counts; cost per token = Σ "
                        "cost(1 + draft) / cost(1) over the passes, per target token"}
    paths = write_all(args.out, rows, meta, extra)
    print(summary_table(rows))
    for name in curves:
        print(f"\ncost per token, {name} curve (plain decoding = 1):\n"
              + summary_table(rows, name))
    print(f"proposer µs per pass: {extra['proposer_us_per_pass']}")
    if args.timed:
        print(timed_table(extra["timed"]))
    print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def cost_curves(args: argparse.Namespace) -> dict[str, CostCurve]:
    """The curves `--curve` names (`replay_args.CURVES` unless given), by name."""
    curves = {}
    for text in args.curve:
        name, _, spec = text.partition("=")
        if not name or not spec:
            raise UsageError(f"--curve expects NAME=CURVE, got {text!r}")
        curves[name] = cost_curve(spec)
    return curves


def cost_curve(spec: str) -> CostCurve:
    """W:COST,… as given; shape:NAME measured now on this CPU; model:PATH as the engine keeps
    it for those weights (measured at first use, then read from its cache)."""
    kind, _, name = spec.partition(":")
    try:
        if kind == "shape":
            if name == BUILTIN:
                return measure(load_model(demo_model_path(), "cpu").model)
            return measure(build(name, torch.device("cpu"), torch.float32))
        if kind == "model":
            return curve_for(load_model(name, "cpu").model)
        points = [point.split(":") for point in spec.split(",")]
        return CostCurve(tuple(int(w) for w, _ in points), tuple(float(c) for _, c in points))
    except (ModelLoadError, ValueError) as error:  # UnknownShape is a ValueError
        raise UsageError(f"--curve {spec!r}: {error}") from error


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot load a tokenizer from {path}: {error}") from error


def proposer_costs(ours: Ours, pairs: Sequence[Pair], count: int = 6) -> dict[str, float]:
    """Our proposer's µs per pass with 8k and 32k tokens of context before each pair: the
    other pairs' contexts are put in front, so the index is as full as a long session's."""
    filler = [token for pair in pairs for token in pair.context]
    costs = {}
    for length in PROPOSER_CONTEXTS:
        if not filler:
            break
        prefix = (filler * (length // len(filler) + 1))[:length]
        padded = [Pair(p.pair_id, p.workload, p.turn, prefix + p.context[-length:], p.target)
                  for p in pairs[:count]]
        measured = [replay(ours, pair) for pair in padded]
        passes = sum(r.passes for r in measured)
        costs[str(length)] = round(1e6 * sum(r.seconds for r in measured) / passes, 1)
    return costs


def shape_model(args: argparse.Namespace) -> tuple[PreTrainedModel, torch.device, torch.dtype]:
    """The model `--model-shape` names, on `--device` in `--dtype`. Torch's CPU threads are set
    once it exists, since their default depends on its size: the demo model gets
    `copyspec generate`'s (one thread on a CPU), a real-size shape torch's own."""
    try:
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.dtype, device)
        if args.model_shape == BUILTIN:
            lm = load_model(demo_model_path(), str(device), str(dtype).removeprefix("torch."))
            use_cpu_threads(args.threads, lm)
            return lm.model, device, dtype
        model = build(args.model_shape, device, dtype)
    except (ModelLoadError, ValueError) as error:  # UnknownShape is a ValueError
        raise UsageError(str(error)) from error
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return model, device, dtype


def real_model(args: argparse.Namespace) -> tuple[PreTrainedModel, torch.device, torch.dtype]:
    """The model `--model` names, with its real weights, threads as `copyspec generate` sets."""
    try:
        lm = load_model(args.model, args.device, args.dtype)
        use_cpu_threads(args.threads, lm)
    except (ModelLoadError, ValueError) as error:
        raise UsageError(str(error)) from error
    return lm.model, lm.device, lm.dtype


def check_vocabulary(args: argparse.Namespace, pairs: Sequence[Pair]) -> None:
    """Refuse, before any replay, token ids that the timed model has no embedding for."""
    try:
        size = vocab_size(args.model_shape)
    except UnknownShape as error:
        raise UsageError(str(error)) from error
    top = max(max(p.context + p.target) for p in pairs)
    if top >= size:
        raise UsageError(f"--tokenizer {args.tokenizer} gives token id {top}, but the "
                         f"{args.model_shape} shape's vocabulary has {size} ids; use a tokenizer "
                         "of that model (for builtin, the default)")


def run_timed(args: argparse.Namespace, pairs: Sequence[Pair], ours: Ours) -> dict[str, Any]:
    model, device, dtype = shape_model(args)
    chosen = list(pairs)
    if args.max_target_tokens:
        chosen = [Pair(p.pair_id, p.workload, p.turn, p.context, p.target[:args.max_target_tokens])
                  for p in chosen]
    timed = timed_replay(model, chosen, ours,
                         lambda pair_id: print(f"timed {pair_id}", file=sys.stderr))
    by_workload: dict[str, list[TimedPair]] = {}
    for t in timed:
        by_workload.setdefault(t.workload, []).append(t)
    return {"model_shape": args.model_shape, "device": device_name(device),
            "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
            "max_target_tokens": args.max_target_tokens,
            "summary": {"all": timed_totals(timed, ours.name),
                        "by_workload": {name: timed_totals(group, ours.name)
                                        for name, group in sorted(by_workload.items())}},
            "pairs": [t.__dict__ for t in timed],
            "how": "oracle acceptance; each pass = one forward of [pending, draft…] on the KV "
                   "cache + argmax host sync + crop; plain = one such forward per token; "
                   "same process, order alternating per pair; prefill not timed"}


def timed_totals(timed: Sequence[TimedPair], ours: str) -> dict[str, Any]:
    """Sums over some timed pairs, the speedup, and tokens per second of plain decoding and of
    ours (target tokens over the seconds their passes took)."""
    tokens = sum(t.tokens for t in timed)
    plain = sum(t.plain_seconds for t in timed)
    speculative = sum(t.speculative_seconds for t in timed)
    return {"pairs": len(timed), "tokens": tokens, "passes": sum(t.passes for t in timed),
            "plain_s": round(plain, 4), "speculative_s": round(speculative, 4),
            "speedup": round(plain / speculative, 3),
            "tok_s": {"plain": round(tokens / plain, 1), ours: round(tokens / speculative, 1)}}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def run_costs(args: argparse.Namespace) -> int:
    widths, contexts = integers(args.widths, "--widths"), integers(args.contexts, "--contexts")
    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    model, device, dtype = real_model(args) if args.model else shape_model(args)
    costs = forward_costs(model, widths, contexts, args.repeats,
                          lambda what: print(what, file=sys.stderr))
    caps = {str(c): suggested_cap(costs, c) for c in contexts}
    engine = measure(model)  # what the engine's draft-length chooser measures at first use
    meta = {"command": " ".join(["copyspec", *sys.argv[1:]]),
            "model_shape": args.model_shape or args.model, "engine_curve": engine.to_dict(),
            "device": device_name(device), "dtype": str(dtype).removeprefix("torch."),
            "threads": torch.get_num_threads(), "repeats": args.repeats,
            "timing": "CUDA events + host sync per step" if device.type == "cuda"
            else "perf_counter per step", "suggested_max_block": caps}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "costs.json").write_text(
        json.dumps({"meta": meta, "costs": [c.__dict__ for c in costs]}, indent=1),
        encoding="utf-8")
    lines = [f"# Forward cost: {meta['model_shape']} on {meta['device']} ({meta['dtype']})", "",
             f"Median of {args.repeats} timed forwards after one warm-up; {meta['timing']}.", "",
             "| context | " + " | ".join(f"w={w}" for w in widths) + " |",
             "|---:|" + "---:|" * len(widths)]
    for context in contexts:
        row = [c for c in costs if c.context == context]
        lines.append(f"| {context} | " + " | ".join(f"{c.ms:.2f} ms ({c.relative:.2f}x)"
                                                    for c in row) + " |")
    lines += ["", "Suggested draft cap (widest draft whose pass costs ≤ 2 plain steps): "
              + ", ".join(f"{cap} at context {c}" for c, cap in caps.items()), "",
              f"The engine's own curve (engine.costs, context {CONTEXT}, what the draft-length "
              "chooser weighs drafts by): " + ", ".join(
                  f"w={w} {s * 1000:.2f} ms ({s / engine(1):.2f}x)"
                  for w, s in zip(engine.widths, engine.seconds, strict=True)), ""]
    (args.out / "costs.md").write_text("\n".join(lines), encoding="utf-8")
    plot_costs(args.out / "costs.png", costs, contexts, meta)
    print("\n".join(lines))
    return 0


def plot_costs(path: Path, costs: Sequence[Any], contexts: Sequence[int],
               meta: dict[str, Any]) -> None:
    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    for context in contexts:
        row = [c for c in costs if c.context == context]
        ax.plot([c.width for c in row], [c.ms for c in row], marker="o", label=f"context {context}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("pass width (tokens)")
    ax.set_ylabel("ms per forward")
    ax.set_title(f"{meta['model_shape']} on {meta['device']} ({meta['dtype']})", fontsize=9)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
