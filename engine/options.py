"""Command-line flags shared by `copyspec generate`, `copyspec bench`, `copyspec serve` and
`copyspec-lsp`.

Each flag is defined once here, with its default taken from `engine.config`, and checked by
argparse itself, so bad input gets one line and exit status 2 before torch is imported (which
takes seconds). Nothing here imports torch or transformers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from engine.config import (
    COMPILE,
    COMPILE_CHOICES,
    DEVICES,
    DTYPES,
    MAX_BLOCK,
    MAX_NEW_TOKENS,
    SMALL_MODEL_PARAMETERS,
    SpecConfig,
    device_name,
)
from engine.index import POLICIES
from engine.paths import ModelLoadError, locate_model

if TYPE_CHECKING:  # torch-heavy: imported only once the arguments are known to be good
    from engine.loading import LoadedModel


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, `prog: error: message`, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def probability(text: str) -> float:
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text}")
    return value


def port(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1 to 65535, got {value}")
    return value


def device(text: str) -> str:
    try:
        return device_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def model_location(text: str) -> str:
    """A `--model`/`--draft-model` value that can be a model: an existing model directory, a
    GGUF file with a complete header, or an HF id present in the local cache. Returned as
    given."""
    try:
        locate_model(text)
    except ModelLoadError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --draft-model, --device, --dtype and --threads."""
    parser.add_argument(
        "--model", type=model_location,
        help="local model directory, GGUF file (dequantized to --dtype) or cached HF id "
        "(default: SmolLM2-135M-Instruct with our refinement adapter, "
        "engine/models/smollm2-refine)",
    )
    parser.add_argument(
        "--draft-model", type=model_location,
        help="draft model (directory, GGUF file or cached HF id) sharing the target's "
        "tokenizer, for the draft methods (default: the demo draft when the target is the "
        "demo model, engine/models/demo)",
    )
    parser.add_argument("--device", type=device, default="auto",
                        help=f"one of {', '.join(DEVICES)} (default auto)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument(
        "--trust-remote-code", action="store_true",
        help="run the Python code a model ships (off: only trust code you have read)",
    )
    parser.add_argument(
        "--threads", type=positive_int,
        help="torch CPU threads (default: 1 for models under "
        f"{SMALL_MODEL_PARAMETERS // 1_000_000}M parameters, else one per core)",
    )


def add_compile_argument(parser: argparse.ArgumentParser) -> None:
    """--compile, for the tools whose model loading honours it (`load_from_args`, and
    `copyspec serve`'s replicas)."""
    parser.add_argument(
        "--compile", choices=COMPILE_CHOICES, default=COMPILE,
        help="decode with a static KV cache and torch.compile (CUDA graphs on CUDA): auto "
        f"where it pays, see docs/performance.md (default {COMPILE})",
    )


def add_cost_aware_argument(parser: argparse.ArgumentParser) -> None:
    """--cost-aware / --no-cost-aware: `SpecConfig.cost_aware`, for generate, bench and serve."""
    parser.add_argument(
        "--cost-aware", action=argparse.BooleanOptionalAction, default=SpecConfig.cost_aware,
        help="cut each draft to the length worth its pass on this device, none when no length "
        "pays (--no-cost-aware verifies every draft at the proposer's own length; default "
        f"{'on' if SpecConfig.cost_aware else 'off'})",
    )


def add_copy_arguments(parser: argparse.ArgumentParser) -> None:
    """--gamma and --block, the two copy settings every tool exposes."""
    parser.add_argument("--gamma", type=positive_int, default=SpecConfig.gamma,
                        help=f"γ: tokens in a copy lookup key (default {SpecConfig.gamma})")
    parser.add_argument("--block", type=positive_int, default=SpecConfig.block,
                        help=f"K: tokens proposed per copy (default {SpecConfig.block})")


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """Every SpecConfig field as a flag."""
    add_copy_arguments(parser)
    add_cost_aware_argument(parser)
    parser.add_argument("--max-block", type=positive_int,
                        help=f"ceiling of adaptive K (default: the larger of {MAX_BLOCK} and K)")
    parser.add_argument(
        "--adaptive", action=argparse.BooleanOptionalAction, default=SpecConfig.adaptive,
        help="grow K on full acceptance, shrink on rejection (--no-adaptive keeps K fixed)",
    )
    parser.add_argument("--policy", choices=POLICIES, default=SpecConfig.policy,
                        help=f"which earlier match to copy from (default {SpecConfig.policy})")
    parser.add_argument(
        "--draft-block", type=positive_int, default=SpecConfig.draft_block,
        help=f"D: tokens drafted per step, draft methods (default {SpecConfig.draft_block})",
    )


def add_max_new_tokens(parser: argparse.ArgumentParser, default: int = MAX_NEW_TOKENS) -> None:
    parser.add_argument("--max-new-tokens", type=positive_int, default=default,
                        help=f"token budget of each answer (default {default})")


def read_text(path: Path) -> str:
    """A UTF-8 text file's contents; a missing, unreadable or non-UTF-8 file is a UsageError."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(
            f"{path} is not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start})"
        ) from None


def load_from_args(args: argparse.Namespace) -> LoadedModel:
    """The target model on the asked device, with the thread count set for it."""
    from engine.compiled import use_compile
    from engine.loading import ModelLoadError, load_model, use_cpu_threads

    try:
        lm = load_model(args.model, args.device, args.dtype, args.trust_remote_code)
        use_cpu_threads(args.threads, lm)
        use_compile(lm.model, args.compile)
        return lm
    except (ModelLoadError, ValueError) as error:
        raise UsageError(str(error)) from error


def load_draft_from_args(args: argparse.Namespace, method: str) -> LoadedModel | None:
    """The draft model a drafting method needs: --draft-model, or the demo draft when the target
    is the demo model (the only tokenizer it shares); any other target needs an explicit one."""
    if not SpecConfig(method).drafts:
        return None
    from engine.compiled import use_compile
    from engine.loading import ModelLoadError, load_model
    from engine.paths import demo_draft_model_path, demo_model_path, is_demo_model

    path = args.draft_model
    if path is None:
        if not is_demo_model(args.model):
            raise UsageError(f"--method {method} needs --draft-model, a small model with the "
                             f"target's tokenizer (the demo draft serves only --model "
                             f"{demo_model_path()})")
        path = demo_draft_model_path()
    try:
        draft = load_model(path, args.device, args.dtype, args.trust_remote_code)
    except ModelLoadError as error:
        raise UsageError(f"draft model: {error}") from error
    use_compile(draft.model, args.compile)
    return draft
