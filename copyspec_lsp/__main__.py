"""`copyspec-lsp`: start the language server over stdio (default) or TCP."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from copyspec_lsp import __version__
from copyspec_lsp.settings import LOG_LEVELS, Settings
from engine.config import DEVICES, DTYPES, device_name


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="copyspec-lsp", description="CopySpec language server: fast LLM code refinement."
    )
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (default)")
    transport.add_argument("--tcp", action="store_true", help="listen on --host:--port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2087)
    parser.add_argument("--model", help="local model directory or cached HF id (default: built-in)")
    parser.add_argument(
        "--device", type=device_name, default="auto", help=f"one of {', '.join(DEVICES)}"
    )
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument(
        "--trust-remote-code", action="store_true",
        help="run the Python code a model ships (off: only trust code you have read)",
    )
    parser.add_argument(
        "--draft-model", help="draft model directory (same tokenizer): drafts when nothing copies"
    )
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: one per core; 1 on a busy CPU)"
    )
    parser.add_argument("--gamma", type=int, default=3, help="γ: tokens in a copy lookup key")
    parser.add_argument("--block", type=int, default=10, help="K: tokens proposed per copy")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--log-level", default="WARNING", type=str.upper, choices=LOG_LEVELS)
    parser.add_argument("--log-file", help="write logs here instead of stderr")
    parser.add_argument("--version", action="version", version=f"copyspec-lsp {__version__}")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """CLI flags through the same validation as the client's settings; bad ones exit 2."""
    raw = {
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "trustRemoteCode": args.trust_remote_code,
        "draftModel": args.draft_model,
        "threads": args.threads,
        "gamma": args.gamma,
        "block": args.block,
        "maxNewTokens": args.max_new_tokens,
        "logLevel": args.log_level,
    }
    settings, problems = Settings().update(raw)
    if problems:
        sys.exit(f"copyspec-lsp: {'; '.join(problems)}")
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from(args)
    logging.basicConfig(
        filename=args.log_file,
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from copyspec_lsp.server import build_server  # after logging: importing torch is slow

    server = build_server(settings)
    if args.tcp:
        server.start_tcp(args.host, args.port)
    else:
        server.start_io()


if __name__ == "__main__":
    main()
