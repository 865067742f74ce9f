"""A conversation rendered with any tokenizer's chat template, so that each turn's prompt
extends the previous prompt and answer and only the new message is prefilled.

Real templates fight that in three ways, handled here:
- some refuse a system role (Gemma 2, StarCoder2-instruct raise a TemplateError): the system
  prompt is folded into the first user message;
- some move the system prompt (Mistral-family templates glue it to the LAST user message, so
  every turn rewrites the start of the previous one): it is folded into the first user message
  too, which is where it stays put;
- thinking models: `enable_thinking=False` is passed where the template takes it, and
  `<think>` blocks are stripped from the answers that enter the history.
Which way a template goes is found by rendering a probe conversation, not from its name.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from jinja2 import TemplateError
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from engine.shaping import THINK_CLOSE, strip_thinking

PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
"""Used only for tokenizers that ship no chat template (base models, tiny test models)."""

Message = dict[str, str]
PROBE = [
    {"role": "system", "content": "Probe system prompt."},
    {"role": "user", "content": "Probe first request."},
    {"role": "assistant", "content": "Probe first answer."},
    {"role": "user", "content": "Probe second request."},
]


@dataclass(frozen=True)
class ChatFormat:
    """How to render for one template: whether the system prompt goes into the first user
    message, and whether the template takes `enable_thinking`."""

    template: str
    fold_system: bool = False
    takes_thinking: bool = False

    def messages(self, messages: Sequence[Message]) -> list[Message]:
        """The messages as the template gets them: answers without `<think>` blocks, and the
        system prompt folded into the first user message where this format says so."""
        out = [
            {**m, "content": without_thinking(m["content"])} if m["role"] == "assistant" else m
            for m in messages
        ]
        if self.fold_system and out and out[0]["role"] == "system":
            system, rest = out[0]["content"], out[1:]
            first = next((i for i, m in enumerate(rest) if m["role"] == "user"), None)
            if first is None:
                return rest
            rest[first] = {**rest[first], "content": f"{system}\n\n{rest[first]['content']}"}
            return rest
        return out

    def render(
        self,
        tokenizer: PreTrainedTokenizerBase,
        messages: Sequence[Message],
        add_generation_prompt: bool = True,
    ) -> str:
        extra = {"enable_thinking": False} if self.takes_thinking else {}
        return tokenizer.apply_chat_template(
            self.messages(messages), add_generation_prompt=add_generation_prompt,
            tokenize=False, chat_template=self.template, **extra,
        )


def without_thinking(text: str) -> str:
    """An answer as it enters the history: no `<think>` blocks (nor the newlines after one)."""
    if "<think>" not in text and THINK_CLOSE not in text:
        return text
    return strip_thinking(text, final=True).lstrip("\n")


def chat_format(tokenizer: PreTrainedTokenizerBase) -> ChatFormat:
    """The format that renders with this tokenizer's template and keeps the prefix property
    (turn 1's prompt plus its answer starts turn 2's prompt) on a probe conversation; else
    the first that renders at all."""
    template = tokenizer.chat_template or PLAIN_CHAT_TEMPLATE
    takes_thinking = "enable_thinking" in template
    rendering = []
    for fold in (False, True):
        candidate = ChatFormat(template, fold, takes_thinking)
        try:
            first = candidate.render(tokenizer, PROBE[:2])
            second = candidate.render(tokenizer, PROBE)
        except TemplateError:
            continue
        if second.startswith(first + PROBE[2]["content"]):
            return candidate
        rendering.append(candidate)
    if not rendering:
        raise ValueError("the tokenizer's chat template cannot render a system and user turn")
    return rendering[0]


_FORMATS: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, ChatFormat] = (
    weakref.WeakKeyDictionary()
)
"""Each tokenizer's format, probed once per template rather than on every turn."""


def render_text(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> str:
    """The conversation as text, ending with the assistant's generation prompt."""
    fmt = _FORMATS.get(tokenizer)
    if fmt is None or fmt.template != (tokenizer.chat_template or PLAIN_CHAT_TEMPLATE):
        fmt = _FORMATS[tokenizer] = chat_format(tokenizer)
    return fmt.render(tokenizer, messages)


def render_ids(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> list[int]:
    """Token ids of the conversation, ending with the assistant's generation prompt."""
    return tokenizer(render_text(tokenizer, messages), add_special_tokens=False)["input_ids"]
