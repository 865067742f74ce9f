"""The handlers: the server's state and one method per LSP method; `wire/server.py` only wires.

Each method is short: a refine or fix is handed to the flow (`flow/refine.py`) with a narrow
context, and what it raises comes back as a JSON-RPC error code. Every method here runs on
the event loop thread, which is the only thread that sends messages; the model runs on the
engine thread (`engine/engine_thread.py`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcRequestCancelled,
    JsonRpcServerError,
)
from pygls.lsp.server import LanguageServer

from copyspec_lsp import __version__
from copyspec_lsp.adapters.client import Client, Progress
from copyspec_lsp.adapters.conversations import Conversations
from copyspec_lsp.adapters.documents import ChangeRejected, Documents, UnknownDocument
from copyspec_lsp.adapters.gate import StreamGate
from copyspec_lsp.adapters.model_host import ModelHost, ModelUnavailable, load_notices
from copyspec_lsp.adapters.remote import RemoteUnavailable
from copyspec_lsp.adapters.requests import Request, RequestCancelled, RequestError
from copyspec_lsp.adapters.settings import Settings
from copyspec_lsp.flow.check import CheckCommandError, kill_check_commands
from copyspec_lsp.flow.context import FlowContext
from copyspec_lsp.flow.params import CONVERTER, ParamsError, parse_request, plain
from copyspec_lsp.flow.refine import ModelFailed, RefineFlow, first_lone_surrogate
from engine.engine_thread import EngineThread
from engine.loading import LoadedModel
from engine.session import PromptTooLongError

log = logging.getLogger(__name__)
MODEL_ERROR_CODE = -32000
"""JSON-RPC server error code for "the model is not available" (load failed, too slow, or
reloaded while the request waited)."""
SHUTDOWN_WAIT = 2.0
"""Seconds `shutdown` waits for the stopped requests to send their answers."""


class JsonRpcServerCancelled(JsonRpcException):
    """LSP's ServerCancelled: the server stopped the request (the reason is the message), as
    opposed to RequestCancelled, which answers the user's own cancel."""

    CODE = types.LSPErrorCodes.ServerCancelled.value
    MESSAGE = "Server Cancelled"


