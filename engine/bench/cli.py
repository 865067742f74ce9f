"""`copyspec bench`: arguments, the progress bar and the exit status; the work is elsewhere."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engine.bench import DEFAULT_METHODS, METHODS, check_methods
from engine.bench.replay_args import add_parsers as add_replay_parsers
from engine.bench.shapes import NAMES
from engine.bench.tasks import Task, TaskFileError, load_tasks
from engine.config import DTYPES
from engine.index import POLICIES
from engine.options import (
    UsageError,
    add_compile_argument,
    add_cost_aware_argument,
    add_max_new_tokens,
    add_model_arguments,
    device,
    load_draft_from_args,
    load_from_args,
    positive_int,
)
from engine.paths import demo_model_path

if TYPE_CHECKING:  # torch and the [bench] extra: imported only once the arguments are good
    from rich.console import Console
    from rich.progress import Progress

    from engine.loading import LoadedModel

BENCH_EXTRA = ("rich", "matplotlib")
"""What `pip install 'copyspec-lsp[bench]'` adds: tables and plots, needed by nothing else."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure methods against greedy and HF prompt lookup, identity first",
    )
    add_model_arguments(parser)
    add_compile_argument(parser)
    parser.add_argument("--tasks", type=Path, nargs="+", action="extend",
                        help="JSONL task files; each file is one workload named by its stem")
    parser.add_argument("--methods", type=method_names, default=list(DEFAULT_METHODS),
                        help=f"from {','.join(METHODS)} (default {','.join(DEFAULT_METHODS)})")
    parser.add_argument("--gamma", type=integers, default=[], help="γ ablation, e.g. 1,2,3,5,8")
    parser.add_argument("--block", type=integers, default=[], help="fixed-K ablation, e.g. 5,10")
    parser.add_argument("--policy", type=names, default=[], help=f"from {','.join(POLICIES)}")
    add_cost_aware_argument(parser)
    parser.add_argument("--repeats", type=positive_int, default=2,
                        help="timed passes after identity")
    add_max_new_tokens(parser, default=160)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.set_defaults(run=run_bench)
    commands = parser.add_subparsers(
        dest="bench_command", metavar="{replay,costs,decode}",
        help="model-free oracle replay of real edits, forward costs by width, and the replay "
        "through the engine's decode loop")
    add_replay_parsers(commands)
    add_decode_parser(commands)


def add_decode_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decode", help="plain, HF prompt lookup and ours through the engine's decode loop on "
        "replay workloads (a real-size shape, eager or compiled): tok/s per request, identity "
        "first")
    parser.add_argument("--workload", type=Path, nargs="+", required=True,
                        help="replay JSONL files")
    parser.add_argument("--tokenizer", type=Path, default=demo_model_path(),
                        help="a local HF tokenizer directory (default: the demo model's)")
    parser.add_argument("--limit", type=positive_int,
                        help="only the first N records per workload")
    parser.add_argument("--model-shape", choices=NAMES, required=True,
                        help="a random-init real shape, or the demo model")
    add_compile_argument(parser)
    parser.add_argument(
        "--eager-first", action="store_true",
        help="with --compile on or auto: decode everything eagerly first, in the same process")
    parser.add_argument(
        "--trace-only", action="store_true",
        help="compile with dynamo's eager backend (each bucket traced whole onto the static "
        "cache, no code generated): proves the compiled path in seconds on a CPU, not its "
        "speed")
    parser.add_argument("--device", type=device, default="auto")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads")
    parser.add_argument("--max-target-tokens", type=positive_int,
                        help="cut targets to this many tokens (keeps CPU runs short)")
    parser.add_argument(
        "--plain-tokens", type=positive_int,
        help="plain decoding writes only the first N tokens of each target (its rate barely "
        "changes along one; default: all)")
    parser.add_argument("--identity-tokens", type=positive_int, default=32,
                        help="tokens decoded for real after each workload's first request, "
                        "every method against plain (default 32)")
    parser.add_argument("--out", type=Path, default=Path("decode-results"))
    parser.set_defaults(run=run_decode, repo=None)


