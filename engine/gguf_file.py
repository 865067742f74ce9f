"""GGUF files read without torch or numpy: the magic bytes, the header, and whether the tensor
data is all there, so a command line refuses a wrong or cut-off file in a fraction of a second
and a load fails with a reason instead of a numpy reshape error.

A GGUF file (llama.cpp's format) is the magic `GGUF`, a version, the tensor and metadata
counts, the metadata key-value pairs, one record per tensor (name, shape, ggml type, offset),
then the tensor data from the next multiple of `general.alignment` (32 unless stated).
All numbers are little-endian.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass

MAGIC = b"GGUF"
VERSIONS = (2, 3)
"""The versions transformers' reader (the `gguf` package) accepts; 1 predates 64-bit counts."""
DEFAULT_ALIGNMENT = 32
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}
"""Metadata value types with a fixed size, by GGUF type id, as struct formats."""
STRING, ARRAY = 8, 9


class GGUFError(ValueError):
    """Why a file is not a usable GGUF file; the caller names the path."""


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    """Bytes from the start of the data section."""


@dataclass(frozen=True)
class Header:
    """What the file says about itself: metadata (arrays left out) and tensor records."""

    version: int
    metadata: dict[str, object]
    tensors: tuple[Tensor, ...]
    data_start: int
    size: int
    """The file's length in bytes."""

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    def data_end(self, sizes: Mapping[int, tuple[int, int]]) -> int:
        """The byte where the last tensor's data ends, from each ggml type's (block size,
        bytes per block); GGUFError for a type not in `sizes`."""
        end = self.data_start
        for tensor in self.tensors:
            if tensor.ggml_type not in sizes:
                raise GGUFError(f"tensor {tensor.name!r} has unknown ggml type {tensor.ggml_type}")
            block, block_bytes = sizes[tensor.ggml_type]
            elements = 1
            for dim in tensor.shape:
                elements *= dim
            end = max(end, self.data_start + tensor.offset + elements // block * block_bytes)
        return end


def has_magic(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as file:
        return file.read(len(MAGIC)) == MAGIC


def read_header(path: str | os.PathLike[str]) -> Header:
    """The header of the GGUF file at `path`; GGUFError when it is not GGUF, is a version the
    loader cannot read, or is cut short (its header, or a tensor that starts past the end)."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < len(MAGIC) or file.read(len(MAGIC)) != MAGIC:
            raise GGUFError("it does not start with the GGUF magic bytes")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                header = _Reader(data).header(size)
            except (struct.error, IndexError):
                raise GGUFError(
                    f"it is truncated: its header runs past the end of the file ({size:,} bytes)"
                ) from None
    last = max((header.data_start + t.offset for t in header.tensors), default=0)
    if last >= size:
        raise GGUFError(f"it is truncated: {size:,} bytes, but its last tensor starts at byte "
                        f"{last:,}")
    return header


class _Reader:
    """Walks the header; struct.error or IndexError when it runs off the end."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.pos = len(MAGIC)

    def scalar(self, fmt: str) -> object:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def uint(self, fmt: str) -> int:
        value = self.scalar(fmt)
        assert isinstance(value, int)
        return value

    def string(self) -> str:
        length = self.uint("<Q")
        end = self.pos + length
        if end > len(self.data):
            raise IndexError("string past the end")
        text = self.data[self.pos : end].decode("utf-8", errors="replace")
        self.pos = end
        return text

    def skip_string(self) -> None:
        length = self.uint("<Q")
        self.pos += length
        if self.pos > len(self.data):
            raise IndexError("string past the end")

    def value(self, kind: int) -> object:
        """A metadata value; arrays are skipped (None), as nothing here needs them."""
        if kind in SCALARS:
            return self.scalar(SCALARS[kind])
        if kind == STRING:
            return self.string()
        if kind != ARRAY:
            raise GGUFError(f"unknown metadata value type {kind} at byte {self.pos}")
        item, count = self.uint("<I"), self.uint("<Q")
        if item in SCALARS:
            self.pos += count * struct.calcsize(SCALARS[item])
            if self.pos > len(self.data):
                raise IndexError("array past the end")
        elif item == STRING:
            for _ in range(count):
                self.skip_string()
        else:
            for _ in range(count):
                self.value(item)
        return None

    def header(self, size: int) -> Header:
        version = self.uint("<I")
        if version not in VERSIONS:
            raise GGUFError(f"it is GGUF version {version}; transformers reads versions "
                            f"{' and '.join(map(str, VERSIONS))}")
        tensor_count, metadata_count = self.uint("<Q"), self.uint("<Q")
        metadata: dict[str, object] = {}
        for _ in range(metadata_count):
            key = self.string()
            value = self.value(self.uint("<I"))
            if value is not None:
                metadata[key] = value
        tensors = []
        for _ in range(tensor_count):
            name = self.string()
            shape = tuple(self.uint("<Q") for _ in range(self.uint("<I")))
            tensors.append(Tensor(name, shape, self.uint("<I"), self.uint("<Q")))
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment < 1:
            raise GGUFError(f"its general.alignment is {alignment!r}")
        data_start = -(-self.pos // alignment) * alignment
        return Header(version, metadata, tuple(tensors), data_start, size)
