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
from typing import TYPE_CHECKING

from engine.bench.cli import add_parser as add_bench_parser
from engine.config import METHODS, SamplingConfig, SpecConfig
from engine.options import (
    Parser,
    UsageError,
    add_compile_argument,
    add_max_new_tokens,
    add_model_arguments,
    add_spec_arguments,
    load_draft_from_args,
    load_from_args,
    non_negative_float,
    non_negative_int,
    probability,
    read_text,
)
from engine.prompt_format import SYSTEM_PROMPT
from engine.serve.cli import add_parser as add_serve_parser
from engine.shaping import Shaper

if TYPE_CHECKING:  # torch-heavy: imported only once the arguments are known to be good
    from engine.session import TurnResult
    from engine.stats import TurnStats


GENERATE_EPILOG = r"""A prompt is code in a fenced block, then the instruction (what editors send):
  copyspec generate --prompt $'```python\ndef f(x):\n    return x\n```\nRename x to y.'
"""


def add_generate_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="answer a prompt or a chat, streaming text",
        epilog=GENERATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one user message: code in a fenced block, then the "
                        "instruction")
    source.add_argument("--prompt-file", type=Path, help="a UTF-8 file holding one user message")
    source.add_argument("--chat-file", type=Path, help="a JSON list of user messages")
    parser.add_argument("--system", default=SYSTEM_PROMPT,
                        help="system prompt ('' for none; default: the one the built-in models "
                        "were trained with)")
    parser.add_argument("--method", choices=METHODS, default=SpecConfig.method)
    add_model_arguments(parser)
    add_compile_argument(parser)
    add_spec_arguments(parser)
    add_max_new_tokens(parser)
    parser.add_argument("--temperature", type=non_negative_float, default=0.0,
                        help="0 (default) decodes greedily")
    parser.add_argument("--top-p", type=probability, default=1.0)
    parser.add_argument("--top-k", type=non_negative_int, default=0, help="0: no top-k filter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument(
        "--code-only", action="store_true",
        help="print only the answer's code: no prose, <think> blocks or fences",
    )
    parser.set_defaults(run=run_generate)


def read_messages(args: argparse.Namespace) -> list[str]:
    """The user messages to answer in turn, from --prompt, --prompt-file or --chat-file."""
    if args.prompt is not None:
        return [args.prompt]
    path: Path = args.prompt_file or args.chat_file
    text = read_text(path)
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
            max_block=args.max_block, policy=args.policy, draft_block=args.draft_block,
            cost_aware=args.cost_aware,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error


def run_generate(args: argparse.Namespace) -> int:
    messages = read_messages(args)
    spec = spec_from_args(args, args.method)
    try:
        sampling = SamplingConfig(args.temperature, args.top_p, args.top_k, args.seed)
    except ValueError as error:
        raise UsageError(str(error)) from error
    from engine.loading import REMOTE_CODE_WARNING  # torch: only for good arguments
    from engine.session import PromptTooLongError, Session

    if args.trust_remote_code:
        print(f"copyspec: warning: {REMOTE_CODE_WARNING}", file=sys.stderr)
    lm = load_from_args(args)
    draft = load_draft_from_args(args, spec.method)
    try:
        session = Session(lm, spec, system=args.system, draft=draft)
    except ValueError as error:
        raise UsageError(str(error)) from error
    if session.notice:
        print(f"copyspec: {session.notice}", file=sys.stderr)
    turns: list[TurnResult] = []
    texts: list[str] = []
    try:
        for number, message in enumerate(messages, 1):
            printer = None if args.json else Printer(Shaper() if args.code_only else None)
            if printer and len(messages) > 1:
                print(turn_header(number, len(messages), message), flush=True)
            result = session.send(
                message, args.max_new_tokens, sampling, stop_event=threading.Event(),
                on_text=printer, prediction=session.expected(message),
            )
            turns.append(result)
            texts.append(Shaper()(result.text, final=True) if args.code_only else result.text)
            if printer:
                printer.finish(texts[-1])
                print(stats_line(result.stats, spec, args.max_new_tokens), file=sys.stderr,
                      flush=True)
    except (PromptTooLongError, ValueError) as error:
        raise UsageError(str(error)) from error
    if args.json:
        print(json.dumps({
            "text": texts[-1],
            "token_ids": turns[-1].token_ids,
            "turns": [
                {"text": text, "token_ids": t.token_ids, "stats": t.stats.to_dict()}
                for text, t in zip(texts, turns, strict=True)
            ],
            "stats": turns[-1].stats.to_dict(),
        }))
    return 0


class Printer:
    """Streams a turn to stdout; with a shaper, only the code it has settled so far."""

    def __init__(self, shaper: Shaper | None) -> None:
        self.shaper = shaper
        self.raw = ""
        self.shown = ""

    def __call__(self, delta: str, _stats: TurnStats) -> None:
        self.raw += delta
        self._show(self.shaper(self.raw) if self.shaper else self.raw)

    def finish(self, text: str) -> None:
        self._show(text)
        print(flush=True)

    def _show(self, text: str) -> None:
        """Shaped text only ever extends what was shown (engine.shaping guarantees it)."""
        sys.stdout.write(text[len(self.shown) :])
        sys.stdout.flush()
        self.shown = text


def turn_header(number: int, total: int, message: str) -> str:
    """`── turn 2/3: Now rename …` above each answer of a chat: the instruction's last line."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    instruction = lines[-1] if lines else ""
    if len(instruction) > 60:
        instruction = instruction[:59] + "…"
    return f"── turn {number}/{total}: {instruction}"


STOP_REASONS = {
    "eos": "finished",
    "length": "cut off at --max-new-tokens {limit}",
    "cancelled": "cancelled",
}


def stats_line(stats: TurnStats, spec: SpecConfig, limit: int) -> str:
    """One line per turn: why it stopped, then only the counters that the method has."""
    reason = STOP_REASONS.get(stats.stop_reason, stats.stop_reason or "stopped")
    parts = [reason.format(limit=limit), f"{stats.new_tokens} tokens",
             f"{stats.forward_passes} forward pass{'' if stats.forward_passes == 1 else 'es'}"]
    if spec.copies:
        parts.append(f"{stats.copied_share:.0%} copied (τ={stats.tau:.2f})")
    if spec.drafts:
        drafted = stats.drafted_tokens / stats.new_tokens if stats.new_tokens else 0.0
        parts.append(f"{drafted:.0%} drafted (τ₂={stats.draft_tau:.2f}, "
                     f"{stats.draft_forward_passes} draft passes)")
    parts.append(f"{stats.tokens_per_second:.1f} tok/s")
    prefill = f"prefill {stats.prefill_tokens} tokens"
    if stats.reused_tokens:
        prefill += f" ({stats.reused_tokens} cached)"
    parts.append(prefill)
    return f"[{', '.join(parts)}]"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="copyspec", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_generate_parser(subparsers)
    add_bench_parser(subparsers)
    add_serve_parser(subparsers)
    add_training_parsers(subparsers)
    return parser


def add_training_parsers(subparsers: argparse._SubParsersAction) -> None:
    """`train-default-model` and `eval-default-model` hand their arguments to the training
    package's own parsers (imported only when used: training needs no speed at start-up)."""
    for name, summary in (
        ("train-default-model", "train the demo model and draft from the stdlib (CPU ok)"),
        ("eval-default-model", "measure the demo model on held-out edit conversations"),
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
    from engine import cli  # the importable module: subcommands raise ITS UsageError

    sys.exit(cli.main())
