"""A raw JSON-RPC client for the reliability tests: it writes bytes to the real
`copyspec-lsp --stdio` and reads its frames with a strict parser, so a test sees exactly what
the server sent (no client library smooths anything over). Every wait has a deadline."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from lsprotocol import types

from copyspec_lsp.adapters.line_index import LineIndex
from copyspec_lsp.flow.params import CONVERTER

from lsp_fixtures import server_command, tiny_model

UNCLEAR = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b|<\w+ (at|object)|CANCELLED")
"""What an error message for a person must not contain: Python exception names and reprs."""


def frame(body: bytes | str) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return b"Content-Length: %d\r\n\r\n" % len(data) + data


def message(obj: Any) -> bytes:
    return frame(json.dumps(obj))


class RawServer:
    """The server as a subprocess; `seen` holds every message it sent, in order."""

    def __init__(self, command: list[str], log_file: Path | None = None) -> None:
        self.log = open(log_file, "wb") if log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log
        )
        self.seen: list[dict[str, Any]] = []
        self.docs: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.auto_apply = True
        self.on_edit: Any = None
        """Called with (server, uri) after an applied edit was reported back: users typing."""
        self.before_edit: Any = None
        """Called with (server, params) before an edit is looked at: typing in the race."""
        self.check_versions = False
        self._lines: dict[str, LineIndex] = {}
        """Line starts of `docs`, so a keystroke in a big document costs the client little."""
        self._new = threading.Condition()
        self._next_id = 1000
        threading.Thread(target=self._read, daemon=True).start()

    # bytes out

    def send_bytes(self, data: bytes) -> None:
        """Write to the server; a no-op once a test closed stdin (the reader thread may
        still be answering an edit)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(ValueError, BrokenPipeError):
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def send(self, obj: Any) -> None:
        self.send_bytes(message(obj))

    def request(self, method: str, params: Any = None, msg_id: Any = None) -> Any:
        if msg_id is None:
            msg_id = self._next_id = self._next_id + 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            body["params"] = params
        self.send(body)
        return msg_id

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    # frames in

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        while True:
            header = stream.readline()
            if not header:
                return
            length = int(header.split(b":")[1])
            while stream.readline() not in (b"\r\n", b""):
                pass
            data = json.loads(stream.read(length))
            if "method" in data and "id" in data:
                self._answer(data)
            with self._new:
                self.seen.append(data)
                self._new.notify_all()

    def _answer(self, data: dict[str, Any]) -> None:
        """Answer the server's own requests as a plain editor would."""
        result: Any = None
        if data["method"] == "workspace/applyEdit":
            result = {"applied": True}
            if self.before_edit is not None:
                self.before_edit(self, data["params"])
            applied = self.apply_edit(data["params"]["edit"]) if self.auto_apply else []
            if applied is None:
                result = {"applied": False, "failureReason": "stale version"}
            for uri in applied or []:
                if self.on_edit is not None:
                    self.on_edit(self, uri)
        self.send({"jsonrpc": "2.0", "id": data["id"], "result": result})

    def apply_edit(self, edit: dict[str, Any]) -> list[str] | None:
        """Apply a WorkspaceEdit naively (or, with check_versions, refuse a stale one: None)."""
        groups = [(uri, None, edits) for uri, edits in (edit.get("changes") or {}).items()]
        for change in edit.get("documentChanges") or []:
            groups.append((change["textDocument"]["uri"], change["textDocument"].get("version"),
                           change["edits"]))
        if self.check_versions and any(v is not None and v != self.versions[u]
                                       for u, v, _ in groups):
            return None
        for uri, _, edits in groups:
            for edit_ in edits:
                self.change(uri, edit_["range"], edit_["newText"])
        return [uri for uri, _, _ in groups]

    def wait(self, predicate: Any, timeout: float = 30.0, after: int = 0) -> dict[str, Any]:
        """The first message from index `after` on that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for item in self.seen[after:]:
                    if predicate(item):
                        return item
                left = deadline - time.monotonic()
                assert left > 0, f"no such message within {timeout} s"
                assert self.proc.poll() is None or left > 0
                self._new.wait(min(left, 0.5))

    def response(self, msg_id: Any, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait(lambda m: m.get("id") == msg_id and "method" not in m, timeout)

    def responses(self, msg_id: Any) -> list[dict[str, Any]]:
        with self._new:
            return [m for m in self.seen if m.get("id") == msg_id and "method" not in m]

    def call(self, method: str, params: Any = None, timeout: float = 30.0) -> dict[str, Any]:
        return self.response(self.request(method, params), timeout)

    # lifecycle and documents

    def initialize(self, options: dict[str, Any] | None = None,
                   versioned: bool = False) -> dict[str, Any]:
        capabilities = {"workspace": {"applyEdit": True,
                                      "workspaceEdit": {"documentChanges": versioned}}}
        params = {"processId": None, "rootUri": None, "capabilities": capabilities,
                  "initializationOptions": options or {}}
        answer = self.call("initialize", params, timeout=180)  # importing torch under load
        self.notify("initialized", {})
        return answer

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.call("copyspec/status")["result"]["state"] == "loading":
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.05)

    def open(self, uri: str, text: str, language_id: str = "python") -> None:
        self.docs[uri], self.versions[uri] = text, 1
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": language_id, "version": 1, "text": text}})

    def change(self, uri: str, where: dict[str, Any], new_text: str) -> None:
        lines = self._lines.get(uri)
        if lines is None or lines.text is not self.docs[uri]:
            lines = LineIndex(self.docs[uri])
        start, end = lines.offsets(CONVERTER.structure(where, types.Range))
        self._lines[uri] = lines = lines.replaced(start, end, new_text)
        self.docs[uri] = lines.text
        self.versions[uri] += 1
        self.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": self.versions[uri]},
            "contentChanges": [{"range": where, "text": new_text}]})

    def exit_code(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def start(base: Path, *extra: str, log_file: Path | None = None) -> RawServer:
    """The real server on the tiny model, one torch thread."""
    return RawServer(server_command(tiny_model(base), "--threads", "1", *extra), log_file)


def rng(start: tuple[int, int], end: tuple[int, int]) -> dict[str, Any]:
    return {"start": {"line": start[0], "character": start[1]},
            "end": {"line": end[0], "character": end[1]}}
