"""Measure the SmolLM2 adapter, and its base without it, on functions training never saw.

Run as ``python -m engine.training.adapter_eval``. Items come from the held-out stdlib files
(excluded from training by hash) and go through what ``copyspec generate --code-only`` does:
the same loader (the adapter merged at load), a Session with the default method and the CLI's
system prompt, and the answer's code taken out by the same Shaper. Reports, per edit kind, the
share of answers that equal the expected code exactly and, for docstrings and type hints, the
share that parse, keep the body and add what was asked. Then multi-turn sessions, decoded with
greedy and with the default copy method in one process: identical tokens, and tok/s and copy
statistics on turn 1 and on turns 2+.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.config import SpecConfig
from engine.fetch import SMOLLM2
from engine.loading import LoadedModel, load_model, use_cpu_threads
from engine.paths import ModelLoadError, refine_adapter_path
from engine.prompt_format import SYSTEM_PROMPT, edit_request, fence
from engine.session import Session, TurnResult
from engine.shaping import Shaper
from engine.training.adapter_data import (
    FOLLOW_UP_KINDS,
    KINDS,
    MAX_LINES,
    Example,
    ExampleSource,
    annotations,
    function_node,
    make_edit,
)
from engine.training.data import split_files

ANSWER_SLACK = 32
"""New tokens allowed past the expected answer's length, so a miss shows as a miss."""
ADDS = ("docstring", "type_hints")
"""Kinds with many right answers: judged by what the answer keeps and adds."""


@dataclass
class Item:
    """One held-out request: the user message and the code a right answer holds."""

    kind: str
    message: str
    shown: str
    expected: str


def items(source: ExampleSource, lm: LoadedModel, per_kind: int, seed: int,
          max_tokens: int) -> list[Item]:
    """`per_kind` single-turn items of every kind whose prompt and answer fit `max_tokens`."""
    found = []
    for kind in KINDS:
        rng = random.Random(f"{seed}-{kind}")
        count = 0
        while count < per_kind:
            example = source.example(rng, kind)
            if tokens(lm, example) <= max_tokens:
                found.append(Item(kind, example.messages[1]["content"], example.reference,
                                  example.target))
                count += 1
    return found


def tokens(lm: LoadedModel, example: Example) -> int:
    text = "\n".join(m["content"] for m in example.messages)
    return len(lm.tokenizer(text, add_special_tokens=False)["input_ids"]) + 16


def answer(lm: LoadedModel, spec: SpecConfig, messages: list[str],
           budgets: list[int]) -> list[tuple[str, TurnResult]]:
    """Each message answered in turn in one session, as `copyspec generate --code-only` does
    (with the prediction it sends): (the shaped code, the turn)."""
    session = Session(lm, spec, system=SYSTEM_PROMPT)
    results = []
    for message, budget in zip(messages, budgets, strict=True):
        result = session.send(message, budget, stop_event=threading.Event(),
                              prediction=session.expected(message))
        results.append((Shaper()(result.text, final=True), result))
    return results


def budget(lm: LoadedModel, expected: str) -> int:
    return len(lm.tokenizer(fence(expected), add_special_tokens=False)["input_ids"]) + ANSWER_SLACK


