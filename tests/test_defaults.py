"""Each default has one definition (engine.config), and the tools agree with it."""

from __future__ import annotations

import pytest
import torch

from copyspec_lsp.__main__ import build_parser
from copyspec_lsp.adapters.settings import Settings
from engine.config import MAX_BLOCK, MAX_NEW_TOKENS, SpecConfig
from engine.loading import LoadedModel, use_cpu_threads
from engine.session import Session

pytestmark = pytest.mark.timeout(120)


def test_the_server_and_the_cli_share_the_engine_defaults() -> None:
    args = build_parser().parse_args([])
    settings = Settings()
    assert (args.gamma, args.block, args.max_new_tokens) == (
        SpecConfig.gamma, SpecConfig.block, MAX_NEW_TOKENS)
    assert (settings.gamma, settings.block, settings.max_new_tokens) == (
        SpecConfig.gamma, SpecConfig.block, MAX_NEW_TOKENS)


def test_a_block_above_the_adaptive_ceiling_is_valid_and_lossless(
    copying_llama: LoadedModel,
) -> None:
    """The server builds its SpecConfig from the `gamma` and `block` settings alone; a block
    over MAX_BLOCK used to fail every request ("max_block (64) must be at least block")."""
    settings, problems = Settings().update({"block": MAX_BLOCK + 36})
    assert problems == []
    spec = SpecConfig("copy", gamma=settings.gamma, block=settings.block)  # as flow/refine.py does
    assert spec.max_block == settings.block
    prompt = "def add(a, b):\n    return a + b\n" * 3
    wide = Session(copying_llama, spec).send(prompt, max_new_tokens=40)
    plain = Session(copying_llama, SpecConfig("greedy")).send(prompt, max_new_tokens=40)
    assert wide.token_ids == plain.token_ids
    assert wide.stats.copied_tokens > 0


def test_small_cpu_models_default_to_one_thread(copying_llama: LoadedModel) -> None:
    """The default measured for the built-in model: on one thread it ran 232-403 tok/s, on two
    14-50 tok/s (a busy 2-core machine). An explicit count always wins."""
    try:
        torch.set_num_threads(2)
        assert use_cpu_threads(None, copying_llama) == 1
        assert use_cpu_threads(2, copying_llama) == 2
        with pytest.raises(ValueError, match="at least 1"):
            use_cpu_threads(0, copying_llama)
    finally:
        torch.set_num_threads(1)
