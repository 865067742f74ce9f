"""Tiny random-initialised models and a tiny BPE tokenizer, built by the tests themselves.

Weights get a large init scale so logits are well separated: a near-tie flipped by float
rounding is not a bug, but a test that hides real bugs is.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from engine.loading import LoadedModel

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
PRINTABLE = [c for c in string.printable if c not in "\r\x0b\x0c"]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer: any token sequence decodes and re-encodes to itself, so
    multi-turn tests see exact prefix reuse even when a random model emits gibberish."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + PRINTABLE)}
    chars = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    chars.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=chars, eos_token="<|end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def model_config(arch: str, vocab_size: int, eos_id: int):
    common = {"vocab_size": vocab_size, "eos_token_id": eos_id, "bos_token_id": eos_id}
    if arch == "llama":
        return LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, **common,
        )
    if arch == "qwen2":
        return Qwen2Config(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, **common,
        )
    if arch == "gpt2":
        return GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=1024, **common)
    raise ValueError(arch)


def build_model(
    arch: str, tokenizer: PreTrainedTokenizerFast, seed: int = 0, mixing: float = 0.2
):
    """A random model with well-separated logits that falls into copyable cycles.

    Embeddings and the output head get unit-scale weights, so logits are far from ties; the
    attention and MLP weights get the smaller `mixing` scale, so the next token depends mostly
    on the current one (greedy output cycles and copying pays) while context can still
    overrule a copy, which exercises rejection."""
    torch.manual_seed(seed)
    config = model_config(arch, len(tokenizer), tokenizer.eos_token_id)
    model = AutoModelForCausalLM.from_config(config)
    outer = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 1.0 if id(parameter) in outer else mixing)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    return model.eval()


def loaded(arch: str, seed: int = 0, mixing: float = 0.2) -> LoadedModel:
    tokenizer = build_tokenizer()
    model = build_model(arch, tokenizer, seed, mixing)
    return LoadedModel(model, tokenizer, f"tiny-{arch}", torch.device("cpu"), torch.float32)


def save(lm: LoadedModel, directory: Path) -> Path:
    """Write a tiny model to disk, as a user's local model directory would look."""
    lm.model.save_pretrained(directory)
    lm.tokenizer.save_pretrained(directory)
    return directory
