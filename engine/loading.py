"""Offline model and tokenizer loading with device/dtype choice and errors that name the path."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from engine.config import DTYPES, device_name

HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
REMOTE_CODE_WARNING = (
    "trust_remote_code is on: the model's own Python code runs with your permissions; "
    "only use it with models whose code you have read"
)
log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names what was tried and why."""


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer and where it lives."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: str
    device: torch.device
    dtype: torch.dtype

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Every id that ends generation: the generation config's EOS ids and the tokenizer's."""
        ids: set[int] = set()
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif eos is not None:
            ids.update(int(i) for i in eos)
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return frozenset(ids)

    @property
    def context_window(self) -> int | None:
        """The model's maximum sequence length, when its config states one."""
        return getattr(self.model.config, "max_position_embeddings", None)


def default_model_path() -> Path:
    """The built-in demonstration model shipped inside the package."""
    return Path(str(resources.files("engine") / "models" / "default"))


def default_draft_model_path() -> Path:
    """The built-in draft model that shares the default model's tokenizer."""
    return Path(str(resources.files("engine") / "models" / "draft"))


def use_cpu_threads(threads: int | None) -> None:
    """Set torch's CPU thread count (None keeps torch's default, one per core).

    Small models on a busy machine often run fastest on one thread: more threads then wait
    on each other and on the other jobs.
    """
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def resolve_device(device: str) -> torch.device:
    """The device a model (or, for `auto`, its input layer) goes to; refuses absent ones."""
    try:
        device_name(device)
    except ValueError as error:
        raise ModelLoadError(str(error)) from None
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ModelLoadError(f"device {device!r} was asked for, but torch sees no CUDA GPU")
        if chosen.index is not None and chosen.index >= count:
            raise ModelLoadError(f"device {device!r} was asked for, but torch sees {count} GPU(s)")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' was asked for, but torch sees no Apple GPU")
    return chosen


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """float32 on CPU and bfloat16 on CUDA unless asked otherwise."""
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def load_model(
    path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    max_memory: Mapping[int | str, int | str] | None = None,
    offload_folder: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Load a causal LM and tokenizer from a local directory or the local HF cache, offline.

    `device="auto"` places the model with accelerate's device_map when there is a GPU or a
    `max_memory` budget: layers fill the GPUs, then the CPU, then `offload_folder` on disk,
    so a model larger than one device still runs. Any other device takes the whole model."""
    target = str(path) if path is not None else str(default_model_path())
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    expanded = Path(target).expanduser()
    if expanded.is_dir():
        location, where = str(expanded), "directory"
    elif HUB_ID.fullmatch(target):
        location, where = target, "HF cache entry (offline, local files only)"
    else:
        raise ModelLoadError(f"model path {target!r} does not exist (no such directory)")
    if trust_remote_code:
        log.warning(REMOTE_CODE_WARNING)
    placed = device == "auto" and (torch.cuda.is_available() or max_memory is not None)
    placement = {"device_map": "auto", "max_memory": dict(max_memory) if max_memory else None,
                 "offload_folder": str(offload_folder) if offload_folder else None}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            location, local_files_only=True, trust_remote_code=trust_remote_code
        )
        model = AutoModelForCausalLM.from_pretrained(
            location,
            local_files_only=True,
            trust_remote_code=trust_remote_code,
            dtype=torch_dtype,
            **(placement if placed else {}),
        )
    except Exception as error:  # transformers raises many types; the user needs one clear one
        raise ModelLoadError(
            f"could not load a causal LM from {where} {location!r}: {_first_line(error)}"
        ) from error
    if placed:
        torch_device = input_device(model)
    else:
        model.to(torch_device)
    model.eval()
    return LoadedModel(model, tokenizer, location, torch_device, torch_dtype)


def input_device(model: PreTrainedModel) -> torch.device:
    """Where token ids go for a model that accelerate spread over devices: the device its
    embedding layer runs on (a GPU index, `mps`, or the CPU for CPU- and disk-held layers)."""
    placement = getattr(model, "hf_device_map", None)
    if not placement:
        return model.device  # it all fitted on one device
    embedding = model.get_input_embeddings()
    names = [name for name, module in model.named_modules() if module is embedding]
    spot = next((where for name, where in placement.items()
                 if names and (names[0] == name or names[0].startswith(f"{name}.") or not name)),
                next(iter(placement.values())))
    if isinstance(spot, int):
        return torch.device("cuda", spot)
    return torch.device("cpu" if spot in ("cpu", "disk", "meta") else spot)


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
