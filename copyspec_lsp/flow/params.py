"""Request parameters of the CopySpec methods and commands, checked with clear messages.

pygls hands custom-method params over as namedtuples; they are turned back into plain data
and structured with lsprotocol's converter, so a malformed request gets an InvalidParams
error that says which field is wrong instead of an internal error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lsprotocol import converters, types

APPLY_MODES = ("stream", "final", "none")
MAX_INSTRUCTION_CHARS = 16_000
"""Longest instruction accepted (a longer one could never fit a prompt anyway)."""
MAX_DIAGNOSTICS = 100
"""Most diagnostics one request may carry."""
MAX_DIAGNOSTIC_CHARS = 4_000
"""Longest diagnostic message accepted."""
CONVERTER = converters.get_converter()


class ParamsError(ValueError):
    """Params that do not match the protocol; the message names the field."""


@dataclass
class RequestParams:
    """Everything `copyspec/refine`, `copyspec/fix` and their commands accept."""

    uri: str
    range: types.Range
    instruction: str = ""
    diagnostics: list[types.Diagnostic] = field(default_factory=list)
    session: str | None = None
    apply: str = "stream"
    max_new_tokens: int | None = None
    max_turns: int = 3


def plain(value: Any) -> Any:
    """Namedtuples (pygls's view of unknown JSON objects) back to dicts, recursively."""
    if hasattr(value, "_asdict"):
        return {key: plain(item) for key, item in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def parse_request(raw: Any) -> RequestParams:
    """Check and structure request params; `uri` may come flat (command args) or nested."""
    data = plain(raw)
    if not isinstance(data, dict):
        raise ParamsError("params must be an object")
    document = data.get("textDocument")
    uri = document.get("uri") if isinstance(document, dict) else data.get("uri")
    if not isinstance(uri, str) or not uri:
        raise ParamsError("textDocument.uri is missing")
    params = RequestParams(uri=uri, range=_structure(data.get("range"), types.Range, "range"))
    params.instruction = _text(_typed(data, "instruction", str, ""), "instruction",
                               MAX_INSTRUCTION_CHARS)
    diagnostics = _typed(data, "diagnostics", list, [])
    if len(diagnostics) > MAX_DIAGNOSTICS:
        raise ParamsError(f"{len(diagnostics)} diagnostics are too many: at most "
                          f"{MAX_DIAGNOSTICS} per request")
    params.diagnostics = [
        _structure(d, types.Diagnostic, f"diagnostics[{i}]")
        for i, d in enumerate(diagnostics)
    ]
    for i, diagnostic in enumerate(params.diagnostics):
        _text(diagnostic.message, f"diagnostics[{i}].message", MAX_DIAGNOSTIC_CHARS)
    params.session = _typed(data, "session", str, None)
    params.apply = _typed(data, "apply", str, "stream")
    if params.apply not in APPLY_MODES:
        raise ParamsError(f"apply must be one of {', '.join(APPLY_MODES)}, got {params.apply!r}")
    params.max_new_tokens = _count(data, "maxNewTokens", None)
    params.max_turns = _count(data, "maxTurns", 3)
    return params


def _text(value: str, name: str, limit: int) -> str:
    """`value`, if it is at most `limit` characters and can be encoded as UTF-8."""
    if len(value) > limit:
        raise ParamsError(f"{name} is {len(value)} characters long: at most {limit} are accepted")
    for i, char in enumerate(value):
        if "\ud800" <= char <= "\udfff":
            raise ParamsError(f"{name} has an unpaired surrogate at character {i}: "
                              "it cannot be encoded as UTF-8")
    return value


def _structure(value: Any, kind: type, name: str) -> Any:
    if value is None:
        raise ParamsError(f"{name} is missing")
    try:
        return CONVERTER.structure(value, kind)
    except Exception as error:  # cattrs raises a family of errors; one clear message suffices
        raise ParamsError(f"{name} is not a valid {kind.__name__}: {value!r}") from error


def _typed(data: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise ParamsError(f"{key} must be a {kind.__name__}, got {value!r}")
    return value


def _count(data: dict[str, Any], key: str, default: int | None) -> int | None:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParamsError(f"{key} must be a whole number of at least 1, got {value!r}")
    return value
