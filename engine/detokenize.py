"""Turn a growing list of token ids into text deltas that add up to the final decoded text."""

from __future__ import annotations

from transformers.tokenization_utils_base import PreTrainedTokenizerBase


class TextStream:
    """Emits only settled text: a trailing U+FFFD (half of a UTF-8 character) is held back."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )

    def push(self, ids: list[int]) -> str:
        """Add tokens; return the newly settled text (possibly empty)."""
        self.ids.extend(ids)
        text = self.decode(self.ids)
        if text.endswith("\ufffd") or not text.startswith(self.text):
            return ""
        delta, self.text = text[len(self.text) :], text
        return delta

    def finish(self) -> str:
        """Settle everything, a held-back tail included; returns the last delta."""
        text = self.decode(self.ids)
        delta = text[len(self.text) :] if text.startswith(self.text) else ""
        self.text = text
        return delta
