"""`copyspec serve`: start the service, as one process (--replicas 0) or a Ray Serve pool."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from engine.config import DEVICES, DTYPES, METHODS
from engine.serve.cache import DEFAULT_CACHE_MB
from engine.serve.options import ServeOptions


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve OpenAI-compatible streaming chat completions (a Ray pool or one "
        "process)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--replicas", type=int, default=1,
        help="Ray Serve replicas behind session-affine routing; 0 serves from this process "
        "without Ray",
    )
    parser.add_argument(
        "--address", help="join this Ray cluster (`ray start --head` prints it) instead of "
        "starting one here",
    )
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray node (default: all)")
    parser.add_argument("--model", help="model directory or cached HF id (default: built-in)")
    parser.add_argument("--draft-model", help="draft model for --method copy+draft")
    parser.add_argument("--method", choices=[m for m in METHODS if m != "greedy"],
                        default="copy")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads per replica")
    parser.add_argument("--gamma", type=int, default=3)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--cache-mb", type=int, default=DEFAULT_CACHE_MB,
                        help="KV-cache memory per replica before LRU sessions are dropped")
    parser.set_defaults(run=run_serve)


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    options = ServeOptions(
        model=args.model, draft_model=args.draft_model, device=args.device, dtype=args.dtype,
        threads=args.threads, method=args.method, gamma=args.gamma, block=args.block,
        cache_mb=args.cache_mb,
    )
    options.spec()  # bad γ/K fail here, not inside a replica
    return options


def run_serve(args: argparse.Namespace) -> int:
    from engine.cli import UsageError  # here: engine.cli imports this module

    if args.replicas < 0:
        raise UsageError("--replicas must be 0 (no Ray) or more")
    try:
        options = options_from_args(args)
    except ValueError as error:
        raise UsageError(str(error)) from error
    if args.replicas == 0:
        import uvicorn

        from engine.serve.app import build_app

        try:
            engine = options.build()
        except (OSError, RuntimeError, ValueError) as error:
            raise UsageError(str(error)) from error
        print(f"copyspec serve: http://{args.host}:{args.port}/v1", flush=True)
        uvicorn.run(build_app(engine), host=args.host, port=args.port, log_level="warning")
        return 0
    from engine.serve import pool

    pool.start(options, args.replicas, args.host, args.port, args.address,
               args.cpus_per_replica, args.num_cpus)
    print(f"copyspec serve: {args.replicas} replicas at http://{args.host}:{args.port}/v1 "
          "(Ctrl-C stops)", flush=True)
    # SIGTERM (a service manager, a test) shuts the pool down like Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        threading.Event().wait()
    finally:
        pool.stop(args.address)
    return 0
