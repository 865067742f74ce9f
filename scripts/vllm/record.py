"""Record SSE transcripts from a running OpenAI-compatible server (vLLM) for the contract tests,
and measure what closing a stream costs it.

  python scripts/vllm/record.py --url http://127.0.0.1:8001 --out tests/transcripts

Writes vllm_turn1.sse / vllm_turn2.sse (turns 1-2 of a refine chat, raw bytes as sent),
vllm_too_long.json (the 400 for a prompt over the window) and prints, as JSON, the tokens the
server generated after a stream was closed (from its Prometheus counter
vllm:generation_tokens_total, when it has one).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def raw_turn(http: httpx.Client, url: str, messages: list[dict], max_tokens: int) -> bytes:
    body = {"model": "default", "messages": messages, "stream": True, "max_tokens": max_tokens,
            "temperature": 0, "stream_options": {"include_usage": True}}
    with http.stream("POST", f"{url}/v1/chat/completions", json=body,
                     headers={"x-session-id": "recorded"}) as response:
        response.raise_for_status()
        return response.read()


def text_of(sse: bytes) -> str:
    text = ""
    for line in sse.decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or ():
                text += (choice.get("delta") or {}).get("content") or ""
    return text


def generated_total(http: httpx.Client, url: str) -> float | None:
    metrics = http.get(f"{url}/metrics").text
    found = re.findall(r"^vllm:generation_tokens_total\{[^}]*\} ([0-9.e+]+)$", metrics, re.M)
    return sum(float(v) for v in found) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "transcripts")
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chat = json.loads((ROOT / "benchmarks" / "refinement.jsonl").read_text().splitlines()[0])
    messages = [{"role": "system", "content": chat["system"]}]
    with httpx.Client(timeout=600) as http:
        for number, user in enumerate(chat["turns"][:2], start=1):
            messages.append({"role": "user", "content": user})
            sse = raw_turn(http, args.url, messages, args.max_tokens)
            (args.out / f"vllm_turn{number}.sse").write_bytes(sse)
            messages.append({"role": "assistant", "content": text_of(sse)})
        long = [{"role": "user", "content": "word " * 5000}]
        refused = http.post(f"{args.url}/v1/chat/completions",
                            json={"model": "default", "messages": long, "max_tokens": 8})
        (args.out / "vllm_too_long.json").write_bytes(refused.content)
        before = generated_total(http, args.url)
        received = 0
        body = {"model": "default", "messages": messages[:2], "stream": True,
                "max_tokens": 400, "temperature": 0}
        with http.stream("POST", f"{args.url}/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if '"content":' in line and '"content":""' not in line:
                    received += 1
                    if received == 3:
                        break
        time.sleep(5)  # let the server finish whatever it still does, then read the counter
        after = generated_total(http, args.url)
    report = {"too_long_status": refused.status_code, "chunks_received_before_close": received}
    if before is not None and after is not None:
        report["tokens_generated_for_closed_stream"] = after - before
    print(json.dumps(report))


if __name__ == "__main__":
    main()
