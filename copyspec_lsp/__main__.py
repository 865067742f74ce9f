"""`copyspec-lsp`: start the language server over stdio (default) or TCP."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from copyspec_lsp import __version__
from copyspec_lsp.adapters.settings import LOG_LEVELS, Settings
from engine.options import (
    Parser,
    add_compile_argument,
    add_copy_arguments,
    add_cost_aware_argument,
    add_max_new_tokens,
    add_model_arguments,
    port,
)


def build_parser() -> Parser:
    """The flags; every value is checked here, before the server (and torch) is imported."""
    parser = Parser(
        prog="copyspec-lsp", description="CopySpec language server: fast LLM code refinement."
    )
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (default)")
    transport.add_argument("--tcp", action="store_true", help="listen on --host:--port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port, default=2087)
    add_model_arguments(parser)
    add_copy_arguments(parser)
    add_cost_aware_argument(parser)
    add_compile_argument(parser)
    add_max_new_tokens(parser)
    parser.add_argument("--log-level", default="WARNING", type=str.upper, choices=LOG_LEVELS)
    parser.add_argument("--log-file", help="write logs here instead of stderr")
    parser.add_argument("--version", action="version", version=f"copyspec-lsp {__version__}")
    return parser


def settings_from(args: argparse.Namespace, parser: Parser) -> Settings:
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
        "costAware": args.cost_aware,
        "compile": args.compile,
        "maxNewTokens": args.max_new_tokens,
        "logLevel": args.log_level,
    }
    settings, problems = Settings().update(raw)
    if problems:
        parser.error("; ".join(problems))
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_from(args, parser)
    logging.basicConfig(
        filename=args.log_file,
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from copyspec_lsp.wire.server import build_server  # after logging: importing torch is slow

    server = build_server(settings)
    code = server.serve((args.host, args.port) if args.tcp else None)
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)  # no interpreter teardown: a thread still in torch cannot abort it


if __name__ == "__main__":
    main()