class Handlers:
    """Documents, conversations, running requests, the model and the settings of one server,
    and a method per LSP method."""

    def __init__(self, server: LanguageServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings
        self.documents = Documents()
        self.conversations = Conversations()
        self.client = Client(server, self.documents)
        self.requests: list[Request] = []
        self.root: str | None = None
        self.worker: EngineThread | None = None
        self.model: ModelHost | None = None
        self.gate = StreamGate.from_environment()
        """Set only by tests that must act mid-stream (see gate.py)."""
        self._loading: asyncio.Task[None] | None = None
        self._tasks: dict[Any, asyncio.Task[Any]] = {}
        """Running refine/fix handlers by JSON-RPC id, for `$/cancelRequest`."""

    # life cycle

    def initialize(self, params: types.InitializeParams) -> None:
        """Settle the position encoding, the workspace root and the client's settings."""
        encoding = self.server.workspace.position_encoding or "utf-16"
        self.documents.encoding = str(getattr(encoding, "value", encoding))
        root = self.server.workspace.root_path
        self.root = root if root else None
        self.worker = EngineThread()
        self.model = ModelHost(self.worker)
        if params.initialization_options:
            self._apply_settings(plain(params.initialization_options))

    def initialized(self) -> None:
        """Start loading the model in the background."""
        self._loading = asyncio.ensure_future(self._load())

    async def _load(self, generation: int | None = None) -> None:
        assert self.model is not None
        settings = self.settings
        progress = self.client.progress("CopySpec: loading the model")
        await progress.begin(settings.model or "the built-in model (SmolLM2 + refinement adapter)")
        try:
            lm = await self.model.load(settings, generation)
        except ModelUnavailable as error:
            progress.end("failed")
            self.client.show(types.MessageType.Error, str(error))
            return
        progress.end("ready")
        if isinstance(lm, LoadedModel):
            for notice in load_notices(lm, settings):
                self.client.show(types.MessageType.Warning, notice)

    async def shutdown(self) -> None:
        """Stop every request (each answers ServerCancelled, -32802), the engine thread and
        the model; waits at most SHUTDOWN_WAIT seconds for the requests to answer."""
        tasks = [task for task in self._tasks.values() if not task.done()]
        self.stop()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT)

    def stop(self) -> None:
        """Stop everything at once, without waiting (shutdown, or the client went away)."""
        for request in list(self.requests):
            request.cancel("the server is shutting down", by_server=True)
        if self.worker is not None:
            self.worker.close()
        if self.model is not None:
            self.model.free()
        kill_check_commands()
        self.conversations.clear()

    # settings

    def change_configuration(self, params: types.DidChangeConfigurationParams) -> None:
        """Apply the "copyspec" section (or the whole payload when it has no such key)."""
        raw = plain(params.settings)
        if isinstance(raw, dict) and isinstance(raw.get("copyspec"), dict):
            raw = raw["copyspec"]
        if raw is None:
            return
        before = self.settings
        self._apply_settings(raw)
        if before.needs_reload(self.settings) and self._loading is not None:
            assert self.model is not None
            self.conversations.clear()
            generation = self.model.begin_load(self.settings)
            self._loading = asyncio.ensure_future(self._load(generation))

    def _apply_settings(self, raw: Any) -> None:
        self.settings, problems = self.settings.update(raw)
        logging.getLogger().setLevel(self.settings.log_level)
        for problem in problems:
            self.client.show(types.MessageType.Warning, problem)

    # documents

    def did_open(self, params: types.DidOpenTextDocumentParams) -> None:
        self.documents.open(params.text_document)
        self._check_surrogates(params.text_document.uri, [params.text_document.text])

    def did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        """A change for an unknown document is logged. One that does not fit (a range outside
        the document, an older version) or cannot be applied leaves the document out of sync."""
        uri = params.text_document.uri
        try:
            self.documents.change(params)
        except UnknownDocument as error:
            log.warning("didChange ignored: %s", error)
            return
        except ChangeRejected as error:
            self.out_of_sync(uri, str(error))
            return
        except Exception:
            log.exception("didChange for %s failed", uri)
            self.out_of_sync(uri, "a change failed (the server's log has the details)")
            return
        self._check_surrogates(uri, [change.text for change in params.content_changes])

    def notification_refused(self, method: str, params: Any) -> None:
        """A didChange that could not be read is lost: its document is out of sync."""
        document = params.get("textDocument") if isinstance(params, dict) else None
        uri = document.get("uri") if isinstance(document, dict) else None
        if method == types.TEXT_DOCUMENT_DID_CHANGE and isinstance(uri, str):
            self.out_of_sync(uri, "a change could not be read")

    def out_of_sync(self, uri: str, why: str) -> None:
        """The server's copy of `uri` no longer matches the editor's: its requests stop, it is
        dropped, and the user is told once to close and reopen it (refine and fix requests on
        it say so too, until a didOpen or a full-text didChange)."""
        for request in list(self.requests):
            if request.uri == uri:
                request.cancel(self.out_of_sync_message(uri, why), by_server=True)
        if self.documents.drop_out_of_sync(uri, why):
            log.warning("%s is out of sync with the editor (%s): dropped until its whole text "
                        "comes again", uri, why)
            self.client.show(types.MessageType.Warning,
                             f"{uri} is out of sync with the editor ({why}). Close and reopen it.")

    @staticmethod
    def out_of_sync_message(uri: str, why: str) -> str:
        return f"{uri} is out of sync with the editor ({why}): close and reopen it, then try again"

    def _check_surrogates(self, uri: str, texts: list[str]) -> None:
        """Log a lone surrogate a change brought: the text is kept as sent, but it cannot be
        encoded as UTF-8, so a refine or fix of its line will be refused."""
        if all(text.isascii() or first_lone_surrogate(text) is None for text in texts):
            return
        document = self.documents.get(uri)
        where = first_lone_surrogate(document.text) if document else None
        if document is not None and where is not None:
            log.warning("%s has an unpaired surrogate at line %d: it cannot be encoded as UTF-8, "
                        "so a refine or fix of that line will be refused", uri,
                        document.lines.line_of(where) + 1)

    def did_close(self, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        if self.documents.get(uri) is None and self.documents.out_of_sync(uri) is None:
            log.warning("didClose ignored: %s is not open", uri)
        self.documents.close(uri)

    # requests

    async def refine(self, raw: Any, fix: bool = False) -> dict[str, Any]:
        """`copyspec/refine` and `copyspec/fix` (and their commands)."""
        msg_id = self.server.protocol.msg_id
        task = asyncio.current_task()
        if msg_id is not None and task is not None:
            self._tasks[msg_id] = task
        params = None
        try:
            params = parse_request(raw)
            return await RefineFlow(self._flow_context(), params, fix, msg_id).run()
        except (ParamsError, RequestError, PromptTooLongError) as error:
            # a document dropped as out of sync reads as not open: say what happened instead
            why = self.documents.out_of_sync(params.uri) if params else None
            if params and why:
                raise JsonRpcInvalidParams(self.out_of_sync_message(params.uri, why)) from None
            raise JsonRpcInvalidParams(str(error)) from None
        except ModelFailed as error:
            log.warning("%s", error, exc_info=error.__cause__)
            raise JsonRpcInternalError(str(error)) from None
        except (ModelUnavailable, RemoteUnavailable) as error:
            raise JsonRpcServerError(str(error), MODEL_ERROR_CODE) from None
        except RequestCancelled as error:
            if error.by_server:
                raise JsonRpcServerCancelled(str(error)) from None
            raise JsonRpcRequestCancelled(str(error)) from None
        except CheckCommandError as error:
            raise JsonRpcServerError(str(error), MODEL_ERROR_CODE) from None
        except (JsonRpcException, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("request failed")
            raise JsonRpcInternalError(
                "the server failed on this request (its log has the details)"
            ) from None
        finally:
            if self._tasks.get(msg_id) is task:
                del self._tasks[msg_id]

    def _flow_context(self) -> FlowContext:
        """What a refine may touch, with the settings as they are now."""
        assert self.model is not None
        return FlowContext(self.documents, self.conversations, self.requests, self.model,
                           self.settings, self.client, self.root, self.gate)

    def cancel_by_id(self, msg_id: Any) -> None:
        """`$/cancelRequest`: stop the model and the handler now, whichever route started it
        (pygls itself cannot stop a `workspace/executeCommand` handler)."""
        for request in list(self.requests):
            if request.msg_id == msg_id:
                request.cancel("cancelled by the client")
        task = self._tasks.pop(msg_id, None)
        if task is not None:
            task.cancel()

    def cancel(self, args: Any) -> dict[str, int]:
        """`copyspec.cancel`: stop the requests of a session or of a document (or all)."""
        match = plain(args) if args else {}
        if not isinstance(match, dict):
            raise JsonRpcInvalidParams("copyspec.cancel takes {session?} or {uri?}")
        hits = [
            request
            for request in list(self.requests)
            if match.get("session") in (None, request.session)
            and match.get("uri") in (None, request.uri)
        ]
        for request in hits:
            request.cancel("cancelled by copyspec.cancel")
        return {"cancelled": len(hits)}

    def cancel_progress(self, params: types.WorkDoneProgressCancelParams) -> None:
        Progress.cancel(str(params.token))

    def status(self) -> dict[str, Any]:
        """`copyspec/status`: what a health command shows."""
        if self.model is None or self.worker is None:
            return {"version": __version__, "state": "starting"}
        status: dict[str, Any] = {"version": __version__, **self.model.describe()}
        status["state"] = self.model.state
        if self.model.error:
            status["error"] = self.model.error
        status["queue"] = len(self.worker.jobs())
        status["sessions"] = self.conversations.describe()
        if self.model.last_stats is not None:
            status["lastStats"] = self.model.last_stats
        return status

    def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        """"Refine selection…" (refactor) and one "fix this error" (quickfix) per diagnostic."""
        uri = params.text_document.uri
        if self.documents.get(uri) is None and self.documents.out_of_sync(uri) is None:
            return []  # one out of sync keeps its actions: they answer what to do
        only = params.context.only
        wanted = lambda kind: not only or any(kind.value.startswith(k) for k in only)  # noqa: E731
        actions = []
        # Only on a selection or when asked (Ctrl+.): else the lightbulb follows the cursor.
        explicit = params.context.trigger_kind == types.CodeActionTriggerKind.Invoked
        selected = params.range.start != params.range.end
        if wanted(types.CodeActionKind.RefactorRewrite) and (explicit or selected):
            argument = {"uri": uri, "range": CONVERTER.unstructure(params.range)}
            command = types.Command(
                "CopySpec: refine selection…", "copyspec.refine", arguments=[argument]
            )
            actions.append(types.CodeAction(
                command.title, kind=types.CodeActionKind.RefactorRewrite, command=command
            ))
        fixable = params.context.diagnostics if wanted(types.CodeActionKind.QuickFix) else []
        for diagnostic in fixable:
            argument = {
                "uri": uri,
                "range": CONVERTER.unstructure(diagnostic.range),
                "diagnostics": [CONVERTER.unstructure(diagnostic)],
            }
            command = types.Command(
                "CopySpec: fix this error", "copyspec.fix", arguments=[argument]
            )
            actions.append(types.CodeAction(
                command.title, kind=types.CodeActionKind.QuickFix,
                diagnostics=[diagnostic], command=command,
            ))
        return actions
