"""Predicted Outputs on recorded edits: each edit's before-code (its fenced block) as the
prediction, greedy with and without it; prints the answer's identity, forward passes and the
accepted/rejected prediction tokens (docs/predicted-outputs.md, "Measured").

  python scripts/predicted_replay.py /work/shared/replay/single_function.jsonl --limit 60
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from copyspec_lsp.adapters.remote import FENCED
from engine.config import SpecConfig
from engine.decode import StopRules
from engine.loading import LoadedModel, load_model
from engine.sequence import SequenceState
from engine.session import fit_budget
from engine.stats import TurnStats
from engine.turn import run_turn

MAX_PROMPT = 1500
"""Longer prompts are skipped (the built-in model's window is 2,048 tokens)."""
EXTRA = 64
"""The answer's budget: the prediction's length plus this many tokens, within the window."""


def decode(lm: LoadedModel, ids: list[int], prediction: list[int], budget: int
           ) -> tuple[list[int], TurnStats]:
    spec = SpecConfig("copy")
    state = SequenceState(lm.model, spec.gamma, spec.policy)
    return run_turn(state, ids, lm, spec, StopRules(lm.eos_token_ids, budget),
                    prediction=prediction)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("replay", type=Path, help="a shared/replay JSONL file")
    parser.add_argument("--limit", type=int, default=60, help="entries read from the start")
    parser.add_argument("--model", help="model directory or HF id (default: built-in)")
    args = parser.parse_args()
    lm = load_model(args.model, "cpu")
    totals = {"edits": 0, "same": 0, "tokens": 0, "plain": 0, "predicted": 0, "accepted": 0,
              "rejected": 0, "fewer": 0, "more": 0}
    lines = args.replay.read_text().splitlines()[: args.limit]
    for line in lines:
        entry = json.loads(line)
        context = entry["turns"][0]["context_text"]
        ids = lm.tokenizer(context, add_special_tokens=False)["input_ids"]
        before = FENCED.search(context)
        if len(ids) > MAX_PROMPT or before is None:
            continue
        prediction = lm.tokenizer(before.group(0), add_special_tokens=False)["input_ids"]
        budget = fit_budget(len(ids), len(prediction) + EXTRA, lm.context_window)
        plain, plain_stats = decode(lm, ids, [], budget)
        predicted, stats = decode(lm, ids, prediction, budget)
        totals["edits"] += 1
        totals["same"] += predicted == plain
        totals["tokens"] += stats.new_tokens
        totals["plain"] += plain_stats.forward_passes
        totals["predicted"] += stats.forward_passes
        totals["accepted"] += stats.accepted_prediction_tokens
        totals["rejected"] += stats.rejected_prediction_tokens
        totals["fewer"] += stats.forward_passes < plain_stats.forward_passes
        totals["more"] += stats.forward_passes > plain_stats.forward_passes
        print(f"{entry['function'][:32]:32} prediction {len(prediction):5}  tokens "
              f"{stats.new_tokens:5}  same {predicted == plain!s:5}  passes "
              f"{plain_stats.forward_passes:4} -> {stats.forward_passes:4}  accepted "
              f"{stats.accepted_prediction_tokens:4}  rejected "
              f"{stats.rejected_prediction_tokens:4}", flush=True)
    print(json.dumps(totals))
    if totals["tokens"]:
        print(f"passes per token: {totals['plain'] / totals['tokens']:.4f} without, "
              f"{totals['predicted'] / totals['tokens']:.4f} with the prediction")


if __name__ == "__main__":
    main()
