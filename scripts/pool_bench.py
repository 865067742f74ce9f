"""Load a chat-completions pool with concurrent multi-turn sessions; print what it measured.

Each session replays one 3-turn chat of benchmarks/refinement.jsonl, sending the whole
conversation every turn (answers included) with its own `x-session-id`, as copyspec-lsp does.
Measured per run: sessions served per minute, p50/p95 time to first token, and per turn the
prompt tokens the server did not take from its cache (usage: prompt_tokens - cached_tokens),
i.e. what it re-prefilled.

  python scripts/pool_bench.py --url http://127.0.0.1:8000          # any running server
  python scripts/pool_bench.py --replicas 1,2,4 --rounds 2            # starts copyspec serve pools
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def load_chats(path: Path) -> list[dict[str, Any]]:
    chats = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [c for c in chats if len(c["turns"]) >= 3]


def turn(http: httpx.Client, url: str, model: str, session: str, messages: list[dict],
         max_tokens: int) -> dict[str, Any]:
    body = {"model": model, "messages": messages, "stream": True, "max_tokens": max_tokens,
            "temperature": 0, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = None
    pieces: list[str] = []
    usage: dict[str, Any] = {}
    with http.stream("POST", f"{url}/v1/chat/completions", json=body,
                     headers={"x-session-id": session}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.read()[:300]!r}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(str(event["error"]))
            for choice in event.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    first = first or time.perf_counter()
                    pieces.append(text)
            usage = event.get("usage") or usage
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "ttft": (first or time.perf_counter()) - started,
        "text": "".join(pieces),
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "uncached_prompt_tokens": usage.get("prompt_tokens", 0) - cached,
        "completion_tokens": usage.get("completion_tokens", 0),
    }


def session(url: str, model: str, chat: dict[str, Any], max_tokens: int, out: list) -> None:
    sid = uuid.uuid4().hex
    messages = [{"role": "system", "content": chat["system"]}]
    with httpx.Client(timeout=600) as http:
        for number, user in enumerate(chat["turns"][:3], start=1):
            messages.append({"role": "user", "content": user})
            result = turn(http, url, model, sid, messages, max_tokens)
            messages.append({"role": "assistant", "content": result["text"]})
            out.append({"turn": number, **{k: v for k, v in result.items() if k != "text"}})


def run(url: str, sessions: int, max_tokens: int, chats: list[dict[str, Any]]) -> dict:
    model = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]
    turns: list[dict[str, Any]] = []
    threads = [threading.Thread(target=session,
                                args=(url, model, chats[i % len(chats)], max_tokens, turns))
               for i in range(sessions)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ttfts = sorted(t["ttft"] for t in turns)
    by_turn = {n: [t["uncached_prompt_tokens"] for t in turns if t["turn"] == n] for n in (1, 2, 3)}
    return {
        "sessions": sessions,
        "turns": len(turns),
        "wall_s": round(wall, 1),
        "sessions_per_min": round(sessions / wall * 60, 2),
        "ttft_p50_s": round(statistics.median(ttfts), 3),
        "ttft_p95_s": round(ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))], 3),
        "completion_tokens": sum(t["completion_tokens"] for t in turns),
        "reprefilled_tokens_per_turn": {
            n: round(statistics.mean(v), 1) for n, v in by_turn.items() if v
        },
    }


def start_pool(replicas: int, port: int, threads: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "engine.cli", "serve", "--replicas", str(replicas),
               "--port", str(port), "--threads", str(threads), "--device", "cpu",
               "--model", str(ROOT / "engine" / "models" / "demo"),  # as docs/pool.md measured
               "--cpus-per-replica", str(2 / max(replicas, 2)), "--num-cpus", "2"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the pool exited: {log.read_text()[-1500:]}")
        if "copyspec serve:" in log.read_text(errors="replace"):  # printed once all are up
            return process
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("the pool did not start in 10 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server; otherwise --replicas starts pools")
    parser.add_argument("--replicas", default="1,2,4", help="pool sizes to start, in turn")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the sizes this often")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--port", type=int, default=18400)
    parser.add_argument("--chats", type=Path, default=ROOT / "benchmarks" / "refinement.jsonl")
    args = parser.parse_args()
    chats = load_chats(args.chats)
    if args.url:
        print(json.dumps({"url": args.url, **run(args.url, args.sessions, args.max_tokens,
                                                  chats)}), flush=True)
        return
    sizes = [int(n) for n in args.replicas.split(",")]
    runs = 0
    for round_number in range(args.rounds):
        order = sizes if round_number % 2 == 0 else sizes[::-1]  # alternate: the CPU is shared
        for replicas in order:
            log = Path(f"/tmp/pool_bench_{replicas}_{round_number}.log")
            port = args.port + runs  # a pool just stopped may still hold its port
            runs += 1
            process = start_pool(replicas, port, args.threads, log)
            try:
                result = run(f"http://127.0.0.1:{port}", args.sessions, args.max_tokens, chats)
            finally:
                process.terminate()
                process.wait(60)
            print(json.dumps({"replicas": replicas, "round": round_number, **result}),
                  flush=True)


if __name__ == "__main__":
    main()
