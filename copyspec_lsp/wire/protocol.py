"""pygls' LSP protocol, made strict where a malformed or badly timed message used to go
unanswered, leak, or pop up a Python error in the editor.

What changes against `pygls.protocol.LanguageServerProtocol` (2.1.1), all in this subclass:
- every message is checked before pygls sees it: a request always gets exactly one answer,
  -32600 for an invalid message, -32602 for params that do not fit the method, -32002 before
  `initialize`, and a second `initialize` or a request after `shutdown` is refused;
- any JSON number is an id (1.5 too); an invalid id (true, an object, an array, null) gets
  -32600 with `"id": null`, which every error without an id carries;
- a notification that cannot be handled is logged and handed to `on_refused` (a lost
  didChange leaves its document out of sync);
- the futures pygls keeps per notification (and per step of its builtin handlers) are dropped
  once done, and `$/cancelRequest` also reaches requests pygls cannot cancel itself
  (`workspace/executeCommand`), through `on_cancel`;
- open/change/close no longer copy every document into pygls' own workspace (the server
  keeps its own, `documents.py`), so a notification about an unknown document is logged;
- expected errors are answered without a traceback, unexpected ones with a message for a
  person (the traceback goes to the log), and nothing is shown as "Error in server".
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage

log = logging.getLogger(__name__)

CUSTOM_PREFIX = "copyspec/"
"""Methods whose params stay plain JSON (pygls would turn them into namedtuples, which fail
on keys that are not identifiers)."""


def _valid_id(value: Any) -> bool:
    """JSON-RPC ids are strings and numbers (whole or not); JSON has no NaN or infinity."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int) and not isinstance(value, bool)


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return json.dumps(value)  # true, false, null, NaN, Infinity


