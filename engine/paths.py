"""Where models are: the ones shipped in the package, and what `--model X` names (a model
directory, a GGUF file or a cached HF id), checked without torch.

Kept free of torch and transformers so the command lines can refuse a bad path in well under a
second, before anything slow is imported.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

from engine.fetch import WEIGHTS
from engine.gguf_file import GGUFError, has_magic, read_header

HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
GGUF_KIND = "GGUF file"
ADAPTER_KIND = "adapter directory"
ADAPTER_CONFIG = "adapter_config.json"
"""A LoRA adapter directory (peft's layout) names the model it adapts in this file's
`base_model_name_or_path`: a name `python -m engine.fetch` knows, or a path."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names what was tried and why."""


def default_model_path() -> Path:
    """The model used when none is named: SmolLM2-135M-Instruct with our refinement adapter,
    the smallest model here whose edits are usually right (its base weights are fetched once by
    `python -m engine.fetch smollm2`)."""
    return refine_adapter_path()


def refine_adapter_path() -> Path:
    """Our LoRA adapter that makes SmolLM2-135M-Instruct refine code (docs/adapter.md)."""
    return Path(str(resources.files("engine") / "models" / "smollm2-refine"))


def demo_model_path() -> Path:
    """The 2M-parameter demo model shipped in the package: hundreds of tokens a second on one
    core, so the tests can drive every path with real forwards; its edits are usually wrong."""
    return Path(str(resources.files("engine") / "models" / "demo"))


def demo_draft_model_path() -> Path:
    """The demo draft model, which shares only the demo model's tokenizer."""
    return Path(str(resources.files("engine") / "models" / "draft"))


def is_demo_model(name: str | os.PathLike[str] | None) -> bool:
    """Whether `name` is the demo model, the one target the demo draft can serve."""
    return name is not None and Path(name).expanduser().resolve() == demo_model_path().resolve()


def hub_cache() -> Path:
    """The Hugging Face hub cache directory, as huggingface_hub itself resolves it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface" / "hub"


def gguf_kind(target: str, path: Path) -> str:
    """GGUF_KIND when `path` is a GGUF file whose header is complete (any name: Ollama's blobs
    have no extension); ModelLoadError naming `target` and what is wrong otherwise."""
    try:
        if not has_magic(path):
            raise ModelLoadError(
                f"model path {target!r} is a file but not a GGUF file (it does not start with "
                "the GGUF magic bytes); a model is a Hugging Face model directory or a GGUF file"
            )
        read_header(path)
    except GGUFError as error:
        raise ModelLoadError(f"GGUF file {target!r}: {error}") from None
    except OSError as error:
        raise ModelLoadError(f"cannot read {target!r}: {error.strerror or error}") from None
    return GGUF_KIND


def adapter_base(directory: Path) -> str:
    """Where the base model of an adapter directory is (`base_location` of what its
    ADAPTER_CONFIG names)."""
    try:
        base = json.loads((directory / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"adapter directory {str(directory)!r}: no base model in "
                             f"{ADAPTER_CONFIG} ({error})") from None
    return base_location(base, directory)


def base_location(base: str, directory: Path) -> str:
    """A base model given as a name `python -m engine.fetch` knows (its fetched file) or a path
    (relative to `directory`); ModelLoadError naming the fetch command when the fetched weights
    are missing."""
    if base in WEIGHTS:
        if not WEIGHTS[base].path.is_file():
            raise ModelLoadError(f"the base weights {base!r} are missing; fetch them once with: "
                                 f"python -m engine.fetch {base}")
        return str(WEIGHTS[base].path)
    return str(directory / Path(base).expanduser())


def locate_model(target: str) -> tuple[str, str]:
    """The location to load `target` from and what kind it is ("directory", GGUF_KIND,
    ADAPTER_KIND or a cache entry); raises ModelLoadError naming the path when it cannot be a
    model."""
    expanded = Path(target).expanduser()
    if expanded.is_dir():
        if (expanded / ADAPTER_CONFIG).is_file() and not (expanded / "config.json").is_file():
            locate_model(adapter_base(expanded))  # the base must be a model too
            return str(expanded), ADAPTER_KIND
        if not (expanded / "config.json").is_file():
            ggufs = sorted(expanded.glob("*.gguf"))
            raise ModelLoadError(
                f"model directory {target!r} has no config.json (expected a Hugging Face model "
                "directory: config.json, weights and tokenizer files)"
                + (f"; it holds GGUF files: name one, e.g. {str(ggufs[0])!r}" if ggufs else "")
            )
        return str(expanded), "directory"
    if expanded.is_file():
        return str(expanded), gguf_kind(target, expanded)
    if expanded.exists():
        raise ModelLoadError(f"model path {target!r} is neither a model directory nor a file")
    if HUB_ID.fullmatch(target):
        entry = hub_cache() / f"models--{target.replace('/', '--')}"
        if entry.is_dir():
            return target, "HF cache entry (offline, local files only)"
        raise ModelLoadError(
            f"model {target!r} is not a directory and not in the local Hugging Face cache "
            f"({entry.parent}); nothing is downloaded"
        )
    raise ModelLoadError(f"model path {target!r} does not exist (no such directory or file)")
