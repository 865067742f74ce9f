"""Eleven real chat templates (exact Jinja text, sources in tests/chat_templates.py): each
renders, keeps the system prompt where it stays put, and re-prefills only the new turn."""

from __future__ import annotations

import pytest
import torch

from engine.chat import ChatFormat, chat_format, render_ids
from engine.prompt_format import SYSTEM_PROMPT

from chat_templates import TEMPLATES, measure, template_text, template_tokenizer

REFUSE_SYSTEM = {"gemma2", "starcoder2-instruct"}
MOVE_SYSTEM = {"mistral-nemo"}  # glues the system prompt to the last user message
THINKING = {"qwen3"}


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", TEMPLATES)
def test_the_template_renders_with_the_instructions_before_the_first_request(name: str) -> None:
    tokenizer = template_tokenizer(name)
    fmt = chat_format(tokenizer)
    assert fmt.fold_system == (name in REFUSE_SYSTEM | MOVE_SYSTEM)
    assert fmt.takes_thinking == (name in THINKING)
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "First request."},
        {"role": "assistant", "content": "<think>\nhm\n</think>\n\nFirst answer."},
        {"role": "user", "content": "Second request."},
    ]
    text = tokenizer.decode(render_ids(tokenizer, messages))
    assert text.count(SYSTEM_PROMPT) == 1
    assert text.index(SYSTEM_PROMPT) < text.index("First request.") < text.index("Second")
    assert "hm" not in text and "First answer." in text
    if name in THINKING:
        assert text.endswith("<think>\n\n</think>\n\n")


@pytest.mark.timeout(10)
def test_refusing_templates_raise_without_folding() -> None:
    """The detection is real: the raw templates do refuse a system role."""
    from jinja2 import TemplateError

    for name in REFUSE_SYSTEM:
        tokenizer = template_tokenizer(name)
        with pytest.raises(TemplateError):
            ChatFormat(template_text(name)).render(
                tokenizer, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
            )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", TEMPLATES)
def test_later_turns_prefill_only_the_new_message(name: str) -> None:
    """Tolerance 0: the character-level tokenizer re-encodes every answer to the same ids, so
    any token over the ideal is the template's doing. Qwen3 is the one exception: its template
    drops the (empty) think block that `enable_thinking=False` put before the previous answer,
    so that answer is re-prefilled, and nothing more."""
    for turn in measure(name):
        if name in THINKING:
            think_tokens = len(template_tokenizer(name)("<think>\n\n</think>\n\n")["input_ids"])
            assert turn.ideal < turn.prefilled <= turn.ideal + turn.answer + think_tokens, turn
        else:
            assert turn.prefilled == turn.ideal, turn
