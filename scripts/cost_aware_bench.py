"""Real weights: greedy, HF prompt lookup, ours (the default, cost-aware, with the prediction
editors send) and the old default (`cost_aware=False`, no prediction) on multi-turn tasks,
alternating in one process with `copyspec bench`'s own identity pass and rotation; per (task,
turn) the median tok/s end to end and its spread.

    python scripts/cost_aware_bench.py \
        --model ~/.cache/copyspec/weights/SmolLM2-135M-Instruct.Q4_1.gguf \
        --threads 1 --repeats 3 --tasks benchmarks/refine_chains.jsonl --out results.json

`record` writes each turn's prompt, prediction and greedy output (token ids) for `model`, which
replays them through the real decode loop, chooser and proposers with an oracle in place of the
model and sums cost(width) over the passes: modelled seconds, free of timing noise. Beside ours and
the old default it models HF prompt lookup's drafts (n ≤ 3, K 16, verified whole), ours with a
perfect cut (each candidate cut to exactly what the target accepts: what no chooser can beat
with this proposer) and the copy bound (each pass drafts the longest run of the output found
in what is known: what no copy proposer can beat).

    python scripts/cost_aware_bench.py record --model … --tasks … --out turns.jsonl
    python scripts/cost_aware_bench.py model turns.jsonl --curve 1:1,2:1.1,4:1.5,8:2.1,16:2.3

`replay` runs the oracle replay (`copyspec bench replay`'s protocol and pairs) with the chooser
under given curves: passes per token, and cost(width) summed over them against plain decoding.

    python scripts/cost_aware_bench.py replay --workload shared/replay/*.jsonl \
        --tokenizer shared/tokenizers/gpt2 --curve flat 1:1,256:1 --curve cpu 1:1,16:2.3,…
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from engine.bench.timing import CostedOracle as Oracle
from engine.config import SpecConfig
from engine.costs import CostCurve

METHODS = ("greedy", "pld", "ours", "old default")


def bench(args: argparse.Namespace) -> None:
    import torch

    from engine.bench.methods import BLOCK, GAMMA, GenerateRunner, SessionRunner
    from engine.bench.run import identity_pass, timed_passes
    from engine.bench.tasks import load_tasks
    from engine.costs import curve_for
    from engine.loading import load_model, use_cpu_threads

    lm = load_model(args.model, "cpu", "float32")
    threads = use_cpu_threads(args.threads, lm)
    tasks = [task for path in args.tasks for task in load_tasks(path)]
    runners = [SessionRunner("greedy", lm, SpecConfig("greedy")),
               GenerateRunner("pld", lm, (GAMMA, BLOCK)),
               SessionRunner("ours", lm, SpecConfig()),
               SessionRunner("old default", lm, SpecConfig(cost_aware=False), predict=False)]
    started = time.perf_counter()

    def log(what: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {what}", file=sys.stderr, flush=True)

    reference = identity_pass(lm, tasks, runners, args.max_new_tokens, log)
    records = timed_passes(tasks, runners, reference, args.repeats, args.max_new_tokens, log)
    speeds: dict[tuple[str, int, str], list[float]] = collections.defaultdict(list)
    tokens: dict[tuple[str, int], int] = {}
    for record in records:
        speeds[(record.task, record.turn, record.method)].append(record.new_tokens / record.seconds)
        tokens[(record.task, record.turn)] = record.new_tokens
    curve = curve_for(lm.model)
    rows = [{"task": task, "turn": turn, "method": method, "median": statistics.median(values),
             "low": min(values), "high": max(values)}
            for (task, turn, method), values in sorted(speeds.items())]
    meta = {"model": args.model, "threads": threads, "torch": torch.__version__,
            "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "load average after": os.getloadavg(), "repeats": args.repeats,
            "max_new_tokens": args.max_new_tokens, "curve": curve.to_dict(),
            "speed": "tok/s end to end per turn (prefill included)"}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "tokens":
                                    [[t, n, k] for (t, n), k in tokens.items()]}, indent=1))
    print("| task | turn | tokens | greedy | HF prompt lookup | ours (spread) | old default |"
          " ours / greedy | ours / PLD | old / greedy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (task, turn), count in sorted(tokens.items()):
        g, p, o, d = (speeds[(task, turn, m)] for m in METHODS)
        mg, mp, mo, md = (statistics.median(v) for v in (g, p, o, d))
        print(f"| {task} | {turn} | {count} | {mg:.1f} | {mp:.1f} | {mo:.1f} ({min(o):.1f}–"
              f"{max(o):.1f}) | {md:.1f} | {mo / mg:.2f}x | {mo / mp:.2f}x | {md / mg:.2f}x |")


def record(args: argparse.Namespace) -> None:
    from engine.bench.tasks import load_tasks
    from engine.loading import load_model, use_cpu_threads
    from engine.session import Session

    lm = load_model(args.model, "cpu", "float32")
    use_cpu_threads(args.threads, lm)
    with args.out.open("w", encoding="utf-8") as out:
        for path in args.tasks:
            for task in load_tasks(path):
                session = Session(lm, SpecConfig(), system=task.system)
                for turn, message in enumerate(task.turns, start=1):
                    prediction = session.expected(message)
                    result = session.send(message, args.max_new_tokens)
                    out.write(json.dumps({"task": task.id, "turn": turn, "prompt":
                                          result.prompt_ids, "output": result.token_ids,
                                          "prediction": prediction}) + "\n")


MODELLED = ("old default", "ours", "HF prompt lookup", "ours, perfect cut", "copy bound")


class PerfectCut:
    """A chooser that knows the output: each candidate cut to exactly what will be accepted."""

    def __init__(self, state: Oracle) -> None:
        self.state = state

    def limit(self, source: str, budget: int) -> int:
        return budget

    def cut(self, proposal: Any) -> Any:
        from dataclasses import replace

        done, output, matched = self.state.done, self.state.target, 0
        while (matched < len(proposal.candidate) and done + matched < len(output)
               and proposal.candidate[matched] == output[done + matched]):
            matched += 1
        return replace(proposal, tokens=proposal.candidate[:matched])

    def timed(self, width: int, seconds: float) -> None:
        """Modelled passes have no time to learn from."""

    def observe(self, made: Any, emitted: Any) -> None:
        """Nothing to learn: it knows."""


def bound_seconds(prompt: list[int], output: list[int], cost: CostCurve) -> float:
    """cost(width) over the fewest passes any copy proposer needs (`bound_passes`' loop)."""
    from engine.bench.replay import UNBOUNDED, SuffixAutomaton

    automaton, done, seconds = SuffixAutomaton(prompt), 0, 0.0
    while done < len(output):
        run = min(automaton.run_length(output, done, UNBOUNDED), len(output) - done - 1)
        seconds += cost(1 + run)
        for token in output[done : done + run + 1]:
            automaton.append(token)
        done += run + 1
    return seconds


def tokenizer_line_starts(directory: str | None) -> Any:
    """The line starts of the tokenizer in `directory` (None without one)."""
    if directory is None:
        return None
    from transformers import AutoTokenizer

    from engine.indentation import line_starts_of

    return line_starts_of(AutoTokenizer.from_pretrained(directory))


def model(args: argparse.Namespace) -> None:
    from engine.bench.methods import BLOCK, GAMMA
    from engine.bench.timing import PromptLookup
    from engine.decode import StopRules, decode
    from engine.prediction import Predicted
    from engine.schedule import Acceptance, DraftChooser
    from engine.stats import TurnStats
    from engine.turn import build_proposers

    cost = parse_curve(args.curve)
    starts = tokenizer_line_starts(args.tokenizer)
    turns = [json.loads(line) for line in args.turns.read_text().splitlines()]
    print("| task | turn | tokens | " + " | ".join(f"{name} × greedy" for name in MODELLED)
          + " | ours × HF prompt lookup |")
    print("|---|---:|---:|" + "---:|" * (len(MODELLED) + 1))
    totals: dict[tuple[str, str], float] = collections.defaultdict(float)
    for task in dict.fromkeys(t["task"] for t in turns):
        acceptance = Acceptance()
        for turn in sorted((t for t in turns if t["task"] == task), key=lambda t: t["turn"]):
            prediction = turn.get("prediction", [])  # what editors send; none: recorded before
            seconds = {"copy bound": bound_seconds(turn["prompt"] + prediction, turn["output"],
                                                   cost)}
            for name in MODELLED[:-1]:
                state = Oracle(turn["prompt"], turn["output"], cost)
                proposers = ([PromptLookup(GAMMA, BLOCK)] if name == "HF prompt lookup"
                             else build_proposers(SpecConfig(), line_starts=starts))
                if prediction and name.startswith("ours"):
                    copier = build_proposers(SpecConfig(), line_starts=starts)[0]
                    proposers.insert(0, Predicted(copier, prediction, state.index, TurnStats()))
                chooser = {"ours": DraftChooser(cost, None, acceptance),
                           "ours, perfect cut": PerfectCut(state)}.get(name)
                rules = StopRules(frozenset(), len(turn["output"]))
                decoded = decode(state, proposers, rules, chooser=chooser)  # type: ignore[arg-type]
                assert decoded == turn["output"]
                seconds[name] = state.seconds
            plain = len(turn["output"]) * cost(1)
            turns_of = "turn 1" if turn["turn"] == 1 else "turns 2+"
            for name in ("greedy", *MODELLED):
                totals[(turns_of, name)] += seconds.get(name, plain)
            print(f"| {task} | {turn['turn']} | {len(turn['output'])} | "
                  + " | ".join(f"{plain / seconds[name]:.2f}x" for name in MODELLED)
                  + f" | {seconds['HF prompt lookup'] / seconds['ours']:.2f}x |")
    for turns_of in ("turn 1", "turns 2+"):
        greedy = totals[(turns_of, "greedy")]
        print(f"| all | {turns_of} | | " + " | ".join(
            f"{greedy / totals[(turns_of, name)]:.2f}x" for name in MODELLED)
            + f" | {totals[(turns_of, 'HF prompt lookup')] / totals[(turns_of, 'ours')]:.2f}x |")


class Chosen:
    """The engine's copy proposer with the chooser, as a replay proposer: the chooser cuts each
    candidate under a given curve, whose cost(width) it sums over the passes."""

    def __init__(self, cost: CostCurve, choose: bool, line_starts: Any = None) -> None:
        self.name, self.cost, self.choose, self.seconds = "chosen", cost, choose, 0.0
        self.line_starts = line_starts

    def begin(self, pair_id: str, context: list[int]) -> None:
        from engine.index import NgramIndex
        from engine.schedule import DraftChooser
        from engine.turn import build_proposers

        self.index = NgramIndex(SpecConfig.gamma, SpecConfig.policy)
        self.index.extend(context)
        self.proposer = build_proposers(SpecConfig(), line_starts=self.line_starts)[0]
        self.chooser = DraftChooser(self.cost) if self.choose else None

    def propose(self, tokens: list[int]) -> list[int]:
        from engine.bench.peers import NO_LIMIT
        from engine.proposers import Indexed

        proposal = self.proposer.propose(Indexed(self.index), NO_LIMIT)
        self.made = [proposal] if proposal.candidate else []
        if self.chooser is not None and self.made:
            proposal = self.chooser.cut(proposal)
        self.seconds += self.cost(1 + len(proposal.tokens))
        return proposal.tokens

    def feedback(self, drafted: list[int], accepted: int, emitted: list[int]) -> None:
        if self.chooser is not None:
            self.chooser.observe(self.made, emitted)
        self.index.extend(emitted)

    def end(self) -> None:
        """Nothing to release."""


def replay_curves(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    from engine.bench.replay import replay
    from engine.bench.workloads import read_jsonl, tokenize

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    pairs = [pair for path in args.workload
             for pair in tokenize(read_jsonl(path), path.stem, tokenizer, None)]
    curves = {name: parse_curve(spec) for name, spec in args.curve}
    cells = sorted({(p.workload, p.turn if p.workload == "multi_turn" else 0) for p in pairs})
    print("| figure | curve | draft length | "
          + " | ".join(f"{w} {t or ''}".strip() for w, t in cells) + " |")
    for (name, cost), choose in itertools.product(curves.items(), (False, True)):
        chosen = Chosen(cost, choose, tokenizer_line_starts(args.tokenizer))
        passes, tokens, seconds = (collections.Counter() for _ in range(3))
        for pair in pairs:
            cell = (pair.workload, pair.turn if pair.workload == "multi_turn" else 0)
            chosen.seconds = 0.0
            result = replay(chosen, pair)
            passes[cell] += result.passes
            tokens[cell] += result.tokens
            seconds[cell] += chosen.seconds
        how = "chooser" if choose else "proposer's own"
        print(f"| passes / token | {name} | {how} | "
              + " | ".join(f"{passes[c] / tokens[c]:.3f}" for c in cells) + " |")
        print(f"| modelled cost / plain | {name} | {how} | "
              + " | ".join(f"{seconds[c] / (tokens[c] * cost(1)):.3f}" for c in cells) + " |")


def parse_curve(text: str) -> CostCurve:
    points = [part.split(":") for part in text.split(",")]
    return CostCurve(tuple(int(w) for w, _ in points), tuple(float(s) for _, s in points))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    for name in ("bench", "record"):
        sub = commands.add_parser(name)
        sub.add_argument("--model", required=True)
        sub.add_argument("--threads", type=int)
        sub.add_argument("--tasks", nargs="+", type=Path, required=True)
        sub.add_argument("--max-new-tokens", type=int, default=160)
        sub.add_argument("--out", type=Path, required=True)
    commands.choices["bench"].add_argument("--repeats", type=int, default=3)
    sub = commands.add_parser("model")
    sub.add_argument("turns", type=Path)
    sub.add_argument("--curve", required=True, help="width:cost pairs, e.g. 1:1,4:1.5,16:2.3")
    sub.add_argument("--tokenizer", help="the recorded model's HF tokenizer directory, for the "
                     "copy's indentation shifts (as the engine carries them); none: no shifts")
    sub = commands.add_parser("replay")
    sub.add_argument("--workload", nargs="+", type=Path, required=True)
    sub.add_argument("--tokenizer", required=True)
    sub.add_argument("--curve", nargs=2, action="append", default=[], metavar=("NAME", "CURVE"))
    argv = sys.argv[1:]
    if not argv or argv[0] not in commands.choices:
        argv = ["bench", *argv]
    args = parser.parse_args(argv)
    {"bench": bench, "record": record, "model": model, "replay": replay_curves}[args.command](args)


if __name__ == "__main__":
    main()
