"""Random-initialised models with the shapes of real ones: a forward's cost needs no weights.

The configs are Qwen2.5-Coder's published `config.json` values (hidden size, layers, heads,
KV heads, MLP width, vocabulary, tied embeddings); values are random, so only timings mean
anything. `builtin` names the demo model itself: tiny, for runs that only prove the
plumbing (the GPU check's dry run, the tests).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from engine.paths import demo_model_path

if TYPE_CHECKING:  # torch-heavy: the command line lists the shapes before importing it
    import torch
    from transformers import PreTrainedModel, Qwen2Config

SHAPES: dict[str, dict[str, object]] = {
    "qwen2.5-coder-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                               num_attention_heads=14, num_key_value_heads=2,
                               vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-coder-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                               num_attention_heads=12, num_key_value_heads=2,
                               vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-coder-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                             num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                             tie_word_embeddings=False),
    "qwen2.5-coder-32b": dict(hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                              num_attention_heads=40, num_key_value_heads=8, vocab_size=152064,
                              tie_word_embeddings=False),
}
COMMON = dict(max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
              hidden_act="silu", use_sliding_window=False)


BUILTIN = "builtin"
NAMES = (*sorted(SHAPES), BUILTIN)
"""What `--model-shape` accepts: the random-init shapes and the demo model."""


class UnknownShape(ValueError):
    """A shape name outside NAMES; the message lists them."""


def config(name: str) -> Qwen2Config:
    from transformers import Qwen2Config

    if name not in SHAPES:
        raise UnknownShape(f"unknown model shape {name!r}; choose one of {', '.join(NAMES)}")
    return Qwen2Config(**COMMON, **SHAPES[name])


def vocab_size(name: str) -> int:
    """The shape's vocabulary, read without building it: a tokenizer's ids must stay below it."""
    if name == BUILTIN:
        text = (demo_model_path() / "config.json").read_text(encoding="utf-8")
        return int(json.loads(text)["vocab_size"])
    return int(config(name).vocab_size)


def build(name: str, device: torch.device, dtype: torch.dtype) -> PreTrainedModel:
    """The model, created directly on `device` in `dtype`, in eval mode, with SDPA attention."""
    import torch
    from transformers import Qwen2ForCausalLM

    cfg = config(name)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()
