"""Helpers for the server tests: a tiny model on disk and an editor-like LSP client.

The client keeps its own copy of each document, applies the server's `workspace/applyEdit`
calls to it and reports them back through `didChange`, as an editor does, so tests can
compare the buffer with the server's final text.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Union

import cattrs
from lsprotocol import types
from pygls.lsp.client import LanguageClient
from pygls.protocol import default_converter

from copyspec_lsp.adapters.line_index import LineIndex
from copyspec_lsp.flow.params import plain
from engine.gate import GATE_VARIABLE

from tiny_models import loaded, save

PY = "python"


def tiny_model(base: Path, mixing: float = 0.1, seed: int = 0) -> Path:
    """A tiny llama saved once per test session (mixing=0.1 copies heavily)."""
    directory = base / f"tiny-llama-{mixing}" if seed == 0 else base / f"tiny-llama-{mixing}-{seed}"
    if not (directory / "config.json").exists():
        save(loaded("llama", seed=seed, mixing=mixing), directory)
    return directory


def close_gate() -> None:
    """Close the test gate (copyspec_lsp/adapters/gate.py): from now on every streaming answer
    of every server this session started holds after its latest edit."""
    Path(os.environ[GATE_VARIABLE]).touch()


def open_gate() -> None:
    """Open the test gate: held answers go on. Safe to call from an edit hook (the server
    looks at the gate only after the edit is answered, so exactly the rest streams)."""
    Path(os.environ[GATE_VARIABLE]).unlink(missing_ok=True)


@contextlib.contextmanager
def held_stream() -> Iterator[None]:
    """Every streaming answer holds after its latest edit until the block ends (a cancel still
    stops it): the real server's test gate (copyspec_lsp/adapters/gate.py), so a test that acts
    mid-stream never races the engine, however fast the machine. The gate is open again
    after the block, even when the test failed inside it or opened it itself."""
    close_gate()
    try:
        yield
    finally:
        open_gate()


def server_command(model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "copyspec_lsp", "--model", str(model), "--device", "cpu", *extra]


def editor_converter() -> cattrs.Converter:
    """pygls's converter, except that a CodeAction carrying a command stays a CodeAction
    (lsprotocol reads any object with a "command" key as a bare Command)."""
    converter = default_converter()

    def action_or_command(data: Any, _: type) -> types.Command | types.CodeAction:
        kind = types.Command if isinstance(data.get("command"), str) else types.CodeAction
        return converter.structure(data, kind)

    converter.register_structure_hook(types.Command | types.CodeAction, action_or_command)
    converter.register_structure_hook(Union[types.Command, types.CodeAction], action_or_command)  # noqa: UP007
    return converter


class Editor(LanguageClient):
    """A LanguageClient that behaves like an editor buffer for the documents it opens."""

    def __init__(self) -> None:
        super().__init__("copyspec-test-editor", "0", converter_factory=editor_converter)
        self.docs: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.edits: list[types.ApplyWorkspaceEditParams] = []
        self.chunks: list[Any] = []
        self.messages: list[types.ShowMessageParams] = []
        self.progress: list[Any] = []
        self.encoding = "utf-16"
        self.on_edit: Callable[[Editor, str], None] | None = None
        """Runs after an edit was applied and echoed, before the reply: users typing."""
        self.hold_edits: asyncio.Event | None = None
        """While set to an unset Event, edits wait unanswered: a busy or stuck editor."""
        self.hold_progress: asyncio.Event | None = None
        """While set to an unset Event, progress-bar creations wait unanswered: a slow one."""
        self.arrivals: list[str] = []
        """The kind of each chunk and progress notification, in the order they arrived."""

        @self.feature(types.WORKSPACE_APPLY_EDIT)
        async def apply_edit(
            params: types.ApplyWorkspaceEditParams,
        ) -> types.ApplyWorkspaceEditResult:
            self.edits.append(params)
            if self.hold_edits is not None:
                await self.hold_edits.wait()
            for uri, edits in (params.edit.changes or {}).items():
                for edit in edits:
                    self.change(uri, edit.range, edit.new_text)
                if self.on_edit is not None:
                    self.on_edit(self, uri)
            return types.ApplyWorkspaceEditResult(applied=True)

        @self.feature("copyspec/chunk")
        def chunk(params: Any) -> None:
            self.chunks.append(plain(params))
            self.arrivals.append("chunk")

        @self.feature(types.WINDOW_SHOW_MESSAGE)
        def show_message(params: types.ShowMessageParams) -> None:
            self.messages.append(params)

        @self.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        async def create_progress(params: types.WorkDoneProgressCreateParams) -> None:
            if self.hold_progress is not None:
                await self.hold_progress.wait()

        @self.feature(types.PROGRESS)
        def progress(params: types.ProgressParams) -> None:
            self.progress.append(params)
            self.arrivals.append(f"progress {params.value['kind']}")

    def open(self, uri: str, text: str, language_id: str = PY) -> None:
        self.docs[uri], self.versions[uri] = text, 1
        self.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=uri, language_id=language_id, version=1, text=text)
            )
        )

    def change(self, uri: str, rng: types.Range, new_text: str) -> None:
        """Edit the local buffer and tell the server, as typing in an editor does."""
        start, end = LineIndex(self.docs[uri]).offsets(rng, self.encoding)
        self.docs[uri] = self.docs[uri][:start] + new_text + self.docs[uri][end:]
        self.versions[uri] += 1
        self.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=self.versions[uri], uri=uri),
                [types.TextDocumentContentChangePartial(range=rng, text=new_text)],
            )
        )

    async def request(self, method: str, params: Any, msg_id: Any = None) -> Any:
        future = self.protocol.send_request(method, params, msg_id=msg_id)
        return plain(await asyncio.wrap_future(future))

    async def status(self) -> dict[str, Any]:
        return await self.request("copyspec/status", {})

    async def wait_ready(self, timeout: float = 120) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (status := await self.status())["state"] == "loading":
            assert loop.time() < deadline, "the model did not load in time"
            await asyncio.sleep(0.05)
        return status

    async def close(self) -> None:
        await asyncio.wait_for(self.shutdown_async(None), 30)
        self.exit(None)
        await self.stop()


def capabilities(encodings: list[str] | None = None) -> types.ClientCapabilities:
    general = types.GeneralClientCapabilities(position_encodings=encodings) if encodings else None
    return types.ClientCapabilities(
        general=general,
        workspace=types.WorkspaceClientCapabilities(apply_edit=True),
        window=types.WindowClientCapabilities(work_done_progress=True),
    )


async def start_editor(
    command: list[str],
    encodings: list[str] | None = None,
    options: dict[str, Any] | None = None,
    root: Path | None = None,
    tcp_port: int | None = None,
) -> Editor:
    """Start (or connect to) the server, initialize it and return the editor client."""
    editor = Editor()
    if tcp_port is None:
        await editor.start_io(*command)
    else:
        await editor.start_tcp("127.0.0.1", tcp_port)
    result = await editor.initialize_async(
        types.InitializeParams(
            capabilities=capabilities(encodings),
            root_uri=root.as_uri() if root else None,
            initialization_options=options,
        )
    )
    editor.encoding = str(result.capabilities.position_encoding or "utf-16")
    editor.initialized(types.InitializedParams())
    return editor


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spawn_tcp(command: list[str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*command, "--tcp", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def rng(start: tuple[int, int], end: tuple[int, int]) -> dict[str, Any]:
    return {
        "start": {"line": start[0], "character": start[1]},
        "end": {"line": end[0], "character": end[1]},
    }


def rebuilt(chunks: list[dict[str, Any]]) -> list[str]:
    """The replacement after each `copyspec/chunk` of one turn, rebuilt from their changes the
    way a client does (`text[:start] + insert`, in UTF-16 code units), checking each one's
    sequence number and resulting length."""
    units, texts = b"", []
    for seq, chunk in enumerate(chunks, start=chunks[0]["seq"] if chunks else 1):
        assert chunk["seq"] == seq, "a chunk is missing or out of order"
        units = units[: 2 * chunk["start"]] + chunk["insert"].encode("utf-16-le")
        assert len(units) // 2 == chunk["length"], chunk
        texts.append(units.decode("utf-16-le"))
    return texts
