"""`copyspec serve`: start the service, as one process (--replicas 0) or a Ray Serve pool."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from engine.config import METHODS, SpecConfig
from engine.options import (
    UsageError,
    add_compile_argument,
    add_copy_arguments,
    add_cost_aware_argument,
    add_model_arguments,
    non_negative_int,
    port,
    positive_int,
)
from engine.serve.options import DEFAULT_CACHE_MB, ServeOptions


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve OpenAI-compatible streaming chat completions (a Ray pool or one "
        "process)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=port, default=8000)
    parser.add_argument(
        "--replicas", type=non_negative_int, default=1,
        help="Ray Serve replicas behind session-affine routing; 0 serves from this process "
        "without Ray",
    )
    parser.add_argument(
        "--address", help="join this Ray cluster (`ray start --head` prints it) instead of "
        "starting one here",
    )
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    parser.add_argument("--num-cpus", type=positive_int,
                        help="CPUs of the local Ray node (default: all)")
    add_model_arguments(parser)
    add_compile_argument(parser)
    parser.add_argument("--method", choices=[m for m in METHODS if m != "greedy"],
                        default=SpecConfig.method)
    add_copy_arguments(parser)
    add_cost_aware_argument(parser)
    parser.add_argument("--cache-mb", type=positive_int, default=DEFAULT_CACHE_MB,
                        help="KV-cache memory per replica before LRU sessions are dropped")
    parser.set_defaults(run=run_serve)


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    options = ServeOptions(
        model=args.model, draft_model=args.draft_model, device=args.device, dtype=args.dtype,
        threads=args.threads, compile=args.compile, method=args.method, gamma=args.gamma,
        block=args.block, cost_aware=args.cost_aware, cache_mb=args.cache_mb,
        trust_remote_code=args.trust_remote_code,
    )
    options.spec()  # bad γ/K fail here, not inside a replica
    return options


def run_serve(args: argparse.Namespace) -> int:
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
