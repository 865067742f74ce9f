"""Small GGUF files written by the tests themselves with the `gguf` package's writer: good
headers, cut-off ones, architectures and quantization types transformers cannot read, so the
errors can be checked without any real weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter


def write_gguf(path: Path, architecture: str = "llama",
               quantization: GGMLQuantizationType = GGMLQuantizationType.F32) -> Path:
    """A GGUF file with one 32x4 tensor of `quantization` and a float32 norm after it."""
    writer = GGUFWriter(str(path), architecture)
    block, block_bytes = GGML_QUANT_SIZES[quantization]
    if quantization == GGMLQuantizationType.F32:
        writer.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    else:
        raw = np.zeros((4, 32 // block * block_bytes), np.uint8)
        writer.add_tensor("token_embd.weight", raw, raw_dtype=quantization)
    writer.add_tensor("output_norm.weight", np.ones(32, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def cut(source: Path, target: Path, keep: int) -> Path:
    """`source`'s first `keep` bytes (a negative `keep` drops that many from the end): an
    interrupted download or copy."""
    data = source.read_bytes()
    target.write_bytes(data[:keep])
    return target
