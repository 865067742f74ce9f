"""Re-shape a Llama checkpoint to a larger head_dim with the same logits (vLLM's CPU attention
rejects head_dim 40, the built-in model's).

Each head's 40 dims are split into their two rotary halves and placed at the start of the two
new halves (dims 0-19 and 32-51 of 64); the rest are zero. rope_theta becomes theta^(64/40),
so the placed dims keep their rotation frequencies, and q is scaled by sqrt(64/40) to undo the
larger 1/sqrt(head_dim) in attention. Usage: reshape_head_dim.py SRC DST [--head-dim 64]
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def place(weight: torch.Tensor, heads: int, old: int, new: int, scale: float = 1.0):
    """Rows of a q/k/v projection (heads*old, hidden) → (heads*new, hidden)."""
    hidden = weight.shape[1]
    out = torch.zeros(heads, new, hidden, dtype=weight.dtype)
    w = weight.view(heads, old, hidden) * scale
    h_old, h_new = old // 2, new // 2
    out[:, :h_old] = w[:, :h_old]
    out[:, h_new : h_new + h_old] = w[:, h_old:]
    return out.reshape(heads * new, hidden)


def place_columns(weight: torch.Tensor, heads: int, old: int, new: int) -> torch.Tensor:
    """Columns of o_proj (hidden, heads*old) → (hidden, heads*new), same placement as v."""
    return place(weight.T.contiguous(), heads, old, new).T.contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--head-dim", type=int, default=64)
    args = parser.parse_args()
    model = AutoModelForCausalLM.from_pretrained(args.src, dtype=torch.float32)
    config = model.config
    old, new = config.head_dim, args.head_dim
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    state = model.state_dict()
    for key in list(state):
        if key.endswith("q_proj.weight"):
            state[key] = place(state[key], heads, old, new, math.sqrt(new / old))
        elif key.endswith(("k_proj.weight", "v_proj.weight")):
            state[key] = place(state[key], kv_heads, old, new)
        elif key.endswith("o_proj.weight"):
            state[key] = place_columns(state[key], heads, old, new)
    rope = dict(config.rope_parameters or {"rope_type": "default", "rope_theta": 10000.0})
    rope["rope_theta"] = rope["rope_theta"] ** (new / old)
    reshaped_config = config.__class__(**{**config.to_dict(), "head_dim": new,
                                          "rope_parameters": rope})
    reshaped = AutoModelForCausalLM.from_config(reshaped_config, dtype=torch.float32)
    reshaped.load_state_dict(state, strict=False)
    reshaped.tie_weights()
    ids = torch.arange(3, 200).unsqueeze(0)
    with torch.no_grad():
        gap = (model(ids).logits - reshaped(ids).logits).abs().max().item()
    print(f"max logit difference over {ids.shape[1]} tokens: {gap:.2e}")
    if gap > 1e-3:
        raise SystemExit("the re-shaped model does not match; not saved")
    reshaped.save_pretrained(args.dst)
    AutoTokenizer.from_pretrained(args.src).save_pretrained(args.dst)
    for name in ("generation_config.json", "chat_template.jinja"):
        if (args.src / name).exists():
            shutil.copy(args.src / name, args.dst / name)


if __name__ == "__main__":
    main()
