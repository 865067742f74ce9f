"""Helpers for the pool tests: start `copyspec serve`, wait until it answers, stream a turn."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from engine.paths import demo_model_path

SYSTEM = "You are a coding assistant. Reply with the complete edited code only."
PY_CODE = "def add(a, b):\n    total = a + b\n    return total\n"


def serve_command(port: int, *extra: str) -> list[str]:
    """`copyspec serve` on the demo model (fast on one core) unless `extra` names a --model."""
    model = [] if "--model" in extra else ["--model", str(demo_model_path())]
    return [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--threads", "1",
            "--device", "cpu", *model, *extra]


def spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


READY = "copyspec serve:"
"""What `copyspec serve` prints once every replica is up (a pool's routes answer earlier, while
replicas still join and the hash ring still changes)."""


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait for the ready line and a /health answer; fail with the server's log if it dies or
    is too slow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the service exited: {log.read_text()[-2000:]}")
        try:
            ready = READY in log.read_text(errors="replace")
            if ready and httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the service did not answer in {timeout:g} s: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def conversation(*turns: str) -> list[dict[str, str]]:
    """System prompt, then user/assistant alternating, ending with a user message."""
    messages = [{"role": "system", "content": SYSTEM}]
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return messages


def chat(
    url: str, session: str, messages: list[dict[str, str]], max_tokens: int = 48,
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """One streamed turn: its text, our final-chunk figures, usage and the replica header."""
    body = {"model": "default", "messages": messages, "stream": True, "max_tokens": max_tokens,
            "stream_options": {"include_usage": True}}
    pieces: list[str] = []
    answer: dict[str, Any] = {}
    http = client or httpx.Client(timeout=120)
    with http.stream("POST", f"{url}/v1/chat/completions", json=body,
                     headers={"x-session-id": session}) as response:
        assert response.status_code == 200, response.read()
        answer["replica"] = response.headers.get("x-copyspec-replica")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            assert "error" not in event, event
            for choice in event["choices"]:
                pieces.append(choice["delta"].get("content") or "")
            answer.update({k: event[k] for k in ("copyspec", "usage") if k in event})
    answer["text"] = "".join(pieces)
    return answer
