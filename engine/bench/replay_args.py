"""`copyspec bench replay` and `copyspec bench costs`: their flags, checked before anything
heavy is imported; the work is in `replay_cli`."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.bench.shapes import NAMES
from engine.config import DTYPES, SpecConfig
from engine.index import POLICIES
from engine.options import device, positive_int
from engine.paths import demo_model_path

PEERS = ("hf", "vllm-ngram", "llamacpp-ngram-simple", "copyspec-ref", "suffix-24", "suffix-64")
"""The peers `--peers` can name; the SuffixDecoding ones need the [replay] extra."""
CURVES = {
    "cpu": "1:1,2:1.08,4:1.59,8:2.08,16:2.25,32:2.81,64:3.97",
    "gpu": "1:1,256:1,512:2",
}
"""The cost curves passes are weighed by, relative to one token. cpu: SmolLM2-135M on a 2-core
x86_64 CPU at one thread, as the engine measured it (`engine.costs.measure`; wider passes
extrapolated along its average slope, as the engine does); gpu: flat to 256 tokens, then
linear (a GPU below its roofline knee)."""


def run_replay(args: argparse.Namespace) -> int:
    from engine.bench.replay_cli import run_replay as run

    args.curve = args.curve or [f"{name}={curve}" for name, curve in CURVES.items()]
    return run(args)


def run_costs(args: argparse.Namespace) -> int:
    from engine.bench.replay_cli import run_costs as run

    return run(args)


def add_parsers(bench_subparsers: argparse._SubParsersAction) -> None:
    add_replay_parser(bench_subparsers)
    add_costs_parser(bench_subparsers)


def add_replay_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = SpecConfig()
    parser = subparsers.add_parser(
        "replay", help="oracle replay of real edits: passes per token of ours, peers and bounds")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workload", type=Path, nargs="+", help="replay JSONL files")
    source.add_argument("--repo", type=Path, help="a local git repository to extract edits from")
    parser.add_argument("--tokenizer", type=Path, default=demo_model_path(),
                        help="a local HF tokenizer directory (default: the demo model's)")
    parser.add_argument("--limit", type=positive_int,
                        help="replay only the first N records per workload")
    parser.add_argument("--max-commits", type=positive_int, default=400,
                        help="--repo: commits to read")
    parser.add_argument("--max-pairs", type=positive_int, default=100,
                        help="--repo: records per extracted workload")
    parser.add_argument("--peers", help=f"comma-separated, from {','.join(PEERS)} ('' for none; "
                        "default: all that are installed)")
    parser.add_argument("--gamma", type=positive_int, default=defaults.gamma)
    parser.add_argument("--block", type=positive_int, default=defaults.block)
    parser.add_argument("--max-block", type=positive_int, default=defaults.max_block)
    parser.add_argument("--policy", choices=POLICIES, default=defaults.policy)
    parser.add_argument("--no-ablations", action="store_true",
                        help="skip the previous default, the `longest` policy and ours without "
                        "carried edits")
    parser.add_argument("--curve", action="append", metavar="NAME=CURVE",
                        help="a cost curve to weigh passes by (and to run the engine's "
                        "draft-length chooser on): W:COST,… relative to one token, shape:NAME "
                        "(measured now on this CPU, a random-init shape or builtin: the demo "
                        "model), or model:PATH (the engine's curve for those weights as they run "
                        "here, stored or measured); default: "
                        + " ".join(f"{name}={curve}" for name, curve in CURVES.items()))
    parser.add_argument("--timed", action="store_true",
                        help="also time the passes through a real-size model (--model-shape)")
    parser.add_argument("--model-shape", choices=NAMES,
                        help="shape for --timed: a random-init real shape, or the demo model")
    parser.add_argument("--device", type=device, default="auto")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads")
    parser.add_argument("--max-target-tokens", type=positive_int,
                        help="--timed: cut targets to this many tokens (keeps CPU runs short)")
    parser.add_argument("--out", type=Path, default=Path("replay-results"))
    parser.set_defaults(run=run_replay)


def add_costs_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "costs", help="cost of one forward by width and context, for a real-size model shape")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model-shape", choices=NAMES,
                       help="a random-init real shape, or the demo model")
    model.add_argument("--model", help="a model directory or GGUF file: its real weights")
    parser.add_argument("--widths", default="1,2,4,8,16,32,64,128,256,512")
    parser.add_argument("--contexts", default="1024,8192")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--device", type=device, default="auto")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("cost-results"))
    parser.set_defaults(run=run_costs)