class CopySpecProtocol(LanguageServerProtocol):
    """The LSP protocol with the checks and fixes listed in the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_cancel: Callable[[Any], None] | None = None
        """Called with the id of every `$/cancelRequest`, before pygls handles it."""
        self.initialize_seen = False
        self.on_refused: Callable[[str, Any], None] | None = None
        """Called with the method and raw params of every notification that is not handled
        because it is malformed."""

    # incoming messages

    def handle_raw(self, data: Any) -> None:
        """Check one decoded JSON message, answer what is wrong with it, else handle it."""
        if not isinstance(data, dict):
            what = "batches are not supported" if isinstance(data, list) else "not an object"
            self.reply_error(None, JsonRpcInvalidRequest(f"invalid message: {what}"))
            return
        msg_id, method = data.get("id"), data.get("method")
        is_request = "method" in data and "id" in data
        if "id" in data and not (_valid_id(msg_id) or (msg_id is None and "method" not in data)):
            self.reply_error(None, JsonRpcInvalidRequest(
                f"invalid message: id must be a number or a string, not {_json_kind(msg_id)}"
            ))
            return
        problem = self._message_problem(data)
        if problem:
            self.refuse(data, JsonRpcInvalidRequest(problem))
            return
        if "method" not in data:  # a response to one of the server's requests
            self._handle_structured(self.structure_message(data))
            return
        refusal = self._lifecycle_refusal(method, is_request)
        if refusal is not None:
            if is_request:
                self.reply_error(msg_id, refusal)
            else:
                log.info("ignored %s: %s", method, refusal.message)
            return
        try:
            message = self._structure(data, is_request)
        except Exception as error:
            self.refuse(data, JsonRpcInvalidParams(
                f"params do not fit {method}: {_first_line(error)}"
            ))
            return
        if method == types.INITIALIZE:
            self.initialize_seen = True
        self._handle_structured(message)

    def _message_problem(self, data: dict[str, Any]) -> str:
        if data.get("jsonrpc") != self.VERSION:
            return 'invalid message: "jsonrpc" must be "2.0"'
        if "method" in data and not isinstance(data["method"], str):
            return "invalid message: method must be a string"
        if "method" not in data and "result" not in data and "error" not in data:
            return "invalid message: no method, result or error"
        if "params" in data and not isinstance(data["params"], dict | list | None):
            return "invalid message: params must be an object or an array"
        return ""

    def _lifecycle_refusal(self, method: str, is_request: bool) -> JsonRpcException | None:
        if method == types.EXIT:
            return None
        if method == types.INITIALIZE and self.initialize_seen:
            return JsonRpcInvalidRequest("the server is already initialized")
        if not self.initialize_seen and method != types.INITIALIZE:
            return JsonRpcServerNotInitialized("the server is not initialized: send initialize")
        if self._shutdown:
            return JsonRpcInvalidRequest("the server is shutting down")
        return None

    def _structure(self, data: dict[str, Any], is_request: bool) -> Any:
        method = data["method"]
        if method.startswith(CUSTOM_PREFIX) or self.get_message_type(method) is None:
            params = data.get("params")
            if is_request:
                return JsonRPCRequestMessage(
                    id=data["id"], method=method, jsonrpc=self.VERSION, params=params
                )
            return JsonRPCNotification(method=method, jsonrpc=self.VERSION, params=params)
        return self.structure_message(data)

    def _handle_structured(self, message: Any) -> None:
        # SystemExit (the `exit` notification) passes through to the transport
        try:
            self.handle_message(message)
        except JsonRpcException as error:
            log.warning("message not handled: %s", error)

    def refuse(self, data: dict[str, Any], error: JsonRpcException) -> None:
        """Answer a message that is not handled because of `error`: a request under its own
        id; a notification only in the log (and to `on_refused`); anything else with id
        null. `data` is what could be read of the message."""
        method, msg_id = data.get("method"), data.get("id")
        if isinstance(method, str) and "id" not in data:
            log.warning("ignored notification %s: %s", method, error.message)
            if self.on_refused is not None:
                self.on_refused(method, data.get("params"))
        elif "method" in data and _valid_id(msg_id):
            self.reply_error(msg_id, error)
        else:
            self.reply_error(None, error)

    def reply_error(self, msg_id: Any, error: JsonRpcException) -> None:
        """Answer `msg_id` (None: an id that could not be read) with `error`."""
        log.info("answered %s with %s: %s", msg_id, error.code, error.message)
        self._send_response(msg_id, error=error.to_response_error())

    def _send_data(self, data: Any) -> None:
        """pygls' own, but an error without an id says `"id": null`, as JSON-RPC asks
        (lsprotocol leaves the key out, and a client cannot tell the message is an answer)."""
        if isinstance(data, types.ResponseErrorMessage) and data.id is None:
            data = {**self._converter.unstructure(data), "id": None}
        super()._send_data(data)

    # pygls' bookkeeping

    def _execute_handler(self, msg_id: Any, handler: Any, callback: Any, *args: Any,
                         **kwargs: Any) -> None:
        """pygls' own, plus: the future it stores under `msg_id` goes once it is done
        (pygls keeps one per notification forever)."""
        super()._execute_handler(msg_id, handler, callback, *args, **kwargs)
        future = self._request_futures.get(msg_id)
        if future is not None:
            def forget(done: Any, key: Any = msg_id) -> None:
                if self._request_futures.get(key) is done:
                    del self._request_futures[key]

            future.add_done_callback(forget)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        if self.on_cancel is not None:
            self.on_cancel(msg_id)
        super()._handle_cancel_notification(msg_id)

    def _send_handler_result(self, future: Future[Any], *, msg_id: Any) -> None:
        """Answer a finished request: expected errors without a traceback, unexpected ones
        with a message for a person (the traceback goes to the log only)."""
        self._request_futures.pop(msg_id, None)
        if future.cancelled():
            super()._send_handler_result(future, msg_id=msg_id)
            return
        error = future.exception()
        if error is None:
            self._send_response(msg_id, result=future.result())
        elif isinstance(error, JsonRpcException):
            self.reply_error(msg_id, error)
        else:
            log.error("request %s failed", msg_id, exc_info=error)
            self.reply_error(msg_id, JsonRpcInternalError(
                "the server failed on this request (its log has the details)"
            ))

    def _handle_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        """The client's answer to one of our requests. When we stopped waiting for it (the
        request it answers was cancelled meanwhile, say an applyEdit), it is dropped quietly."""
        future = self._request_futures.get(msg_id)
        if future is not None and future.done():
            del self._request_futures[msg_id]
            log.debug("answer to %s after its request was cancelled: dropped", msg_id)
            return
        super()._handle_response(msg_id, result, error)

    def _check_handler_result(self, future: Future[Any]) -> None:
        if not future.cancelled() and (error := future.exception()) is not None:
            log.warning("notification not handled: %s", _first_line(error),
                        exc_info=None if isinstance(error, ValueError | KeyError) else error)

    # documents live in `documents.py` only

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or "malformed"
    return text.splitlines()[0][:300]
