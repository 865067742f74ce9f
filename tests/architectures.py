"""Tiny random-init models of the popular open model families, built from their real configs.

Each family is a model type plus the few fields that make it tiny (hidden 64, 2 layers, the
character-level test vocabulary) and, where the family has one, a sliding window shorter than
the test prompts, so that windowed attention is really exercised. Used by
tests/test_architectures.py and scripts/measure_divergence.py, on any device and dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from engine.loading import LoadedModel

from tiny_models import build_tokenizer

WINDOW = 24
"""Sliding window of the windowed families, in tokens: far shorter than the test prompts."""

ATTENTION = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "max_position_embeddings": 1024,
}
MOE = {"num_local_experts": 4, "num_experts_per_tok": 2}


@dataclass(frozen=True)
class Family:
    """A model type and the config fields that make a tiny member of it."""

    model_type: str
    fields: dict[str, Any] = field(default_factory=dict)
    recurrent: bool = False
    """Its cache holds recurrent (SSM / linear-attention / conv) state, which cannot be cropped."""


FAMILIES: dict[str, Family] = {
    "llama": Family("llama", ATTENTION),
    "mistral": Family("mistral", {**ATTENTION, "sliding_window": None}),
    "mistral-sliding": Family("mistral", {**ATTENTION, "sliding_window": WINDOW}),
    "qwen2": Family("qwen2", ATTENTION),
    "qwen2-sliding": Family("qwen2", {
        **ATTENTION, "use_sliding_window": True, "sliding_window": WINDOW,
        "max_window_layers": 1,
    }),
    "qwen3": Family("qwen3", ATTENTION),
    "qwen3-moe": Family("qwen3_moe", {
        **ATTENTION, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
        "decoder_sparse_step": 1,
    }),
    "gemma": Family("gemma", ATTENTION),
    "gemma2": Family("gemma2", {**ATTENTION, "sliding_window": WINDOW}),
    "gemma3": Family("gemma3_text", {**ATTENTION, "sliding_window": WINDOW,
                                     "sliding_window_pattern": 2}),
    "phi3": Family("phi3", {**ATTENTION, "sliding_window": None}),
    "phi3-sliding": Family("phi3", {**ATTENTION, "sliding_window": WINDOW}),
    "starcoder2": Family("starcoder2", {**ATTENTION, "sliding_window": None}),
    "starcoder2-sliding": Family("starcoder2", {**ATTENTION, "sliding_window": WINDOW}),
    "gpt-neox": Family("gpt_neox", {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 1024,
    }),
    "gpt2": Family("gpt2", {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 1024}),
    "olmo2": Family("olmo2", ATTENTION),
    "olmo3": Family("olmo3", {**ATTENTION, "sliding_window": WINDOW}),
    "granite": Family("granite", ATTENTION),
    # Cohere's default logit_scale of 1/16 flattens a random model's logits to near-uniform.
    "cohere": Family("cohere", {**ATTENTION, "logit_scale": 1.0}),
    "cohere2": Family("cohere2", {**ATTENTION, "sliding_window": WINDOW,
                                  "sliding_window_pattern": 2, "logit_scale": 1.0}),
    "deepseek-v3": Family("deepseek_v3", {
        **ATTENTION, "head_dim": 8, "num_key_value_heads": 4, "moe_intermediate_size": 32,
        "n_routed_experts": 4,
        "n_shared_experts": 1,
        "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1, "first_k_dense_replace": 1,
        "q_lora_rank": 32, "kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8,
        "v_head_dim": 16,
    }),
    "mixtral": Family("mixtral", {**ATTENTION, **MOE, "sliding_window": None}),
    "gpt-oss": Family("gpt_oss", {**ATTENTION, **MOE, "sliding_window": WINDOW}),
    "mamba": Family("mamba", {"hidden_size": 64, "state_size": 8, "num_hidden_layers": 2},
                    recurrent=True),
    "jamba": Family("jamba", {
        **ATTENTION, **MOE, "attn_layer_period": 2, "attn_layer_offset": 1,
        "expert_layer_period": 2, "expert_layer_offset": 1, "mamba_d_state": 8,
        "use_mamba_kernels": False,
    }, recurrent=True),
    "falcon-h1": Family("falcon_h1", {
        **ATTENTION, "mamba_d_ssm": 64, "mamba_n_heads": 4, "mamba_d_head": 16,
        "mamba_d_state": 8, "mamba_n_groups": 1,
    }, recurrent=True),
    "qwen3-next": Family("qwen3_next", {
        **ATTENTION, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 32, "linear_num_key_heads": 2,
        "linear_num_value_heads": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
        "layer_types": ["linear_attention", "full_attention"],
    }, recurrent=True),
    "lfm2": Family("lfm2", {
        **ATTENTION, "layer_types": ["conv", "full_attention"], "block_dim": 64,
        "block_ff_dim": 128,
    }, recurrent=True),
}
ATTENTION_FAMILIES = tuple(name for name, family in FAMILIES.items() if not family.recurrent)
RECURRENT_FAMILIES = tuple(name for name, family in FAMILIES.items() if family.recurrent)


def tiny_config(name: str, tokenizer: PreTrainedTokenizerFast):
    family = FAMILIES[name]
    eos = tokenizer.eos_token_id
    # Untied heads: with tied embeddings a random model mostly predicts its own input token.
    ids = {"vocab_size": len(tokenizer), "eos_token_id": eos, "bos_token_id": eos,
           "pad_token_id": eos, "tie_word_embeddings": False}
    return AutoConfig.for_model(family.model_type, **family.fields, **ids)


def tiny(
    name: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    mixing: float = 0.15,
) -> LoadedModel:
    """A tiny random `name` model whose logits are well separated and whose greedy output falls
    into copyable cycles that context can still break (see tiny_models.build_model)."""
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(name, tokenizer))
    outer = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    with torch.no_grad():
        for pname, parameter in model.named_parameters():
            if parameter.dim() >= 2 and "A_log" not in pname and "conv" not in pname:
                parameter.normal_(0.0, 1.0 if id(parameter) in outer else mixing)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedModel(model, tokenizer, f"tiny-{name}", torch.device(device), dtype)
