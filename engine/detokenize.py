"""Turn a growing list of token ids into text deltas that add up to the final decoded text."""

from __future__ import annotations

from transformers.tokenization_utils_base import PreTrainedTokenizerBase


class TextStream:
    """Emits only settled text: a trailing U+FFFD (half of a UTF-8 character) is held back.

    Each push decodes only a short window (the tokens of the last settled step and the new
    ones), so a step costs what it added, not the answer so far; `finish` decodes the whole
    answer once, and that is the text."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0
        """Where the window starts: the first token of the last settled step, decoded again
        as context so a tokenizer that joins pieces (leading spaces) decodes them alike."""
        self._settled = 0
        """Tokens whose text is in `text`."""

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )

    def push(self, ids: list[int]) -> str:
        """Add tokens; return the newly settled text (possibly empty)."""
        self.ids.extend(ids)
        before = self.decode(self.ids[self._prefix : self._settled])
        window = self.decode(self.ids[self._prefix :])
        if window.endswith("\ufffd") or not window.startswith(before):
            return ""
        delta = window[len(before) :]
        self.text += delta
        self._prefix, self._settled = self._settled, len(self.ids)
        return delta

    def finish(self) -> str:
        """Settle everything, a held-back tail included; returns the last delta."""
        text = self.decode(self.ids)
        delta = text[len(self.text) :] if text.startswith(self.text) else ""
        self.text = text
        return delta
