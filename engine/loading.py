"""Offline model and tokenizer loading with device/dtype choice and errors that name the path."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, dequantize
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from engine.config import DTYPES, SMALL_MODEL_PARAMETERS, device_name
from engine.gguf_file import GGUFError, read_header
from engine.paths import (
    ADAPTER_KIND,
    GGUF_KIND,
    ModelLoadError,
    adapter_base,
    default_model_path,
    locate_model,
)

REMOTE_CODE_WARNING = (
    "trust_remote_code is on: the model's own Python code runs with your permissions; "
    "only use it with models whose code you have read"
)
log = logging.getLogger(__name__)


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


def use_cpu_threads(threads: int | None, lm: LoadedModel) -> int:
    """Set torch's CPU thread count for `lm` and return it. None picks one thread for a model
    on the CPU with under SMALL_MODEL_PARAMETERS parameters, and torch's default (one per core)
    otherwise: the demo model ran 232-403 tok/s on one thread and 14-50 tok/s on two on a
    busy 2-core machine, since its passes are too short to split and extra threads wait."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    small = sum(p.numel() for p in lm.model.parameters()) < SMALL_MODEL_PARAMETERS
    if threads is None and lm.device.type == "cpu" and small:
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def quiet_transformers() -> None:
    """Keep the library's noise off the user's terminal (and out of editors' LSP logs): its
    "Loading weights" progress bar, its info/warning logs, and the FutureWarning about the
    `past_key_values` argument name, which says nothing a user can act on. Idempotent."""
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings(
        "ignore", message=r"`past_key_values` is deprecated", category=FutureWarning
    )


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
    """Load a causal LM and tokenizer from a local directory, a GGUF file (dequantized to
    `dtype`) or the local HF cache, offline.

    `device="auto"` places the model with accelerate's device_map when there is a GPU or a
    `max_memory` budget: layers fill the GPUs, then the CPU, then `offload_folder` on disk,
    so a model larger than one device still runs. Any other device takes the whole model."""
    target = str(path) if path is not None else str(default_model_path())
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    location, where = locate_model(target)
    adapter = None
    if where == ADAPTER_KIND:  # the base loads as any model would, then the adapter merges in
        adapter, (location, where) = location, locate_model(adapter_base(Path(location)))
    source: dict[str, str] = {"pretrained_model_name_or_path": location}
    model_options: dict[str, Any] = {}
    if where == GGUF_KIND:
        source, model_options = gguf_source(location)
    quiet_transformers()
    if trust_remote_code:
        log.warning(REMOTE_CODE_WARNING)
    placed = device == "auto" and (torch.cuda.is_available() or max_memory is not None)
    placement = {"device_map": "auto", "max_memory": dict(max_memory) if max_memory else None,
                 "offload_folder": str(offload_folder) if offload_folder else None}
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            **source, local_files_only=True, trust_remote_code=trust_remote_code
        )
        model = AutoModelForCausalLM.from_pretrained(
            **source,
            local_files_only=True,
            trust_remote_code=trust_remote_code,
            dtype=torch_dtype,
            **model_options,
            **(placement if placed else {}),
        )
    except Exception as error:  # transformers raises many types; the user needs one clear one
        raise ModelLoadError(
            f"could not load a causal LM from {where} {location!r}: {_first_line(error)}"
        ) from error
    if adapter is not None:
        model = merge_adapter(model, adapter)
    if placed:
        torch_device = input_device(model)
    else:
        model.to(torch_device)
    model.eval()
    return LoadedModel(model, tokenizer, adapter or location, torch_device, torch_dtype)


def merge_adapter(model: PreTrainedModel, directory: str) -> PreTrainedModel:
    """The model with a LoRA adapter (peft's layout) added into its weights: decoding then costs
    what the base costs, and the engine sees a plain model."""
    from peft import PeftModel  # imported only for adapters: it takes a second

    try:
        with warnings.catch_warnings():  # deprecation notes from peft's calls, nothing to act on
            warnings.simplefilter("ignore")
            return PeftModel.from_pretrained(model, directory).merge_and_unload()
    except Exception as error:  # peft raises many types; the user needs one clear one
        raise ModelLoadError(
            f"could not apply the adapter in {directory!r}: {_first_line(error)}"
        ) from error


def gguf_source(path: str) -> tuple[dict[str, str], dict[str, Any]]:
    """`from_pretrained`'s arguments for a GGUF file once it is known to be readable (for the
    tokenizer and the model, then for the model alone): transformers takes it as a folder and
    a file name in it, and reads the tokenizer and config from its metadata."""
    check_gguf(path)
    # Its GGUF converter draws a bare tqdm bar that ignores `disable_progress_bar`: pointed at
    # the library's own tqdm, which obeys it. Imported here: the module takes ~1 s to import.
    from transformers import modeling_gguf_pytorch_utils

    modeling_gguf_pytorch_utils.tqdm = transformers_logging.tqdm
    source = {"pretrained_model_name_or_path": os.path.dirname(path),
              "gguf_file": os.path.basename(path)}
    # The weights are dequantized to the asked dtype, as transformers 4.x always does. Where
    # 5.x could keep them packed (GgufConfig, with the `kernels` package), it multiplies up to
    # 8 rows with one kernel and more with another, so a verify pass would round differently
    # from one-token decoding and speculation would no longer give greedy's tokens.
    packed = getattr(transformers, "GgufConfig", None)
    return source, {"quantization_config": packed(dequantize=True)} if packed else {}


def check_gguf(path: str) -> None:
    """Refuse, with the reason, a GGUF file that transformers' reader would trip over without
    saying why: tensor data cut short (a numpy reshape error) or a quantization type the gguf
    package cannot dequantize (an error midway through converting the weights)."""
    try:
        header = read_header(path)
        end = header.data_end(GGML_QUANT_SIZES)
    except GGUFError as error:
        raise ModelLoadError(f"GGUF file {path!r}: {error}") from None
    if end > header.size:
        raise ModelLoadError(f"GGUF file {path!r}: it is truncated: {header.size:,} bytes, but "
                             f"its tensor data ends at byte {end:,}")
    unreadable = sorted({GGMLQuantizationType(t.ggml_type).name for t in header.tensors
                         if not dequantizes(t.ggml_type)})
    if unreadable:
        raise ModelLoadError(
            f"GGUF file {path!r}: it holds tensors quantized as {', '.join(unreadable)}, which "
            "transformers cannot dequantize; choose another quantization of the model "
            "(Q4_K_M, Q8_0, F16 and most others load)"
        )


@functools.cache
def dequantizes(ggml_type: int) -> bool:
    """Whether the gguf package, which transformers reads GGUF weights with, can dequantize
    this ggml type: asked of the package itself, one zero block, not from a list kept here."""
    block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)][1]
    try:
        dequantize(np.zeros((1, block_bytes), dtype=np.uint8), GGMLQuantizationType(ggml_type))
    except NotImplementedError:
        return False
    return True


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


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
