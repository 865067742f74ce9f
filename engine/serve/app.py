"""HTTP: the routes of the service, as one Starlette handler shared by uvicorn and Ray Serve.

POST /v1/chat/completions (streamed or not), GET /v1/models, GET /health and
GET /v1/sessions/{id} (what this replica caches for a session). The session is named by the
`x-session-id` header (the header Ray Serve's ConsistentHashRouter hashes on).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.serve import protocol
from engine.serve.engine import ServeEngine, TurnEnd
from engine.session import PromptTooLongError
from engine.stats import TurnStats

SESSION_HEADER = os.environ.get("RAY_SERVE_SESSION_ID_HEADER_KEY", "x-session-id").lower()
"""Ray Serve reads the same variable to pick the header its router hashes on."""
REPLICA_HEADER = "x-copyspec-replica"


async def dispatch(engine: ServeEngine, request: Request) -> Response:
    """Answer one HTTP request."""
    path = request.url.path.rstrip("/")
    if path == "/v1/chat/completions" and request.method == "POST":
        return await chat_completions(engine, request)
    if path == "/v1/models":
        return JSONResponse({"object": "list", "data": [
            {"id": engine.model_name, "object": "model", "owned_by": protocol.OWNER}
        ]})
    if path == "/health":
        return JSONResponse(engine.health())
    if path.startswith("/v1/sessions/"):
        return JSONResponse(engine.describe(path.removeprefix("/v1/sessions/")))
    return JSONResponse(protocol.error_body(f"no route {request.method} {path}",
                                            "not_found_error", 404), 404)


async def chat_completions(engine: ServeEngine, request: Request) -> Response:
    try:
        chat = protocol.parse_request(json.loads(await request.body() or b"null"))
    except json.JSONDecodeError as error:
        return _error(f"the request body is not JSON: {error}", 400)
    except protocol.BadRequest as error:
        return _bad_request(error)
    session_id = request.headers.get(SESSION_HEADER) or uuid.uuid4().hex
    turn = engine.turn(session_id, chat)
    # The first event comes after the prefill: a prompt too long for the window still gets a
    # plain HTTP 400 rather than an error inside a 200 stream.
    try:
        first = await anext(turn)
    except protocol.BadRequest as error:  # a prediction over the cap: seen once tokenized
        return _bad_request(error)
    except (PromptTooLongError, ValueError) as error:
        return _error(str(error), 400)
    except Exception as error:
        return _error(f"the model failed: {error}", 500, "server_error")
    writer = protocol.ChunkWriter(engine.model_name)
    headers = {REPLICA_HEADER: engine.replica, SESSION_HEADER: session_id}
    if not chat.stream:
        return await _complete(writer, first, turn, headers)
    return StreamingResponse(
        _stream(writer, chat, first, turn), media_type="text/event-stream", headers=headers
    )


async def _stream(
    writer: protocol.ChunkWriter,
    chat: protocol.ChatRequest,
    first: str | TurnEnd,
    turn: AsyncIterator[str | TurnEnd],
) -> AsyncIterator[bytes]:
    try:
        yield writer.role()
        item = first
        while isinstance(item, str):
            yield writer.delta(item)
            item = await anext(turn)
        stats = item.result.stats
        yield writer.finish(protocol.finish_reason(stats.stop_reason), _copyspec(item))
        if chat.include_usage:
            yield writer.usage(_usage(item))
    except Exception as error:  # after the 200: the error travels as an event, as vLLM does
        yield protocol.sse(protocol.error_body(f"the model failed: {error}", "server_error", 500))
    finally:
        await turn.aclose()  # sets the stop event if the turn is still running
    yield protocol.DONE


async def _complete(
    writer: protocol.ChunkWriter,
    first: str | TurnEnd,
    turn: AsyncIterator[str | TurnEnd],
    headers: dict[str, str],
) -> Response:
    item = first
    try:
        while isinstance(item, str):
            item = await anext(turn)
    finally:
        await turn.aclose()
    stats = item.result.stats
    body = writer.completion(
        item.result.text, protocol.finish_reason(stats.stop_reason), _usage(item), _copyspec(item)
    )
    return JSONResponse(body, headers=headers)


def _copyspec(end: TurnEnd) -> dict[str, Any]:
    """Our figures for the finishing chunk: TurnStats plus where the turn ran."""
    return {
        "stats": end.result.stats.to_dict(),
        "replica": end.replica,
        "carried_tokens": end.carried_tokens,
        "prompt_tokens": len(end.result.prompt_ids),
    }


def _usage(end: TurnEnd) -> dict[str, Any]:
    stats: TurnStats = end.result.stats
    prompt = len(end.result.prompt_ids)
    return protocol.usage(prompt, stats.new_tokens, stats.reused_tokens,
                          stats.accepted_prediction_tokens, stats.rejected_prediction_tokens)


def _error(message: str, status: int, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(protocol.error_body(message, kind, status), status)


def _bad_request(error: protocol.BadRequest) -> JSONResponse:
    """HTTP 400; a bad field is named as OpenAI names it (`param`, and a null `code`)."""
    if error.param is None:
        return _error(str(error), 400)
    return JSONResponse(protocol.error_body(str(error), code=None, param=error.param), 400)


def build_app(engine: ServeEngine) -> Starlette:
    """The plain (no Ray) app: every path goes to `dispatch`."""

    async def endpoint(request: Request) -> Response:
        return await dispatch(engine, request)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        engine.close()

    return Starlette(
        routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])], lifespan=lifespan
    )