def adds_and_keeps(kind: str, shown: str, code: str) -> bool:
    """Whether `code` is `shown` with a docstring (or type hints) added and nothing else changed:
    it parses, the name, parameters, defaults, decorators and body statements are the same."""
    try:
        before, after = function_node(shown), function_node(code)
    except SyntaxError:
        return False

    def body(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
        statements = node.body[1:] if ast.get_docstring(node) is not None else node.body
        return [ast.dump(s) for s in statements]

    def signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        return [a.arg if a else "" for a in every] + [
            ast.dump(d) for d in [*args.defaults, *args.kw_defaults] if d is not None
        ] + [ast.dump(d) for d in node.decorator_list] + [node.name]

    kept = body(before) == body(after) and signature(before) == signature(after)
    if kind == "docstring":
        return kept and ast.get_docstring(after) is not None
    return kept and annotations(code) > annotations(shown)


def score(lm: LoadedModel, batch: list[Item]) -> dict[str, dict[str, float]]:
    """Per kind: exact share, the adds_and_keeps share for ADDS, copy share and tok/s."""
    report: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        mine = [item for item in batch if item.kind == kind]
        exact = kept = new = copied = 0
        seconds = 0.0
        for item in mine:
            [(code, result)] = answer(lm, SpecConfig(), [item.message],
                                      [budget(lm, item.expected)])
            exact += code == item.expected
            kept += kind in ADDS and adds_and_keeps(kind, item.shown, code)
            new += result.stats.new_tokens
            copied += result.stats.copied_tokens
            seconds += result.stats.decode_seconds
        report[kind] = {"n": len(mine), "exact": exact / len(mine),
                        "copied_share": copied / max(new, 1),
                        "tokens_per_second": new / max(seconds, 1e-9)}
        if kind in ADDS:
            report[kind]["parses_keeps_body"] = kept / len(mine)
        print(f"  {kind}: {json.dumps(report[kind])}", flush=True)
    return report


def chains(source: ExampleSource, count: int, turns: int, seed: int,
           lm: LoadedModel, max_tokens: int) -> list[tuple[list[str], list[str]]]:
    """Sessions of `turns` edits of one held-out function: the first message shows the code,
    later ones are instructions alone, each on the previous right answer (the server's
    follow-ups). (messages, expected code of each turn)."""
    rng = random.Random(f"{seed}-chains")
    found: list[tuple[list[str], list[str]]] = []
    while len(found) < count:
        code = rng.choice(source.codes)
        messages, expected = [], []
        for turn in range(turns):
            made = make_edit(code, rng.choice(FOLLOW_UP_KINDS), rng, source.pool)
            if made is None or made[0] != code:
                break
            instruction, code = made[1]
            messages.append(edit_request(made[0], instruction) if turn == 0 else instruction)
            expected.append(code)
        text = "\n".join(messages + expected)
        if len(expected) == turns and len(lm.tokenizer(text)["input_ids"]) <= max_tokens * turns:
            found.append((messages, expected))
    return found


def greedy_vs_copy(lm: LoadedModel, sessions: list[tuple[list[str], list[str]]]
                   ) -> dict[str, object]:
    """Each session decoded with greedy and with copy (alternating which goes first): whether
    every turn's tokens are identical, tok/s on turn 1 and turns 2+, copy share, exact turns."""
    totals = {(m, later): [0, 0.0, 0, 0] for m in ("greedy", "copy") for later in (False, True)}
    identical = exact = turns = 0
    for number, (messages, expected) in enumerate(sessions):
        budgets = [budget(lm, e) for e in expected]
        order = ("greedy", "copy") if number % 2 == 0 else ("copy", "greedy")
        runs = {m: answer(lm, SpecConfig(method=m), messages, budgets) for m in order}
        for turn, ((_, g), (code, c)) in enumerate(zip(runs["greedy"], runs["copy"],
                                                        strict=True)):
            identical += g.token_ids == c.token_ids
            exact += code == expected[turn]
            turns += 1
            for method, result in (("greedy", g), ("copy", c)):
                total = totals[method, turn > 0]
                total[0] += result.stats.new_tokens
                total[1] += result.stats.decode_seconds
                total[2] += result.stats.copied_tokens
                total[3] += result.stats.forward_passes
    report: dict[str, object] = {"sessions": len(sessions), "turns": turns,
                                 "identical_turns": identical, "exact_turns": exact}
    speed = {}
    for (method, later), (new, seconds, copied, passes) in totals.items():
        part = "turns_2plus" if later else "turn_1"
        speed[method, part] = new / max(seconds, 1e-9)
        report[f"{method}_{part}"] = {
            "new_tokens": new, "tokens_per_second": round(speed[method, part], 1),
            "copied_share": round(copied / max(new, 1), 3),
            "passes_per_token": round(passes / max(new, 1), 3),
        }
    for part in ("turn_1", "turns_2plus"):
        report[f"speedup_{part}"] = round(speed["copy", part] / speed["greedy", part], 2)
    return report


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: one row per kind, exact (and parses-keeps-body) per model."""
    names = list(results)
    head = "| kind | n | " + " | ".join(f"{n} exact | {n} keeps body" for n in names) + " |"
    rows = [head, "|" + " --- |" * (2 + 2 * len(names))]
    for kind in KINDS:
        cells = []
        for name in names:
            r = results[name][kind]
            kept = f"{r['parses_keeps_body']:.0%}" if "parses_keeps_body" in r else ""
            cells += [f"{r['exact']:.0%}", kept]
        rows.append(f"| {kind} | {results[names[0]][kind]['n']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.training.adapter_eval",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", type=Path, default=refine_adapter_path(),
                   help="adapter directory (default: the committed one)")
    p.add_argument("--models", default="adapter,base",
                   help="which to measure, comma-separated: adapter, base (without adapter)")
    p.add_argument("--per-kind", type=int, default=24, help="items per edit kind (>= 20)")
    p.add_argument("--sessions", type=int, default=8,
                   help="multi-turn sessions decoded greedy and with copy, by the first model")
    p.add_argument("--turns", type=int, default=3, help="turns per session")
    p.add_argument("--max-tokens", type=int, default=700, help="longest item, prompt + answer")
    p.add_argument("--max-lines", type=int, default=MAX_LINES, help="longest function, lines")
    p.add_argument("--threads", type=int, default=1,
                   help="1: on a busy 2-core machine two threads ran 8x slower")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    started = time.time()
    names = args.models.split(",")
    try:
        models = {name: load_model(args.adapter if name == "adapter" else SMOLLM2.path,
                                   device="cpu", dtype="float32") for name in names}
    except ModelLoadError as error:
        print(f"adapter_eval: error: {error}", file=sys.stderr)
        return 1
    first = next(iter(models.values()))
    use_cpu_threads(args.threads, first)
    _, held_out = split_files()
    source = ExampleSource(held_out, max_lines=args.max_lines)
    batch = items(source, first, args.per_kind, args.seed, args.max_tokens)
    report: dict[str, object] = {"adapter": str(args.adapter), "held_out_files": len(held_out),
                                 "held_out_functions": len(source.codes),
                                 "threads": torch.get_num_threads()}
    results = {}
    for name, lm in models.items():
        print(f"{name}:", flush=True)
        results[name] = score(lm, batch)
    report["kinds"] = results
    print(table(results))
    if args.sessions:
        sessions = chains(source, args.sessions, args.turns, args.seed, first, args.max_tokens)
        report["greedy_vs_copy"] = greedy_vs_copy(first, sessions)
        print(json.dumps(report["greedy_vs_copy"], indent=2))
    report["eval_seconds"] = round(time.time() - started, 1)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