def run_decode(args: argparse.Namespace) -> int:
    from engine.bench.decode_cli import run_decode as run

    return run(args)


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def method_names(text: str) -> list[str]:
    methods = names(text)
    try:
        check_methods(methods)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return methods


def integers(text: str) -> list[int]:
    try:
        return [int(part) for part in names(text)]
    except ValueError as error:
        message = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(message) from error


def require_bench_extra() -> None:
    """Refuse in one line when the [bench] extra is missing, before loading anything."""
    import importlib.util

    missing = [name for name in BENCH_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"copyspec bench needs {' and '.join(missing)}: "
                         "pip install 'copyspec-lsp[bench]'")


def run_bench(args: argparse.Namespace) -> int:
    if not args.tasks:
        raise UsageError("bench needs --tasks FILE… (or a subcommand: replay, costs)")
    require_bench_extra()
    tasks = read_tasks(args.tasks)
    from rich.console import Console
    from rich.markup import escape

    from engine.bench.methods import build_runners
    from engine.bench.report import (
        print_tables,
        print_targets,
        summarize,
        targets,
        write_json,
        write_markdown,
        write_plots,
    )
    from engine.bench.run import IdentityError, count_turns, identity_pass, timed_passes

    console = Console(stderr=True)
    methods = ["greedy", *(m for m in args.methods if m != "greedy")]
    draft_method = next((m for m in methods if m in ("draft", "copy+draft")), "greedy")
    lm = load_from_args(args)
    try:
        draft = load_draft_from_args(args, draft_method)
        runners = build_runners(lm, methods, args.gamma, args.block, args.policy, draft,
                                args.cost_aware)
    except ValueError as error:  # MethodUnavailable, or a γ/K/policy SpecConfig refuses
        raise UsageError(str(error)) from error
    with progress_bar(console) as progress:
        bar = progress.add_task("identity", total=count_turns(tasks, runners, args.repeats))

        def on_turn(what: str) -> None:
            progress.update(bar, advance=1, description=escape(what))

        try:
            reference = identity_pass(lm, tasks, runners, args.max_new_tokens, on_turn)
            records = timed_passes(tasks, runners, reference, args.repeats, args.max_new_tokens,
                                   on_turn)
        except IdentityError as error:
            progress.stop()
            console.print(f"[bold red]{error}")
            return 1
    configs = {runner.name: runner.config for runner in runners}
    summaries = summarize(records)
    found = targets(summaries)
    out = Console(width=None if sys.stdout.isatty() else 132)
    print_tables(out, summaries, list(configs))
    print_targets(out, found)
    args.out.mkdir(parents=True, exist_ok=True)
    device = device_name(lm)
    info = meta(args, lm, device)
    write_json(args.out / "results.json", info, configs, records, summaries, found)
    write_markdown(args.out / "results.md", summaries, list(configs), found, info)
    plots = write_plots(args.out, summaries, records, configs, device)
    console.print(f"wrote results.json, results.md and {len(plots)} plots in {args.out}")
    return 0


def read_tasks(paths: list[Path]) -> list[Task]:
    tasks: list[Task] = []
    try:
        for path in paths:
            tasks.extend(load_tasks(path))
    except TaskFileError as error:
        raise UsageError(str(error)) from error
    ids = [task.id for task in tasks]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise UsageError(f"task ids must be unique across files: {', '.join(duplicates)}")
    return tasks


def progress_bar(console: Console) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description:<40}"), BarColumn(),
        MofNCompleteColumn(), TextColumn("turns"), TimeElapsedColumn(), console=console,
    )


def device_name(lm: LoadedModel) -> str:
    import torch

    if lm.device.type == "cuda":
        return torch.cuda.get_device_name(lm.device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def meta(args: argparse.Namespace, lm: LoadedModel, device: str) -> dict[str, object]:
    import torch
    import transformers

    return {
        "command": " ".join(["copyspec", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": lm.path, "device": device, "dtype": str(lm.dtype).removeprefix("torch."),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "tasks": [str(path) for path in args.tasks], "repeats": args.repeats,
        "max_new_tokens": args.max_new_tokens,
        "speed": "tok/s end to end per turn (prefill included); speed-ups are ratios of sums",
    }
