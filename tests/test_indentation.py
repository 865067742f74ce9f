"""Indentation shifts: line starts read in each tokenizer's own tokens, and a re-indented block
carried into the copy's drafts, through the engine's proposer interface.

Two real tokenizers: the demo model's (a newline and its indentation are one token, as in
SmolLM2 and Qwen2.5) and GPT-2's (a newline, then one token per space), read from the shared
reference data.
"""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from engine.indentation import LineStarts, build_line_starts, line_starts_of
from engine.index import NgramIndex
from engine.paths import demo_model_path
from engine.prediction import Predicted
from engine.proposers import COPIED_ELSEWHERE, Proposal
from engine.proposers.copy import ResyncProposer
from engine.stats import TurnStats

from chat_templates import shared_dir
from test_replay import drive

pytestmark = pytest.mark.timeout(60)

BODY = [
    "total = 0",
    "for item in items:",
    "    if item.price > limit:",
    "        total += item.price * item.count",
    "        seen.append(item.name)",
    "    else:",
    "        skipped += 1",
    "        log.debug('skipped %s', item.name)",
    "result = total / max(1, len(seen))",
    "report(result, skipped, limit)",
]


def tokenizer(name: str):
    path = demo_model_path() if name == "demo" else shared_dir() / "tokenizers" / "gpt2"
    if not path.exists():
        pytest.skip(f"no tokenizer at {path}")
    return AutoTokenizer.from_pretrained(str(path))


def function(body: list[str], depth: int, header: list[str] = ()) -> str:
    lines = ["def summarise(items, limit, seen, log, skipped):", *header,
             *(" " * depth + line for line in body), "    return result", ""]
    return "\n".join(lines)


def shifted_accepted(passes: list[tuple[Proposal, int]]) -> int:
    return sum(p.origins[:a].count(COPIED_ELSEWHERE) for p, a in passes)


@pytest.mark.parametrize("name", ["demo", "gpt2"])
def test_line_starts_read_and_write_the_tokenizers_own_indentation(name: str) -> None:
    """Every indented line is read at its depth, and writing it deeper gives exactly the
    tokens the tokenizer gives that deeper line. (GPT-2 writes a line at depth 0 with a word
    that has no space before it, so it reads as depth 0 or 1 alike.)"""
    tok = tokenizer(name)
    starts = build_line_starts(tok)
    assert isinstance(starts, LineStarts)
    for depth in (2, 4, 8, 12):
        line = tok.encode("x = 1\n" + " " * depth + "y = 2", add_special_tokens=False)
        deeper = tok.encode("x = 1\n" + " " * (depth + 4) + "y = 2", add_special_tokens=False)
        at = next(i for i, t in enumerate(line) if t in starts.firsts)
        found = starts.at(line, at)
        assert found is not None and found[:2] == (1, depth)
        moved = starts.shifted(line, at, 4)
        assert moved is not None
        run, end = moved
        assert line[:at] + list(run) + line[end:] == deeper
    assert line_starts_of(tok) is line_starts_of(tok), "built once per tokenizer"


@pytest.mark.parametrize("name", ["demo", "gpt2"])
@pytest.mark.parametrize("shift", [4, -4])
def test_a_reindented_block_is_carried_from_its_second_line(name: str, shift: int) -> None:
    """The body wrapped in a `try:` (4 columns deeper) or taken out of one: once two lines in a
    row were written at the new depth, every draft writes the line starts it copies there, and
    the target accepts them; the answer needs fewer passes than without the shift. (Without
    it, the demo tokenizer's lines at one depth still carry their one-token edit.)"""
    tok = tokenizer(name)
    before, after = (4, 8) if shift > 0 else (8, 4)
    header = ["    try:"] if shift > 0 else []
    source = tok.encode(function(BODY, before, [] if shift > 0 else ["    try:"]),
                        add_special_tokens=False)
    target = tok.encode(function(BODY, after, header), add_special_tokens=False)
    context = [*tok.encode("Rewrite:\n", add_special_tokens=False), *source,
               *tok.encode("\nAnswer:\n", add_special_tokens=False)]
    with_shift = drive(ResyncProposer(16, 256, line_starts=line_starts_of(tok)), context, target)
    without = drive(ResyncProposer(16, 256), context, target)
    assert shifted_accepted(with_shift) >= shifted_accepted(without) + 4, (
        "line starts carried beyond the one-token edits of lines at one depth")
    assert len(with_shift) <= len(without) - 3


