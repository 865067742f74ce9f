"""`copyspec`: the engine from the command line, so everything can be scripted and measured.

Subcommands: `generate` (here), `bench` (engine.bench), and `train-default-model` /
`eval-default-model` (engine.training).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from engine.config import DEVICES, DTYPES, METHODS, SamplingConfig, SpecConfig
from engine.index import POLICIES
from engine.loading import (
    LoadedModel,
    ModelLoadError,
    default_draft_model_path,
    load_model,
    use_cpu_threads,
)
from engine.session import PromptTooLongError, Session
from engine.stats import TurnStats

DEFAULT_SYSTEM = "You are a coding assistant. Reply with the complete edited code only."
"""The system prompt the built-in model was trained with; a fine default for instruct models."""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="local model directory or cached HF id (default: built-in)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: one per core; 1 on a busy CPU)"
    )


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SpecConfig()
    parser.add_argument("--gamma", type=int, default=defaults.gamma,
                        help="γ: tokens in a lookup key")
    parser.add_argument("--block", type=int, default=defaults.block,
                        help="K: tokens proposed per copy (the shortest draft with resync)")
    parser.add_argument("--max-block", type=int, default=defaults.max_block,
                        help="ceiling of adaptive K")
    parser.add_argument(
        "--adaptive", action=argparse.BooleanOptionalAction, default=defaults.adaptive,
        help="grow K on full acceptance, shrink on rejection (--fixed keeps K)",
    )
    parser.add_argument("--fixed", dest="adaptive", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=POLICIES, default=defaults.policy)
    parser.add_argument(
        "--draft-block", type=int, default=5, help="D: tokens drafted per step (draft methods)"
    )


def add_generate_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="answer a prompt or a chat, streaming text")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one user message")
    source.add_argument("--prompt-file", type=Path, help="a file holding one user message")
    source.add_argument("--chat-file", type=Path, help="a JSON list of user messages")
    parser.add_argument("--system", default=DEFAULT_SYSTEM, help="system prompt ('' for none)")
    parser.add_argument("--method", choices=METHODS, default="copy")
    add_model_arguments(parser)
    parser.add_argument(
        "--draft-model",
        help="draft model sharing the target's tokenizer, for --method draft and copy+draft "
        "(default: the built-in draft when the target is the built-in model)",
    )
    add_spec_arguments(parser)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.set_defaults(run=run_generate)


def read_messages(args: argparse.Namespace) -> list[str]:
    """The user messages to answer in turn, from --prompt, --prompt-file or --chat-file."""
    if args.prompt is not None:
        return [args.prompt]
    path: Path = args.prompt_file or args.chat_file
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from error
    if args.prompt_file:
        return [text]
    try:
        messages = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
        raise UsageError(f"{path} must hold a JSON list of strings (user messages)")
    if not messages:
        raise UsageError(f"{path} holds no messages")
    return messages


def spec_from_args(args: argparse.Namespace, method: str) -> SpecConfig:
    try:
        return SpecConfig(
            method=method, gamma=args.gamma, block=args.block, adaptive=args.adaptive,
            max_block=max(args.max_block, args.block), policy=args.policy,
            draft_block=args.draft_block,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error


def load_from_args(args: argparse.Namespace) -> LoadedModel:
    try:
        use_cpu_threads(args.threads)
        return load_model(args.model, args.device, args.dtype, args.trust_remote_code)
    except (ModelLoadError, ValueError) as error:
        raise UsageError(str(error)) from error


def load_draft_from_args(args: argparse.Namespace, spec: SpecConfig) -> LoadedModel | None:
    """The draft model a drafting method needs: --draft-model, or the built-in draft that
    shares the built-in target's tokenizer; any other target needs an explicit one."""
    if not spec.drafts:
        return None
    path = args.draft_model
    if path is None:
        if args.model is not None:
            raise UsageError(f"--method {spec.method} with --model needs --draft-model")
        path = default_draft_model_path()
    try:
        return load_model(path, args.device, args.dtype, args.trust_remote_code)
    except ModelLoadError as error:
        raise UsageError(f"draft model: {error}") from error


def run_generate(args: argparse.Namespace) -> int:
    messages = read_messages(args)
    spec = spec_from_args(args, args.method)
    try:
        sampling = SamplingConfig(args.temperature, args.top_p, args.top_k, args.seed)
    except ValueError as error:
        raise UsageError(str(error)) from error
    if args.max_new_tokens < 1:
        raise UsageError("--max-new-tokens must be at least 1")
    lm = load_from_args(args)
    draft = load_draft_from_args(args, spec)
    try:
        session = Session(lm, spec, system=args.system, draft=draft)
    except ValueError as error:
        raise UsageError(str(error)) from error
    stream = None if args.json else _print_delta
    turns = []
    try:
        for message in messages:
            result = session.send(
                message, args.max_new_tokens, sampling, stop_event=threading.Event(),
                on_text=stream,
            )
            turns.append(result)
            if stream:
                print(flush=True)
                _print_stats(result.stats)
    except (PromptTooLongError, ValueError) as error:
        raise UsageError(str(error)) from error
    if args.json:
        print(json.dumps({
            "text": turns[-1].text,
            "token_ids": turns[-1].token_ids,
            "turns": [
                {"text": t.text, "token_ids": t.token_ids, "stats": t.stats.to_dict()}
                for t in turns
            ],
            "stats": turns[-1].stats.to_dict(),
        }))
    return 0


def _print_delta(delta: str, _stats: TurnStats) -> None:
    sys.stdout.write(delta)
    sys.stdout.flush()


def _print_stats(stats: TurnStats) -> None:
    print(
        f"[{stats.new_tokens} tokens, {stats.forward_passes} forward passes, "
        f"{stats.copied_share:.0%} copied, τ={stats.tau:.2f}, "
        f"{stats.draft_forward_passes} draft passes, τ₂={stats.draft_tau:.2f}, "
        f"{stats.tokens_per_second:.1f} tok/s, prefill {stats.prefill_tokens} tokens]",
        file=sys.stderr,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="copyspec", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_generate_parser(subparsers)
    from engine.bench.cli import add_parser as add_bench_parser  # here: it imports this module

    add_bench_parser(subparsers)
    add_training_parsers(subparsers)
    return parser


def add_training_parsers(subparsers: argparse._SubParsersAction) -> None:
    """`train-default-model` and `eval-default-model` hand their arguments to the training
    package's own parsers (imported only when used: training needs no speed at start-up)."""
    for name, summary in (
        ("train-default-model", "train the built-in model and draft from the stdlib (CPU ok)"),
        ("eval-default-model", "measure the built-in model on held-out edit conversations"),
    ):
        subparsers.add_parser(name, help=summary, add_help=False).set_defaults(run=None)


def run_training(command: str, arguments: list[str]) -> int:
    if command == "train-default-model":
        from engine.training.train import cli_main
    else:
        from engine.training.evaluate import eval_cli_main as cli_main
    return cli_main(arguments)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.run is None:  # the training commands parse their own arguments
        return run_training(args.command, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args)
    except UsageError as error:
        print(f"copyspec: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
