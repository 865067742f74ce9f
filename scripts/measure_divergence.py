"""How often speculation departs from `generate` in low precision, per model family.

In float32 every method is identical to `generate(do_sample=False)` (tests/test_architectures.py).
In bfloat16/float16 a verify forward over K tokens rounds differently from K one-token steps,
so a near-tie between the two best tokens can flip. This runs every attention family of
tests/architectures.py over a fixed prompt set and records, per method, the first generated
position where the engine and `generate` differ.

    python scripts/measure_divergence.py --device cpu|cuda \
        --dtype bfloat16|float16|float32 --out DIR

writes DIR/divergence.json and DIR/divergence.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from engine.config import SpecConfig
from engine.loading import LoadedModel
from engine.turn import generate_ids

from architectures import ATTENTION_FAMILIES, tiny

PROMPTS = (
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef add(",
    "for i in range(10):\n    print(i)\nfor j in range(10):\n    print(",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "SELECT name, age FROM users WHERE age > 30;\nSELECT name, age FROM users WHERE",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "x = [1, 2, 3]\ny = [4, 5, 6]\nz = [a + b for a, b in zip(x, y)]\nprint(z)\n",
)
SEEDS = (1, 2)
MAX_NEW = 64
METHODS = {
    "greedy": SpecConfig(method="greedy"),
    "copy": SpecConfig(method="copy"),
    "copy γ=1 K=4": SpecConfig(method="copy", gamma=1, block=4, adaptive=False),
    "copy+draft": SpecConfig(method="copy+draft", draft_block=4),
}


def first_divergence(ours: list[int], theirs: list[int]) -> int | None:
    """Index of the first differing token, or None when identical."""
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            return i
    return None if len(ours) == len(theirs) else min(len(ours), len(theirs))


def reference(lm: LoadedModel, ids: list[int]) -> list[int]:
    inputs = torch.tensor([ids], device=lm.device)
    output = lm.model.generate(
        inputs, attention_mask=torch.ones_like(inputs), do_sample=False,
        max_new_tokens=MAX_NEW, pad_token_id=lm.tokenizer.eos_token_id,
    )
    return output[0, len(ids) :].tolist()


def draft_of(lm: LoadedModel) -> LoadedModel:
    """The target with 5% relative weight noise: a draft that agrees often."""
    model = copy.deepcopy(lm.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                noise = torch.randn(parameter.shape, generator=generator) * 0.05
                scale = parameter.float().std()
                parameter.add_((noise.to(parameter.device) * scale).to(parameter.dtype))
    return LoadedModel(model, lm.tokenizer, f"{lm.path}-draft", lm.device, lm.dtype)


def measure(name: str, device: str, dtype: torch.dtype) -> dict[str, dict[str, object]]:
    """Per method: runs, identical runs, first-divergence positions of the others."""
    found: dict[str, dict[str, object]] = {m: {"runs": 0, "identical": 0, "first": []}
                                           for m in METHODS}
    for seed in SEEDS:
        lm = tiny(name, device, dtype, seed=seed)
        draft = draft_of(lm)
        for prompt in PROMPTS:
            ids = lm.tokenizer(prompt)["input_ids"]
            expected = reference(lm, ids)
            for method, spec in METHODS.items():
                tokens, _ = generate_ids(lm, ids, spec, MAX_NEW,
                                         draft=draft if spec.drafts else None)
                where = first_divergence(tokens, expected)
                entry = found[method]
                entry["runs"] += 1
                if where is None:
                    entry["identical"] += 1
                else:
                    entry["first"].append(where)
    return found


def markdown(results: dict[str, dict[str, dict[str, object]]], device: str, dtype: str) -> str:
    methods = list(METHODS)
    lines = [
        f"First divergence from `generate(do_sample=False)`, {device} {dtype}, "
        f"{len(PROMPTS)} prompts × {len(SEEDS)} seeds, {MAX_NEW} new tokens. "
        "Cell: identical runs / runs (first differing token of the others).",
        "",
        "| family | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    totals = {m: [0, 0] for m in methods}
    for name, per_method in results.items():
        cells = []
        for method in methods:
            entry = per_method[method]
            totals[method][0] += entry["identical"]
            totals[method][1] += entry["runs"]
            first = entry["first"]
            detail = f" ({', '.join(map(str, sorted(first)))})" if first else ""
            cells.append(f"{entry['identical']}/{entry['runs']}{detail}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **all** | " + " | ".join(
        f"**{same}/{runs}** ({100 * same / runs:.0f}%)" for same, runs in totals.values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    parser.add_argument("--out", type=Path, required=True, help="directory for the results")
    parser.add_argument("--families", nargs="*", default=list(ATTENTION_FAMILIES))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[str, object]]] = {}
    started = time.perf_counter()
    for name in args.families:
        results[name] = measure(name, args.device, dtype)
        row = {m: f"{e['identical']}/{e['runs']}" for m, e in results[name].items()}
        print(f"{name}: {row}", file=sys.stderr, flush=True)
    meta = {"device": args.device, "dtype": args.dtype, "prompts": len(PROMPTS),
            "seeds": list(SEEDS), "max_new_tokens": MAX_NEW,
            "torch": torch.__version__, "seconds": round(time.perf_counter() - started, 1)}
    (args.out / "divergence.json").write_text(
        json.dumps({"meta": meta, "families": results}, indent=1), encoding="utf-8")
    (args.out / "divergence.md").write_text(
        markdown(results, args.device, args.dtype), encoding="utf-8")
    print(f"wrote {args.out / 'divergence.json'} and {args.out / 'divergence.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
