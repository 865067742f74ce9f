"""Wiring only: each LSP method to the handler that answers it (`handlers/methods.py`), and
the run."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from copyspec_lsp import __version__
from copyspec_lsp.adapters.settings import Settings
from copyspec_lsp.handlers.methods import Handlers
from copyspec_lsp.wire.protocol import CopySpecProtocol
from copyspec_lsp.wire.transport import serve_stdio, serve_tcp

log = logging.getLogger(__name__)

REFINE = "copyspec/refine"
FIX = "copyspec/fix"
STATUS = "copyspec/status"


class CopySpecServer(LanguageServer):
    """pygls' server with the strict protocol; errors go to the log, never to a popup (the
    request that failed already carries its own error)."""

    protocol: CopySpecProtocol

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            "copyspec-lsp", __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=CopySpecProtocol,
        )
        self.handlers = Handlers(self, settings)

    def report_server_error(self, error: Exception, source: Any) -> None:
        log.warning("%s", error)

    def serve(self, tcp: tuple[str, int] | None = None) -> int:
        """Serve until the client leaves; returns the exit status (see `transport.py`).
        Every request and child process is stopped on the way out."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        running = serve_tcp(self.protocol, *tcp) if tcp else serve_stdio(self.protocol)
        try:
            return loop.run_until_complete(running)
        finally:
            self.handlers.stop()


def build_server(settings: Settings) -> CopySpecServer:
    """A server with every CopySpec feature registered; it serves once started."""
    server = CopySpecServer(settings)
    handlers = server.handlers
    server.protocol.on_cancel = handlers.cancel_by_id
    server.protocol.on_refused = handlers.notification_refused

    @server.feature(types.INITIALIZE)
    def initialize(params: types.InitializeParams) -> None:
        handlers.initialize(params)

    @server.feature(types.INITIALIZED)
    def initialized(params: types.InitializedParams) -> None:
        handlers.initialized()

    @server.feature(types.SHUTDOWN)
    async def shutdown(params: None) -> None:
        await handlers.shutdown()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(params: types.DidChangeConfigurationParams) -> None:
        handlers.change_configuration(params)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        handlers.did_open(params)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        handlers.did_change(params)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        handlers.did_close(params)

    @server.feature(REFINE)
    async def refine(params: Any) -> dict[str, Any]:
        return await handlers.refine(params)

    @server.feature(FIX)
    async def fix(params: Any) -> dict[str, Any]:
        return await handlers.refine(params, fix=True)

    @server.feature(STATUS)
    def status(params: Any) -> dict[str, Any]:
        return handlers.status()

    @server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def cancel_progress(params: types.WorkDoneProgressCancelParams) -> None:
        handlers.cancel_progress(params)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[types.CodeActionKind.RefactorRewrite, types.CodeActionKind.QuickFix]
        ),
    )
    def code_action(params: types.CodeActionParams) -> list[types.CodeAction]:
        return handlers.code_actions(params)

    @server.command("copyspec.refine")
    async def refine_command(*args: Any) -> dict[str, Any]:
        return await handlers.refine(args[0] if args else None)

    @server.command("copyspec.fix")
    async def fix_command(*args: Any) -> dict[str, Any]:
        return await handlers.refine(args[0] if args else None, fix=True)

    @server.command("copyspec.cancel")
    def cancel_command(*args: Any) -> dict[str, int]:
        return handlers.cancel(args[0] if args else None)

    return server
