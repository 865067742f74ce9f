"""Only code enters the buffer: every corpus answer shapes to its exact buffer text, and while
it streams (char by char, or in the built-in tokenizer's token chunks) the text shown only
grows and is always a prefix of the final text."""

from __future__ import annotations

import itertools
import random

import pytest
from transformers import PreTrainedTokenizerFast

from engine.detokenize import TextStream
from engine.paths import demo_model_path
from engine.shaping import Shaper
from tests.answers.corpus import CASES, Case

IDS = [case.name for case in CASES]


def streamed(shaper: Shaper, pieces: list[str]) -> str:
    """Feeds the answer piece by piece; checks that the shown text only ever extends itself
    and stays a prefix of the final text; returns what was shown before the end."""
    answer = "".join(pieces)
    final = shaper(answer, final=True)
    shown, text = "", ""
    for piece in pieces:
        text += piece
        now = shaper(text)
        assert now.startswith(shown), (text, shown, now)
        assert final.startswith(now), (text, now, final)
        shown = now
    return shown


@pytest.mark.timeout(30)
def test_the_corpus_covers_the_families_and_styles() -> None:
    assert len(CASES) >= 40
    assert len(set(IDS)) == len(IDS)
    families = {case.family.split()[0].split("-")[0] for case in CASES}
    for family in ("Qwen2.5", "Qwen3", "DeepSeek", "Llama", "Gemma", "Phi", "Codestral",
                   "StarCoder2", "Mistral"):
        assert family in families, family


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_answer_shapes_to_the_exact_buffer_text(case: Case) -> None:
    assert Shaper.for_region(case.region)(case.answer, final=True) == case.expected


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_streaming_char_by_char_only_shows_what_stays(case: Case) -> None:
    streamed(Shaper.for_region(case.region), list(case.answer))


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """The built-in model's tokenizer (in the repo): whole-word pieces, as a model streams."""
    return PreTrainedTokenizerFast(tokenizer_file=str(demo_model_path() / "tokenizer.json"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_streaming_token_chunks_only_shows_what_stays(
    case: Case, tokenizer: PreTrainedTokenizerFast
) -> None:
    """One token at a time, then in the chunks copy speculation emits (1-8 tokens)."""
    ids = tokenizer(case.answer, add_special_tokens=False)["input_ids"]
    rng = random.Random(case.name)
    for sizes in ([1] * len(ids), [rng.randint(1, 8) for _ in ids]):
        stream, pieces, at = TextStream(tokenizer), [], 0
        for size in sizes:
            if at >= len(ids):
                break
            pieces.append(stream.push(ids[at : at + size]))
            at += size
        pieces.append(stream.finish())
        assert "".join(pieces) == case.answer
        streamed(Shaper.for_region(case.region), pieces)


@pytest.mark.timeout(30)
def test_most_answers_stream_before_they_end() -> None:
    """Holding back is for what is ambiguous: a plain fenced rewrite streams in full."""
    full = [
        case.name for case in CASES
        if streamed(Shaper.for_region(case.region), list(case.answer)) == case.expected
    ]
    assert len(full) >= 35, full


@pytest.mark.timeout(30)
def test_without_a_region_the_first_block_is_the_code() -> None:
    """`copyspec generate --code-only` has no region to compare with."""
    shaper = Shaper()
    answer = "Sure:\n\n```python\nprint('hi')\n```\n\nAnd a test:\n```python\nassert True\n```"
    assert shaper(answer, final=True) == "print('hi')"
    assert streamed(shaper, list(answer)) == "print('hi')"
    assert shaper("x = 1\ny = 2\n", final=True) == "x = 1\ny = 2"


THINKING_AND_CRLF = [
    "Let me see.</think>\r\n```python\r\ndef f():\r\n    return 1\r\n```\r\n",
    "<think>plan\r\n```py\nx\n```</think>\n\n```python\ndef f():\n    return 2\n```",
    "<thi\nnot a tag\n```python\ndef f(x):\r\r\n    return x  # </thin\n```\n</think>tail",
    "def f():\n\n\n    return 3\n\n\n<think>half",
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", range(3))
def test_the_stream_shows_what_the_whole_answer_shapes_to_at_every_step(seed: int) -> None:
    """`Shaper.stream` parses only each new piece, yet at every step it shows exactly what
    shaping the whole answer so far shows: in one piece, char by char and in random deltas."""
    rng = random.Random(seed)
    answers = [(case.region, case.answer) for case in CASES]
    answers += [("def f():\n    return 0\n", answer) for answer in THINKING_AND_CRLF]
    for region, answer in answers:
        shaper = Shaper.for_region(region)
        cuts = sorted(rng.sample(range(1, len(answer)), max(0, len(answer) // 3 - 1)))
        for bounds in ([0, len(answer)], list(range(len(answer) + 1)), [0, *cuts, len(answer)]):
            stream = shaper.stream()
            for start, end in itertools.pairwise(bounds):
                assert stream.push(answer[start:end]) == shaper(answer[:end]), (answer, end)
