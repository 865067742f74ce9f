"""The OpenAI chat-completions wire format: request parsing and streamed chunk encoding.

Only what a chat client sends is read (messages, max_tokens, temperature, top_p, top_k, seed,
stop, stream, stream_options, prediction); anything else is ignored, as OpenAI-compatible
servers do. Our own figures ride in a `copyspec` field of the finishing chunk, which other
clients ignore; our model list says `owned_by: copyspec`, which is how clients recognise us.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.config import SamplingConfig

DEFAULT_MAX_TOKENS = 512
ROLES = ("system", "user", "assistant")
OWNER = "copyspec"
"""`owned_by` of our models in GET /v1/models: clients that see it know the server is ours."""
PREDICTION = "prediction"


class BadRequest(ValueError):
    """A request the service cannot serve as sent; answered with HTTP 400 and this message,
    naming the request field at fault as OpenAI's `param` when there is one."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completions request, validated."""

    messages: tuple[dict[str, str], ...]
    max_tokens: int = DEFAULT_MAX_TOKENS
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    prediction: str | None = None
    """OpenAI's Predicted Outputs: text the answer is expected to resemble, as one string."""


def parse_request(body: Any) -> ChatRequest:
    """The request in `body` (decoded JSON); BadRequest names the first bad field."""
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    parsed = tuple(_message(m, i) for i, m in enumerate(messages))
    if parsed[-1]["role"] != "user":
        raise BadRequest("the last message must be the user's")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or DEFAULT_MAX_TOKENS
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest(f"'max_tokens' must be a whole number of at least 1, got {max_tokens!r}")
    try:
        sampling = SamplingConfig(
            temperature=float(_number(body, "temperature", 0.0)),
            top_p=float(_number(body, "top_p", 1.0)),
            top_k=max(0, int(_number(body, "top_k", 0))),
            seed=int(_number(body, "seed", 0)),
        )
    except ValueError as error:
        raise BadRequest(str(error)) from None
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest("'stop' must be a string or a list of non-empty strings")
    options = body.get("stream_options") or {}
    return ChatRequest(
        messages=parsed,
        max_tokens=max_tokens,
        sampling=sampling,
        stop=tuple(stop),
        stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(options, Mapping) and options.get("include_usage")),
        prediction=_prediction(body.get(PREDICTION)),
    )


def _prediction(raw: Any) -> str | None:
    """`{type: "content", content: string | [{type: "text", text: string}, ...]}` as OpenAI
    documents it, its text parts joined; None when the request has none."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise BadRequest("'prediction' must be an object {\"type\": \"content\", "
                         f"\"content\": ...}}, got {_kind(raw)}", PREDICTION)
    if raw.get("type") != "content":
        raise BadRequest(f"'prediction.type' must be 'content', got {raw.get('type')!r}",
                         PREDICTION)
    content = raw.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest("'prediction.content' must be a string or a list of text parts, got "
                         f"{_kind(content)}", PREDICTION)
    texts = []
    for i, part in enumerate(content):
        where = f"prediction.content[{i}]"
        if not isinstance(part, Mapping):
            raise BadRequest(f"'{where}' must be a text part {{\"type\": \"text\", \"text\": "
                             f"string}}, got {_kind(part)}", PREDICTION)
        if part.get("type") != "text":
            raise BadRequest(f"'{where}' is a part of type {part.get('type')!r}: a prediction "
                             "takes text parts only", PREDICTION)
        if not isinstance(part.get("text"), str):
            raise BadRequest(f"'{where}.text' must be a string, got {_kind(part.get('text'))}",
                             PREDICTION)
        texts.append(part["text"])
    return "".join(texts)


def _kind(value: Any) -> str:
    """A JSON value's type, as the error messages name it."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _message(raw: Any, index: int) -> dict[str, str]:
    if not isinstance(raw, Mapping) or raw.get("role") not in ROLES:
        raise BadRequest(f"message {index} needs a 'role' of {', '.join(ROLES)}")
    content = raw.get("content")
    if isinstance(content, list):  # content parts: only text parts exist for a code model
        content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    if not isinstance(content, str):
        raise BadRequest(f"message {index} needs a string 'content'")
    return {"role": raw["role"], "content": content}


def _number(body: Mapping[str, Any], key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"'{key}' must be a number, got {value!r}")
    return value


class ChunkWriter:
    """Encodes one response's stream: `chat.completion.chunk` events, then `[DONE]`."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.model = model
        self.created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }

    def role(self) -> bytes:
        return sse(self._chunk([_choice({"role": "assistant", "content": ""})]))

    def delta(self, text: str) -> bytes:
        return sse(self._chunk([_choice({"content": text})]))

    def finish(self, reason: str, copyspec: dict[str, Any]) -> bytes:
        return sse(self._chunk([_choice({}, reason)], copyspec=copyspec))

    def usage(self, usage: dict[str, Any]) -> bytes:
        return sse(self._chunk([], usage=usage))

    def completion(
        self, text: str, reason: str, usage: dict[str, Any], copyspec: dict[str, Any]
    ) -> dict[str, Any]:
        """The non-streamed answer (`stream: false`)."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": reason,
            }],
            "usage": usage,
            "copyspec": copyspec,
        }


def _choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


DONE = sse("[DONE]")


def error_body(
    message: str, kind: str = "invalid_request_error", code: int | None = 400,
    param: str | None = None,
) -> dict:
    """OpenAI's error shape, which vLLM also answers with (its `code` the HTTP status)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def finish_reason(stop_reason: str) -> str:
    """OpenAI's finish_reason for the engine's stop reason."""
    return "length" if stop_reason == "length" else "stop"


def usage(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int, accepted_prediction: int,
    rejected_prediction: int,
) -> dict[str, Any]:
    """OpenAI usage, with cached prompt tokens where vLLM reports its prefix-cache hits, and
    the predicted output's tokens that were verified and kept, or thrown away (docs/
    predicted-outputs.md: unlike OpenAI's, our completion_tokens leave the rejected ones out)."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        "completion_tokens_details": {
            "accepted_prediction_tokens": accepted_prediction,
            "rejected_prediction_tokens": rejected_prediction,
        },
    }
