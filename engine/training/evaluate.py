"""Measure the built-in model on conversations built from the held-out stdlib files.

Reports what the model card states: exact-match instruction success per edit kind, the
share of answer tokens CopySpec copies on turn 2 of a session, perplexity on held-out code,
and next-token accuracy given the correct answer so far, apart for the tokens that copy the
reference and the tokens that make the edit (why an exact answer is rare or not). Decoding
goes through the engine's Session (copy speculation is lossless, so the answers equal plain
greedy decoding, only faster).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

from engine.config import SpecConfig
from engine.loading import LoadedModel, load_model
from engine.paths import demo_model_path
from engine.session import Session
from engine.training.data import (
    EDIT_KINDS,
    Conversation,
    SnippetSource,
    extract_code,
    read_source,
    split_files,
)
from engine.training.encode import IGNORE, encode_conversation

EDIT_MARK = 2.0
"""Weight encode_conversation gives edit tokens here: only used to tell them apart."""


def answer_budget(lm: LoadedModel, expected: str) -> int:
    """Enough new tokens for the expected answer plus slack, so misses show as misses."""
    return len(lm.tokenizer(expected, add_special_tokens=False)["input_ids"]) + 32


def instruction_success(
    lm: LoadedModel, source: SnippetSource, per_kind: int, seed: int
) -> dict[str, dict[str, float]]:
    """Per edit kind: share of single-turn answers whose code equals the expected code."""
    results = {}
    for kind in EDIT_KINDS:
        rng = random.Random(f"{seed}-{kind}")
        exact, copied, new = 0, 0, 0
        for _ in range(per_kind):
            conv = source.conversation(rng, kind)
            system, user, expected = (m["content"] for m in conv.messages)
            session = Session(lm, SpecConfig(method="copy"), system=system)
            result = session.send(user, max_new_tokens=answer_budget(lm, expected))
            exact += extract_code(result.text) == extract_code(expected)
            copied += result.stats.copied_tokens
            new += result.stats.new_tokens
        results[kind] = {"exact": exact / per_kind, "n": per_kind, "copied_share": copied / new}
    return results


@torch.no_grad()
def teacher_forced_accuracy(
    lm: LoadedModel, source: SnippetSource, per_kind: int, seed: int
) -> dict[str, float]:
    """Argmax accuracy on answer tokens given the true prefix: copied tokens vs edit tokens.

    An exact answer of n tokens needs roughly accuracy**n, so this shows how far a model is
    from exact edits even when it gets none right.
    """
    hits = {"copy": 0, "edit": 0}
    counts = {"copy": 0, "edit": 0}
    for kind in ("rename", "delete", "insert"):
        rng = random.Random(f"{seed}-{kind}")
        for _ in range(per_kind):
            ids, labels, weights = encode_conversation(
                lm.tokenizer, source.conversation(rng, kind), edit_weight=EDIT_MARK
            )
            logits = lm.model(input_ids=torch.tensor([ids], device=lm.device)).logits[0]
            predicted = logits[:-1].argmax(-1).tolist()
            for t in range(1, len(ids)):
                if labels[t] != IGNORE:
                    group = "edit" if weights[t] == EDIT_MARK else "copy"
                    counts[group] += 1
                    hits[group] += predicted[t - 1] == ids[t]
    return {f"{g}_accuracy": hits[g] / counts[g] for g in hits} | {
        f"{g}_tokens": counts[g] for g in counts
    }


def refine_conversations(source: SnippetSource, n: int, seed: int) -> list[Conversation]:
    """Held-out multi-turn edit conversations (no deliberately broken turns)."""
    rng = random.Random(f"{seed}-multi")
    convs: list[Conversation] = []
    while len(convs) < n:
        conv = source.conversation(rng, "multi")
        if all(conv.train_turns):
            convs.append(conv)
    return convs


def turn2_copy_share(lm: LoadedModel, convs: list[Conversation]) -> dict[str, float]:
    """Copy share of the second answer in real sessions (turn 1 answered by the model)."""
    copied = new = exact = passes = 0
    for conv in convs:
        system, user1, expected1, user2, expected2 = (m["content"] for m in conv.messages[:5])
        session = Session(lm, SpecConfig(method="copy"), system=system)
        session.send(user1, max_new_tokens=answer_budget(lm, expected1))
        result = session.send(user2, max_new_tokens=answer_budget(lm, expected2))
        copied += result.stats.copied_tokens
        new += result.stats.new_tokens
        passes += result.stats.forward_passes
        exact += extract_code(result.text) == extract_code(expected2)
    return {
        "copied_share": copied / new,
        "passes_per_token": passes / new,
        "turn2_exact": exact / len(convs),
        "n": len(convs),
    }


@torch.no_grad()
def perplexity(lm: LoadedModel, files: list[Path], chunk: int, max_chunks: int) -> float:
    """exp(mean next-token NLL) over non-overlapping chunks of the held-out files."""
    total_nll, total_tokens = 0.0, 0
    chunks = 0
    for path in files:
        text = read_source(path)
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, max(len(ids) - 1, 0), chunk):
            piece = torch.tensor([ids[start : start + chunk]], device=lm.device)
            if piece.shape[1] < 2:
                continue
            loss = lm.model(input_ids=piece, labels=piece).loss
            total_nll += loss.item() * (piece.shape[1] - 1)
            total_tokens += piece.shape[1] - 1
            chunks += 1
            if chunks >= max_chunks:
                return math.exp(total_nll / total_tokens)
    return math.exp(total_nll / total_tokens)


def evaluate(model: Path, per_kind: int, refine: int, seed: int) -> dict[str, object]:
    """All card metrics for one model directory."""
    lm = load_model(model, device="cpu", dtype="float32")
    _, held_out = split_files()
    source = SnippetSource(held_out)
    started = time.time()
    report: dict[str, object] = {"model": str(model), "held_out_files": len(held_out)}
    report["perplexity"] = perplexity(lm, held_out, chunk=1024, max_chunks=40)
    report["instruction_success"] = instruction_success(lm, source, per_kind, seed)
    report["teacher_forced"] = teacher_forced_accuracy(lm, source, per_kind, seed)
    report["turn2"] = turn2_copy_share(lm, refine_conversations(source, refine, seed))
    report["eval_seconds"] = round(time.time() - started, 1)
    return report


def eval_cli_main(argv: list[str]) -> int:
    """Entry point: print (and optionally save) the held-out metrics as JSON."""
    p = argparse.ArgumentParser(
        prog="copyspec eval-default-model", description="Held-out metrics of a model."
    )
    p.add_argument("--model", type=Path, default=demo_model_path())
    p.add_argument("--per-kind", type=int, default=20, help="conversations per edit kind")
    p.add_argument("--refine", type=int, default=20, help="two-turn sessions for turn 2")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = evaluate(args.model, args.per_kind, args.refine, args.seed)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(eval_cli_main(sys.argv[1:]))
