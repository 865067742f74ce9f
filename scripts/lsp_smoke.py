"""Server smoke test for a device: start `copyspec-lsp` over stdio, refine, stream, cancel.

Raw JSON-RPC over the subprocess's pipes, standard library only, so it checks the server as any
editor would see it and needs nothing beyond the server's own install. It writes smoke.json
(figures and checks) and exits 1 when a check fails. Run by scripts/gpu_check.py.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

DOC = (
    "import os\n\n\ndef add(a, b):\n    total = a + b\n    return total\n\n\n"
    "class Box:\n    def size(self):\n        return 1\n"
)
LONG = 400
"""maxNewTokens for the refine that must still be running when the cancel arrives."""
REQUEST_CANCELLED = -32800
STEPS_AFTER_CANCEL = 2
"""Passes allowed between the stats of the chunk the cancel answers and the stop: the step
that was running when the cancel arrived, and the one whose chunk was still in flight."""


class Server:
    """A language server subprocess with a reader thread. It answers the server's own requests
    as an editor would: applyEdit is applied to its buffers and echoed back as didChange."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None
                 ) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("wb"),
            env=env,
        )
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.next_id = 0
        self.docs: dict[str, list[Any]] = {}
        """uri → [text, version]"""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                self.messages.put({"method": "<eof>"})
                return
            self.messages.put(json.loads(stream.read(length)))

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
        self.process.stdin.flush()

    def request(self, method: str, params: Any) -> int:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        return self.next_id

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def next(self, deadline: float) -> dict[str, Any]:
        """The next message from the server, its own requests answered on the way."""
        try:
            message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError("the server went quiet past the deadline") from None
        if message.get("method") == "<eof>":
            raise ConnectionError("the server exited")
        if "method" in message and "id" in message:
            applied = message["method"] == "workspace/applyEdit"
            if applied:
                self.apply(message["params"]["edit"].get("changes", {}))
            self.send({"id": message["id"], "result": {"applied": True} if applied else None})
        return message

    def open(self, uri: str, text: str) -> None:
        self.docs[uri] = [text, 1]
        item = {"uri": uri, "languageId": "python", "version": 1, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": item})

    def apply(self, changes: dict[str, list[dict[str, Any]]]) -> None:
        for uri, edits in changes.items():
            for edit in edits:
                doc = self.docs[uri]
                start, end = (offset(doc[0], edit["range"][end]) for end in ("start", "end"))
                doc[0], doc[1] = doc[0][:start] + edit["newText"] + doc[0][end:], doc[1] + 1
                self.notify("textDocument/didChange", {
                    "textDocument": {"uri": uri, "version": doc[1]},
                    "contentChanges": [{"range": edit["range"], "text": edit["newText"]}],
                })

    def call(self, method: str, params: Any, deadline: float, seen: list | None = None) -> Any:
        """Send a request and wait for its reply; notifications on the way go to `seen`."""
        wanted = self.request(method, params)
        while True:
            message = self.next(deadline)
            if message.get("id") == wanted and "method" not in message:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message')}")
                return message.get("result")
            if seen is not None:
                seen.append(message)


def offset(text: str, position: dict[str, int]) -> int:
    """A string index from an LSP position (UTF-16 code units, the default encoding)."""
    lines = text.splitlines(keepends=True)
    before = sum(len(line) for line in lines[: position["line"]])
    line = lines[position["line"]] if position["line"] < len(lines) else ""
    units = line.encode("utf-16-le")[: 2 * position["character"]]
    return before + len(units.decode("utf-16-le", errors="ignore"))


def refine_params(uri: str, **extra: Any) -> dict[str, Any]:
    where = {"start": {"line": 4, "character": 0}, "end": {"line": 4, "character": 0}}
    return {"textDocument": {"uri": uri}, "range": where, "instruction": "rename total", **extra}


def chunks_of(messages: list[dict[str, Any]], uri: str) -> list[dict[str, Any]]:
    return [m["params"] for m in messages
            if m.get("method") == "copyspec/chunk" and m["params"]["uri"] == uri]


def rebuilt(chunks: list[dict[str, Any]]) -> str:
    """The replacement rebuilt from a turn's chunk changes (`start`: UTF-16 code units)."""
    units = b""
    for chunk in chunks:
        units = units[: 2 * chunk["start"]] + chunk["insert"].encode("utf-16-le")
    return units.decode("utf-16-le")


def start(server: Server, deadline: float) -> dict[str, Any]:
    """Initialize and wait until the model has loaded; the status names device and dtype."""
    capabilities = {"workspace": {"applyEdit": True}, "window": {"workDoneProgress": True}}
    server.call("initialize", {"processId": None, "rootUri": None,
                               "capabilities": capabilities}, deadline)
    server.notify("initialized", {})
    while (status := server.call("copyspec/status", {}, deadline))["state"] == "loading":
        time.sleep(0.05)
    if status["state"] != "ready":
        raise RuntimeError(f"model not ready: {status.get('error', status['state'])}")
    return status


def refine(server: Server, deadline: float) -> dict[str, Any]:
    """One refine that streams: its chunks must rebuild the answer."""
    uri = "file:///smoke-refine.py"
    server.open(uri, DOC)
    seen: list[dict[str, Any]] = []
    began = time.monotonic()
    result = server.call("copyspec/refine", refine_params(uri, maxNewTokens=64), deadline, seen)
    chunks = chunks_of(seen, uri)
    edits = [m for m in seen if m.get("method") == "workspace/applyEdit"]
    return {
        "seconds": round(time.monotonic() - began, 3),
        "chunks": len(chunks), "edits": len(edits), "stats": result["stats"],
        "text_ok": bool(result["text"]) and rebuilt(chunks) == result["text"],
    }


def cancel(server: Server, deadline: float) -> dict[str, Any]:
    """A long refine cancelled ($/cancelRequest) as soon as its first chunk arrives; then the
    server's own count of passes says how many steps ran after that chunk."""
    uri = "file:///smoke-cancel.py"
    server.open(uri, DOC)
    wanted = server.request("copyspec/refine", refine_params(uri, maxNewTokens=LONG))
    sent_at = None
    at_cancel: dict[str, Any] = {}
    after_reply = 0
    reply: dict[str, Any] = {}
    while not reply:
        message = server.next(deadline)
        if message.get("method") == "copyspec/chunk" and message["params"]["uri"] == uri:
            if sent_at is None:
                at_cancel = message["params"]["stats"]
                server.notify("$/cancelRequest", {"id": wanted})
                sent_at = time.monotonic()
        elif message.get("id") == wanted and "method" not in message:
            reply = message
    latency = time.monotonic() - (sent_at or time.monotonic())
    # Chunks sent before the stop precede a status reply that shows the queue empty.
    while True:
        seen: list[dict[str, Any]] = []
        status = server.call("copyspec/status", {}, deadline, seen)
        after_reply += len(chunks_of(seen, uri))
        if not status["queue"] and status.get("lastStats", {}).get("cancelled"):
            break
        time.sleep(0.02)
    final = status["lastStats"]
    steps = final["forward_passes"] - at_cancel.get("forward_passes", 0)
    step_ms = 1000 * final["decode_seconds"] / max(1, final["forward_passes"])
    return {
        "cancel_error_code": reply.get("error", {}).get("code"),
        "cancel_ms": round(1000 * latency, 1), "step_ms": round(step_ms, 2),
        "steps_after_cancel": steps, "new_tokens": final["new_tokens"],
        "chunks_after_reply": after_reply,
    }


def checks(report: dict[str, Any]) -> dict[str, bool]:
    done, stopped = report["refine"], report["cancel"]
    return {
        "refine answered": done["text_ok"],
        "refine streamed (>= 2 chunks)": done["chunks"] >= 2,
        "cancel answered RequestCancelled": stopped["cancel_error_code"] == REQUEST_CANCELLED,
        f"stopped within {STEPS_AFTER_CANCEL} steps of the chunk it answered":
            stopped["steps_after_cancel"] <= STEPS_AFTER_CANCEL,
        "nothing streamed after the cancel reply": stopped["chunks_after_reply"] == 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--model",
                        help="model directory (default: the built-in model, SmolLM2 + adapter)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds for the whole smoke")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "copyspec_lsp", "--device", args.device,
               "--dtype", args.dtype, *(["--model", args.model] if args.model else [])]
    deadline = time.monotonic() + args.timeout
    server = Server(command, args.out / "server.log")
    report: dict[str, Any] = {"command": " ".join(command)}
    try:
        report["status"] = start(server, deadline)
        report["refine"] = refine(server, deadline)
        report["cancel"] = cancel(server, deadline)
        report["checks"] = checks(report)
        server.call("shutdown", None, deadline)
        server.notify("exit", None)
    except (TimeoutError, ConnectionError, RuntimeError) as error:
        report["error"] = str(error)
    finally:
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
    (args.out / "smoke.json").write_text(json.dumps(report, indent=2))
    failed = [name for name, ok in report.get("checks", {}).items() if not ok]
    print(json.dumps({k: report[k] for k in ("refine", "cancel", "checks") if k in report}))
    if "error" in report or failed:
        print(f"server smoke failed: {report.get('error') or ', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
