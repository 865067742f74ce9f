"""Training rows from conversations: token ids, labels and loss weights.

Shared by training (the loss) and evaluation (which tokens copy the reference and which make
the edit), so both read a conversation the same way.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from engine.training.data import Conversation, edit_points, extract_code
from engine.training.tokenizer import IM_END, IM_START

IGNORE = -100
"""The label of a token that gets no loss (torch's cross-entropy ignore_index)."""
Row = tuple[list[int], list[int], list[float]]
"""Token ids, labels, loss weights."""


def encode_conversation(
    tok: PreTrainedTokenizerFast, conv: Conversation, edit_weight: float
) -> Row:
    """Token ids, labels and loss weights: loss only on the trained assistant turns (and
    their EOS), with the tokens where an answer departs from its reference weighted up."""
    text = tok.apply_chat_template(conv.messages, tokenize=False)
    spans, edits, pos, turn = [], [], 0, 0
    for msg in conv.messages:
        head = f"{IM_START}{msg['role']}\n"
        segment = f"{head}{msg['content']}{IM_END}\n"
        if text[pos : pos + len(segment)] != segment:
            raise ValueError("chat template does not render turns as expected")
        if msg["role"] == "assistant":
            if conv.train_turns[turn]:
                start = pos + len(head)
                spans.append((start, start + len(msg["content"]) + len(IM_END)))
                code = extract_code(msg["content"])
                offset = start + msg["content"].find(code)
                edits += [
                    (offset + a, offset + b) for a, b in edit_points(conv.references[turn], code)
                ]
            turn += 1
        pos += len(segment)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    labels, weights = [], []
    for tid, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        trained = any(s <= a < e for s, e in spans)
        labels.append(tid if trained else IGNORE)
        edited = trained and any(a < e and s < max(b, a + 1) for s, e in edits)
        weights.append(edit_weight if edited else float(trained))
    return enc["input_ids"], labels, weights