@pytest.mark.parametrize("name", ["demo", "gpt2"])
def test_a_shift_ends_where_the_block_does(name: str) -> None:
    """Only the loop is moved deeper (wrapped in an `if`): the first line after it, back at
    its old depth, declines the shift, and no later draft writes a moved line start."""
    tok = tokenizer(name)
    source = tok.encode(function(BODY + BODY, 4), add_special_tokens=False)
    moved = [BODY[0], "if items:", *("    " + line for line in BODY[1:8]), *BODY[8:], *BODY]
    target = tok.encode(function(moved, 4), add_special_tokens=False)
    passes = drive(ResyncProposer(16, 256, line_starts=line_starts_of(tok)), [*source, 0], target)
    broke = [i for i, (p, a) in enumerate(passes)
             if a < len(p) and COPIED_ELSEWHERE in p.origins[max(0, a - 1) : a + 1]]
    assert shifted_accepted(passes) >= 3 and len(broke) == 1
    assert all(COPIED_ELSEWHERE not in p.origins for p, _ in passes[broke[0] + 1 :])


@pytest.mark.parametrize("name", ["demo", "gpt2"])
def test_a_line_start_the_output_extends_declines_the_shift(name: str) -> None:
    """The body moved 4 deeper, then its copy 8 deeper: where the output writes more
    indentation than the carried shift gave, the draft breaks at the token after the moved
    line start, and that declines the shift at once (kept, GPT-2's one-space tokens would
    keep half-matching every line of a file at the wrong depth)."""
    tok = tokenizer(name)
    source = tok.encode(function(BODY + BODY, 4), add_special_tokens=False)
    moved = ["if a:", *("    " + line for line in BODY),
             "    if b:", *("        " + line for line in BODY)]
    target = tok.encode(function(moved, 4), add_special_tokens=False)
    passes = drive(ResyncProposer(16, 256, line_starts=line_starts_of(tok)), [*source, 0], target)
    after_shift = [a for p, a in passes if 0 < a < len(p)
                   and p.origins[a - 1] == COPIED_ELSEWHERE != p.origins[a]]
    assert shifted_accepted(passes) >= 10 and len(after_shift) == 1


@pytest.mark.parametrize("name", ["demo", "gpt2"])
def test_a_shift_is_carried_through_the_prediction(name: str) -> None:
    """The region an editor sends as the prediction is the code before the edit: the copy
    reads it first, so the shift is learnt and carried over the prediction's tokens."""
    tok = tokenizer(name)
    source = tok.encode(function(BODY, 4), add_special_tokens=False)
    target = tok.encode(function(BODY, 8, ["    try:"]), add_special_tokens=False)
    index = NgramIndex(3, "resync")
    stats = TurnStats()
    predicted = Predicted(ResyncProposer(16, 256, line_starts=line_starts_of(tok)), source, index,
                          stats)
    passes = drive(predicted, tok.encode("Wrap it in a try.", add_special_tokens=False),
                   target, index=index)
    predicted.settle()
    assert shifted_accepted(passes) >= 4
    assert stats.accepted_prediction_tokens > len(source) // 2


def test_a_tokenizer_that_fails_gives_no_shifts_and_says_so(caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    """Carrying a shift is a speed-up: a tokenizer that cannot encode a line start leaves the
    copy as it is, with a warning, and the turn goes on. (A stand-in tokenizer: no real one
    fails on demand.)"""

    class Broken:
        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            raise RuntimeError("no vocabulary loaded")

    with caplog.at_level("WARNING", logger="engine.indentation"):
        assert line_starts_of(Broken()) is None
    assert "no vocabulary loaded" in caplog.text
