"""`copyspec bench`: arguments, the progress bar and the exit status; the work is elsewhere."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import torch
import transformers
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.bench.methods import BASE_METHODS, MethodUnavailable, build_runners, draft_supported
from engine.bench.replay_cli import add_parsers as add_replay_parsers
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
from engine.bench.tasks import Task, TaskFileError, load_tasks
from engine.cli import UsageError, add_model_arguments, load_from_args
from engine.index import POLICIES
from engine.loading import LoadedModel, ModelLoadError, default_draft_model_path, load_model

DEFAULT_METHODS = "greedy,pld,copy,copy-fixed"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure methods against greedy and HF prompt lookup, identity first",
    )
    add_model_arguments(parser)
    parser.add_argument("--tasks", type=Path, nargs="+", action="extend",
                        help="JSONL task files; each file is one workload named by its stem")
    parser.add_argument("--methods", type=names, default=names(DEFAULT_METHODS),
                        help=f"from {','.join(BASE_METHODS)} (default {DEFAULT_METHODS})")
    parser.add_argument("--gamma", type=integers, default=[], help="γ ablation, e.g. 1,2,3,5,8")
    parser.add_argument("--block", type=integers, default=[], help="fixed-K ablation, e.g. 5,10")
    parser.add_argument("--policy", type=names, default=[], help=f"from {','.join(POLICIES)}")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes after identity")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--draft-model", help="draft model for draft methods (default: built-in)")
    parser.set_defaults(run=run_bench)
    add_replay_parsers(parser.add_subparsers(
        dest="bench_command", metavar="{replay,costs}",
        help="model-free oracle replay of real edits, and forward costs by width"))


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def integers(text: str) -> list[int]:
    try:
        return [int(part) for part in names(text)]
    except ValueError as error:
        message = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(message) from error


def run_bench(args: argparse.Namespace) -> int:
    if not args.tasks:
        raise UsageError("bench needs --tasks FILE… (or a subcommand: replay, costs)")
    console = Console(stderr=True)
    tasks = read_tasks(args.tasks)
    if args.repeats < 1 or args.max_new_tokens < 1:
        raise UsageError("--repeats and --max-new-tokens must be at least 1")
    methods = ["greedy", *(m for m in args.methods if m != "greedy")]
    unknown = [m for m in methods if m not in BASE_METHODS]
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(BASE_METHODS)}")
    lm = load_from_args(args)
    try:
        runners = build_runners(lm, methods, args.gamma, args.block, args.policy,
                                load_draft(args, methods))
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


def load_draft(args: argparse.Namespace, methods: list[str]) -> LoadedModel | None:
    """The draft model, only when a draft method is asked for and the engine supports it."""
    if not any(m in ("draft", "copy+draft") for m in methods) or not draft_supported():
        return None
    if args.draft_model is None and args.model is not None:
        raise MethodUnavailable("draft methods with --model need --draft-model (the built-in "
                                "draft shares only the built-in model's tokenizer)")
    try:
        return load_model(args.draft_model or default_draft_model_path(), args.device, args.dtype)
    except ModelLoadError as error:
        raise MethodUnavailable(f"draft methods need a draft model: {error}") from error


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description:<40}"), BarColumn(),
        MofNCompleteColumn(), TextColumn("turns"), TimeElapsedColumn(), console=console,
    )


def device_name(lm: LoadedModel) -> str:
    if lm.device.type == "cuda":
        return torch.cuda.get_device_name(lm.device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def meta(args: argparse.Namespace, lm: LoadedModel, device: str) -> dict[str, object]:
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
