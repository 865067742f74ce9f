"""Typed, defaulted server settings, validated once wherever they come from.

The same camelCase keys arrive as CLI flags, `initializationOptions` and the "copyspec"
section of `workspace/didChangeConfiguration`. A bad value never stops the server: it is
reported (the caller shows it with `window/showMessage`) and the default is used instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.config import COMPILE, COMPILE_CHOICES, DTYPES, MAX_NEW_TOKENS, SpecConfig, device_name

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MODEL_KEYS = (
    "model", "device", "dtype", "trustRemoteCode", "draftModel", "threads", "compile", "server",
)
"""Settings whose change needs the model loaded again (threads and compiling are set when it
loads)."""
REMOTE_KEYS = ("prediction",)
"""Settings the remote model carries: with `server` set, a change makes it again (no weights
to load)."""
PREDICTION_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Settings:
    """Everything a user can configure; field names are the camelCase keys in snake_case."""

    model: str | None = None
    """Local model directory, GGUF file or cached HF id; None means the default model
    (`engine.paths.default_model_path`)."""
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    """Run Python code shipped with the model: off unless the user has read that code."""
    draft_model: str | None = None
    """A small model (directory, GGUF file or cached HF id) sharing the tokenizer: drafts
    tokens when there is nothing to copy."""
    threads: int | None = None
    """torch CPU threads; None: 1 for a small model on the CPU, else one per core."""
    gamma: int = SpecConfig.gamma
    """γ: tokens in a copy lookup key."""
    block: int = SpecConfig.block
    """K: tokens proposed per copy attempt."""
    cost_aware: bool = SpecConfig.cost_aware
    """Cut each draft to the length worth its pass on this device (`SpecConfig.cost_aware`);
    off verifies every draft at the proposer's own length. Conversations started after a
    change use it."""
    compile: str = COMPILE
    """Decode with a static KV cache and torch.compile (`engine.compiled.use_compile`, target
    and draft model): `auto` where measuring showed it pays, `on`, `off`."""
    max_new_tokens: int = MAX_NEW_TOKENS
    check_command: tuple[str, ...] | None = None
    """Argument list run after each fix attempt; `{file}` is a temp copy of the document."""
    check_timeout: float = 30.0
    load_timeout: float = 300.0
    """Seconds a request waits for the model to load before it fails."""
    log_level: str = "WARNING"
    server: str | None = None
    """URL of an OpenAI-compatible chat-completions server (a `copyspec serve` pool, vLLM);
    None runs the model in this process."""
    prediction: str = "auto"
    """When a turn gets the code being rewritten as OpenAI's Predicted Outputs field
    `prediction`: `auto` to servers known to take it (`copyspec serve`, api.openai.com) and to
    the in-process engine, `on` to any server, `off` never. It speeds the answer up and never
    changes it."""

    def update(self, raw: Mapping[str, Any]) -> tuple[Settings, list[str]]:
        """A copy with the valid values of `raw` applied, and one message per bad value."""
        if not isinstance(raw, Mapping):
            return self, [f"settings must be an object, got {type(raw).__name__}"]
        changes: dict[str, Any] = {}
        problems: list[str] = []
        for key, value in raw.items():
            field = _snake(key)
            if field not in VALIDATORS:
                problems.append(f"unknown setting {key!r} ignored")
                continue
            try:
                changes[field] = VALIDATORS[field](value)
            except (TypeError, ValueError) as error:
                default = getattr(Settings(), field)
                changes[field] = default
                problems.append(f"bad value for {key!r}: {error}; using the default {default!r}")
        return dataclasses.replace(self, **changes), problems

    def needs_reload(self, other: Settings) -> bool:
        """Whether going from `self` to `other` changes which model is loaded or where, or
        how the remote one is asked."""
        keys = MODEL_KEYS + REMOTE_KEYS if other.server else MODEL_KEYS
        return any(getattr(self, _snake(k)) != getattr(other, _snake(k)) for k in keys)


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _optional_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _optional_url(value: Any) -> str | None:
    url = _optional_text(value)
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    return url


def _choice(options: tuple[str, ...], fold: Callable[[str], str] = str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or fold(value) not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return fold(value)

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    return value


def _optional_positive_int(value: Any) -> int | None:
    return None if value is None else _positive_int(value)


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"expected a number above 0, got {value!r}")
    return float(value)


def _command(value: Any) -> tuple[str, ...] | None:
    """An argument list, never a shell string: a string here would invite shell quoting."""
    if value is None or value == []:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(a, str) for a in value):
        raise ValueError(f"expected a list of strings (an argument list), got {value!r}")
    return tuple(value)


VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "model": _optional_text,
    "device": device_name,
    "dtype": _choice(DTYPES),
    "trust_remote_code": _bool,
    "draft_model": _optional_text,
    "threads": _optional_positive_int,
    "gamma": _positive_int,
    "block": _positive_int,
    "cost_aware": _bool,
    "compile": _choice(COMPILE_CHOICES, str.lower),
    "max_new_tokens": _positive_int,
    "check_command": _command,
    "check_timeout": _positive_number,
    "load_timeout": _positive_number,
    "log_level": _choice(LOG_LEVELS, str.upper),
    "server": _optional_url,
    "prediction": _choice(PREDICTION_MODES, str.lower),
}
