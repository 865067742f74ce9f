"""engine.detokenize.TextStream decodes a short window per step: what it emits must still be,
at every step, decoding every token so far (less a half-written character), and add up to it
at the end."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from engine.detokenize import TextStream
from engine.paths import demo_model_path
from tests.answers.corpus import CASES

SMOLLM2 = sorted((Path.home() / ".cache/copyspec/weights").glob("SmolLM2-*float32*/tokenizer.json"))
"""The real SmolLM2 tokenizer, when `python -m engine.fetch smollm2` has run on this machine."""
TEXTS = [case.answer for case in CASES] + [
    "naïve café: 😀🎉 中文字符 ∑x² — «quotes»\n    return 'ß' * 3  # ✓\n",
    "  leading spaces\n\n\n\ttabs\tand\r\nCRLF ",
]


def metaspace_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style tokenizer (Llama 2, Mistral): "▁" marks a space and decoding
    drops the first one, so a window decoded without context would lose a space."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(vocab_size=700, show_progress=False)
    tokenizer.train_from_iterator(TEXTS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer)


def tokenizers() -> list[str]:
    return ["metaspace", str(demo_model_path() / "tokenizer.json"), *map(str, SMOLLM2)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", tokenizers(), ids=lambda path: Path(path).parent.name or path)
def test_windowed_deltas_are_the_whole_decode_at_every_step(path: str) -> None:
    if path == "metaspace":
        tokenizer = metaspace_tokenizer()
    else:
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=path)
    rng = random.Random(path)
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for sizes in ([1] * len(ids), [rng.randint(1, 8) for _ in ids]):
            stream, shown, at = TextStream(tokenizer), "", 0
            for size in sizes:
                if at >= len(ids):
                    break
                at += size
                shown += stream.push(ids[at - size : at])
                whole = stream.decode(ids[:at])
                assert whole.startswith(shown), (text, at)
                if not whole.endswith("\ufffd"):
                    assert shown == whole, "settled text was held back"
            shown += stream.finish()
            assert shown == stream.decode(ids) == stream.text, text
