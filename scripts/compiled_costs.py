"""Eager against compiled decoding (engine/compiled.py) on one model and device: the cost of one
verify pass by width, and what compiling each width's bucket took (docs/performance.md).

Both paths run in this one process on the same weights and the same cached context: the
compiled one compiles every bucket as its cache is allocated (each bucket's first pass is
timed), then one warm-up pass per width and path, then timed rounds that alternate which path
goes first; last, a token-identity check (greedy with copy speculation, both ways). Each pass
is [pending token, width − 1 drafted tokens], ends with the acceptance rule's host sync, and is
cropped back, as decoding does.

  python scripts/compiled_costs.py --model ~/.cache/copyspec/weights/SmolLM2-135M-Instruct.Q4_1.gguf
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from engine.compiled import BUCKETS, use_compile
from engine.config import SpecConfig
from engine.decode import StopRules, decode
from engine.loading import LoadedModel, load_model, use_cpu_threads
from engine.sequence import SequenceState
from engine.turn import build_proposers

PROMPT = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n" * 3 + "def "
"""Repetitive code, so the identity check verifies copies and not only single tokens."""


def state(lm: LoadedModel, setting: str, ids: list[int]) -> SequenceState:
    """A sequence on the `setting` path holding `ids`, its last token pending."""
    use_compile(lm.model, setting)
    sequence = SequenceState(lm.model)
    sequence.sync(ids)
    sequence.accept([])
    return sequence


def timed_pass(sequence: SequenceState, draft: list[int]) -> float:
    """Seconds of one pass over [pending token, draft…] with its host sync; then cropped."""
    begin = time.perf_counter()
    sequence.forward([sequence.tokens[-1], *draft]).argmax(dim=-1).tolist()
    seconds = time.perf_counter() - begin
    sequence.accept([])
    return seconds


def same_tokens(lm: LoadedModel, tokens: int) -> bool:
    """Greedy decoding with copy speculation gives the same tokens on both paths."""
    ids = lm.tokenizer(PROMPT)["input_ids"]
    outputs = []
    for setting in ("off", "on"):
        use_compile(lm.model, setting)
        sequence = SequenceState(lm.model)
        sequence.sync(ids)
        rules = StopRules(lm.eos_token_ids, tokens)
        outputs.append(decode(sequence, build_proposers(SpecConfig()), rules))
    return outputs[0] == outputs[1]


@torch.inference_mode()
def measure(lm: LoadedModel, widths: list[int], context: int, repeats: int) -> dict:
    vocab = lm.model.get_input_embeddings().weight.shape[0]
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (context + max(widths),), generator=generator).tolist()
    prefix, drafts = ids[:context], {w: ids[context : context + w - 1] for w in widths}
    eager, compiled = state(lm, "off", prefix), state(lm, "on", prefix)  # this compiles
    if compiled.static is None:
        raise SystemExit("compiling failed (see the warning above): nothing to compare")
    compile_seconds = dict(compiled.static.compile_seconds)
    for w in widths:  # warm-up
        timed_pass(eager, drafts[w])
        timed_pass(compiled, drafts[w])
    samples: dict[str, dict[int, list[float]]] = {"eager": {}, "compiled": {}}
    for round_ in range(repeats):
        for w in widths:
            order = [("eager", eager), ("compiled", compiled)]
            for name, sequence in order if round_ % 2 == 0 else order[::-1]:
                samples[name].setdefault(w, []).append(timed_pass(sequence, drafts[w]))
    return {"compile_seconds": compile_seconds, "samples": samples,
            "capacity": compiled.static.capacity, "widths": widths}


def table(result: dict) -> str:
    """Median ms and spread per width and path; eager over compiled by medians and by minima
    (interference only adds time, so the minima are the calmer comparison)."""
    lines = ["| width | eager ms: median (min–max) | compiled ms: median (min–max) | "
             "eager/compiled, medians | by minima | bucket's first pass (compile), s |",
             "|---:|---:|---:|---:|---:|---:|"]
    for w in result["widths"]:
        e, c = result["samples"]["eager"][w], result["samples"]["compiled"][w]
        me, mc = statistics.median(e), statistics.median(c)
        first = result["compile_seconds"].get(w)
        lines.append(f"| {w} | {1000 * me:.1f} ({1000 * min(e):.1f}–{1000 * max(e):.1f}) | "
                     f"{1000 * mc:.1f} ({1000 * min(c):.1f}–{1000 * max(c):.1f}) | "
                     f"{me / mc:.2f} | {min(e) / min(c):.2f} | "
                     f"{'—' if first is None else f'{first:.1f}'} |")
    total = sum(result["compile_seconds"].values())
    lines.append(f"\ncompiling {len(result['compile_seconds'])} buckets: {total:.1f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory, GGUF file or HF id (default: built-in)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--dtype", default="float32", help="float32 (default) or bfloat16")
    parser.add_argument("--threads", type=int, help="torch threads (default: the engine's rule)")
    parser.add_argument("--widths", default=",".join(map(str, BUCKETS)))
    parser.add_argument("--context", type=int, default=256, help="cached tokens before a pass")
    parser.add_argument("--repeats", type=int, default=21, help="timed passes per width and path")
    parser.add_argument("--check-tokens", type=int, default=64,
                        help="tokens of the identity check (0: skip it)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args()
    lm = load_model(args.model, args.device, args.dtype)
    threads = use_cpu_threads(args.threads, lm)
    where = torch.cuda.get_device_name(lm.device) if lm.device.type == "cuda" else "cpu"
    print(f"{lm.path}: {where}, {args.dtype}, {threads} thread(s), {os.cpu_count()} cores; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    result = measure(lm, [int(w) for w in args.widths.split(",")], args.context, args.repeats)
    print(table(result))
    print(f"static cache: {result['capacity']} positions; load after {os.getloadavg()[0]:.1f}")
    if args.check_tokens:  # after timing, so the first compiles above are this process's first
        identical = same_tokens(lm, args.check_tokens)
        print(f"identity over {args.check_tokens} tokens: {identical}", flush=True)
        if not identical:
            raise SystemExit("the compiled path changed the tokens: the timings are void")
    if args.out:
        args.out.write_text(json.dumps({"model": lm.path, "threads": threads, **result},
                                       default=str, indent=1))


if __name__ == "__main__":
    main()
