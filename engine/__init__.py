"""CopySpec engine: lossless copy-speculative decoding on transformers causal LMs.

The engine knows nothing about LSP. Data flows one way: a `Session` renders a chat turn,
a `SequenceState` keeps tokens, KV cache and γ-gram index in lockstep, and `decode` runs
propose → verify → accept → crop until a stop condition.
"""

__version__ = "0.1.0"
