"""`copyspec bench decode`: plain decoding, HF prompt lookup and ours through the engine's own
decode loop on replay workloads, eager and compiled, in one process: tok/s per request, after a
check by real decoding that each method writes plain decoding's tokens.

A real-size model shape has random weights, so the replay's oracle decides what is written
(`timing.Forced`) while every pass runs for real (`timing.DecodeBench`). The figures are what a
served request would cost on this device if the model wrote the recorded edit.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from engine.bench.replay import Pair
from engine.bench.replay_cli import (
    check_vocabulary,
    device_name,
    load_pairs,
    load_tokenizer,
    shape_model,
)
from engine.bench.timing import DECODE_METHODS, OURS, PLAIN, PROMPT_LOOKUP, DecodeBench, Decoded
from engine.compiled import decodes_compiled, use_compile
from engine.indentation import line_starts_of

EXACT_DTYPES = (torch.float32,)
"""Where a method writing other tokens than plain decoding fails the run. In reduced precision a
wider pass may round a near-tie the other way (the GPU check's divergence stage measures how
often), so there a difference is reported, not failed."""


def run_decode(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer)
    pairs, source = load_pairs(args, tokenizer)
    check_vocabulary(args, pairs)
    if args.max_target_tokens:
        pairs = [Pair(p.pair_id, p.workload, p.turn, p.context, p.target[: args.max_target_tokens])
                 for p in pairs]
    model, device, dtype = shape_model(args)
    if args.trace_only:  # dynamo traces each bucket whole; inductor generates no code
        torch.compile = functools.partial(torch.compile, backend="eager")
    settings = ["off", args.compile] if args.eager_first and args.compile != "off" else [
        args.compile]
    report: dict[str, Any] = {"meta": {
        "command": " ".join(["copyspec", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model_shape": args.model_shape, "device": device_name(device),
        "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "pairs": len(pairs), **source,
        "max_target_tokens": args.max_target_tokens, "plain_tokens": args.plain_tokens,
        "identity_tokens": args.identity_tokens, "trace_only": args.trace_only,
        "how": "the engine's decode loop; the replay's oracle writes each target while every "
               "pass runs for real (forward, argmax host sync, crop); one state per method "
               "for all requests, so chains reuse their cache; methods rotate per request; "
               "prefill apart; identity: real decoding after each workload's first request",
    }, "paths": {}}
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("engine.compiled").setLevel(logging.INFO)  # compile seconds per cache
    failures = []
    for setting in settings:
        use_compile(model, setting)
        if decodes_compiled(model):
            print("compiled path: measuring the cost curve and compiling every width for the "
                  "longest request's cache size", file=sys.stderr, flush=True)
        began = time.perf_counter()
        bench = DecodeBench(model, pairs, args.identity_tokens,
                            line_starts=line_starts_of(tokenizer))
        setup = time.perf_counter() - began
        checks = bench.identity(args.identity_tokens)
        timed = bench.timed(args.plain_tokens, lambda pair_id: print(
            f"decoded {pair_id}", file=sys.stderr, flush=True))
        path = "compiled" if bench.compiled() else "eager"
        if setting == "on" and path == "eager":
            failures.append("--compile on decoded eagerly (the warning above says why)")
        different = [f"{method} on {check.pair_id} from token {check.first_difference[method]}"
                     for check in checks for method, same in check.identical.items() if not same]
        if different and dtype in EXACT_DTYPES:
            failures.append("not plain decoding's tokens: " + "; ".join(different))
        report["paths"][path] = {
            "setup_s": round(setup, 2),
            "curve": bench.curve.to_dict(),
            "identity": [check.__dict__ for check in checks],
            "summary": summarize(timed),
            "requests": [{**row.__dict__, "tok_s": round(row.tok_s, 1)} for row in timed],
        }
        write(args, report)
        print(table(path, report["paths"][path]), flush=True)
    for failure in failures:
        print(f"copyspec bench decode: {failure}", file=sys.stderr)
    return 1 if failures else 0


def summarize(timed: Sequence[Decoded]) -> dict[str, dict[str, Any]]:
    """Per workload and over all: each method's tokens, passes and tok/s (its tokens over its
    seconds), and ours against plain and against HF prompt lookup."""
    groups: dict[str, list[Decoded]] = {"all": list(timed)}
    for row in timed:
        groups.setdefault(row.workload, []).append(row)
    summary = {}
    for name, rows in groups.items():
        cell: dict[str, Any] = {"requests": len({r.pair_id for r in rows})}
        for method in DECODE_METHODS:
            mine = [r for r in rows if r.method == method]
            tokens, seconds = sum(r.tokens for r in mine), sum(r.seconds for r in mine)
            cell[method] = {"tokens": tokens, "passes": sum(r.passes for r in mine),
                            "seconds": round(seconds, 4),
                            "tok_s": round(tokens / seconds, 1) if seconds else 0.0}
        for other in (PLAIN, PROMPT_LOOKUP):
            rate = cell[other]["tok_s"]
            cell[f"ours / {other}"] = round(cell[OURS]["tok_s"] / rate, 2) if rate else 0.0
        summary[name] = cell
    return summary


def table(path: str, result: dict[str, Any]) -> str:
    """The path's figures in Markdown: per workload, per request, identity, setup time."""
    lines = [f"## {path.capitalize()}", "",
             f"Setup (cost curve, caches{', compiling' if path == 'compiled' else ''}): "
             f"{result['setup_s']} s.", "",
             "| workload | requests | plain tok/s | HF prompt lookup tok/s | ours tok/s | "
             "ours / plain | ours / HF prompt lookup | ours passes/token |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, cell in result["summary"].items():
        ours = cell[OURS]
        lines.append(
            f"| {name} | {cell['requests']} | {cell[PLAIN]['tok_s']:.1f} | "
            f"{cell[PROMPT_LOOKUP]['tok_s']:.1f} | {ours['tok_s']:.1f} | "
            f"{cell['ours / plain']:.2f}x | {cell['ours / HF prompt lookup']:.2f}x | "
            f"{ours['passes'] / ours['tokens'] if ours['tokens'] else 0:.3f} |")
    lines += ["", "| request | tokens | plain tok/s | HF prompt lookup tok/s | ours tok/s |",
              "|---|---:|---:|---:|---:|"]
    by_pair: dict[str, dict[str, Any]] = {}
    for row in result["requests"]:
        by_pair.setdefault(row["pair_id"], {})[row["method"]] = row
    for pair_id, rows in by_pair.items():
        lines.append(f"| {pair_id} | {rows[OURS]['tokens']} | " + " | ".join(
            f"{rows[method]['tok_s']:.1f}" for method in DECODE_METHODS) + " |")
    identity = result["identity"]
    lines += ["", "Identity (real decoding of "
              f"{identity[0]['tokens'] if identity else 0} tokens after each workload's first "
              "request, against plain): " + ", ".join(
                  f"{method} {sum(c['identical'][method] for c in identity)}/{len(identity)}"
                  for method in DECODE_METHODS[1:]), ""]
    return "\n".join(lines)


def write(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """decode.json and decode.md, rewritten after each path: a run cut short keeps what it did."""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decode.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    meta = report["meta"]
    lines = [f"# Decoding through the engine: {meta['model_shape']} on {meta['device']} "
             f"({meta['dtype']}, {meta['threads']} threads)", "", meta["how"] + ".", ""]
    lines += [table(path, result) for path, result in report["paths"].items()]
    (args.out / "decode.md").write_text("\n".join(lines), encoding="utf-8")
