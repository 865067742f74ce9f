"""Train a LoRA adapter that teaches SmolLM2-135M-Instruct to refine code exactly.

Run as ``python -m engine.training.adapter --out DIR``. Examples come from the training split
of the stdlib (engine.training.adapter_data), rendered with the base model's own chat template
exactly as a session renders them; the loss is on the answer tokens only (the edited code in a
fence and the end of the turn), with the tokens where the answer stops copying weighted up.
Writes only to --out: adapter_config.json, adapter_model.safetensors (float16) and
training.json (compute, settings and the loss curve).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from engine.chat import render_text
from engine.loading import LoadedModel, load_model
from engine.paths import ADAPTER_CONFIG, base_location
from engine.training.adapter_data import KINDS, Example, ExampleSource, functions
from engine.training.data import edit_points, split_files
from engine.training.train import lr_at

BASE = "smollm2"
"""The base model: a name `python -m engine.fetch` knows (its weights stay in the user's cache)."""
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Llama's attention and MLP projections: where the adapter's low-rank updates go."""
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass
class Row:
    """One example as token ids and a loss weight per id: 0 on what the model is shown, above
    0 on the answers it should write (the fenced code and the end-of-turn token)."""

    ids: list[int]
    weights: list[float]

    @property
    def answer_tokens(self) -> int:
        return sum(w > 0 for w in self.weights)


def encode(tok: PreTrainedTokenizerBase, example: Example, edit_weight: float) -> Row:
    """Each answer's prompt as a session renders it (the conversation so far with the
    generation prompt; what earlier turns rendered is not tokenized again) and each answer as
    the model writes it: the fenced code, then the end-of-turn token. The tokens where an answer
    stops copying the code it edits weigh `edit_weight`."""
    end_of_turn = tok.convert_ids_to_tokens(tok.eos_token_id)
    ids: list[int] = []
    weights: list[float] = []
    shown = ""
    answers = iter(example.answers)
    for index, message in enumerate(example.messages):
        if message["role"] != "assistant":
            continue
        prompt = render_text(tok, example.messages[:index])
        if not prompt.startswith(shown):
            raise ValueError("the chat template does not extend the earlier turns' rendering")
        new = tok(prompt[len(shown) :], add_special_tokens=False)["input_ids"]
        answer, content = next(answers), message["content"]
        encoded = tok(content, add_special_tokens=False, return_offsets_mapping=True)
        offset = content.index("\n") + 1  # the code starts after the opening fence line
        edits = [(offset + a, offset + b) for a, b in edit_points(answer.reference, answer.target)]
        ids += [*new, *encoded["input_ids"], tok.eos_token_id]
        weights += [0.0] * len(new) + [
            edit_weight if any(a < e and s < max(b, a + 1) for s, e in edits) else 1.0
            for a, b in encoded["offset_mapping"]
        ] + [1.0]
        shown = prompt + content + end_of_turn
    return Row(ids, weights)


def answer_loss(model: PreTrainedModel, row: Row) -> torch.Tensor:
    """Weighted next-token cross-entropy on the answer tokens of a causal LM (the adapter's
    layers inside it). The output head runs on the answer positions only: on the prompt it
    would cost a fifth of the step for nothing."""
    ids = torch.tensor([row.ids])
    weights = torch.tensor(row.weights)
    answer = weights.nonzero().squeeze(1)
    hidden = model.base_model(input_ids=ids).last_hidden_state[0]
    logits = model.get_output_embeddings()(hidden[answer - 1])  # each predicts the next token
    losses = torch.nn.functional.cross_entropy(logits.float(), ids[0, answer], reduction="none")
    return (losses * weights[answer]).sum() / weights[answer].sum()


def with_adapter(lm: LoadedModel, rank: int, alpha: int, base: str,
                 resume: Path | None = None) -> torch.nn.Module:
    """The model with LoRA layers on TARGET_MODULES (only they train): fresh ones, or those of
    the adapter in `resume` to train further."""
    if resume is not None:
        peft_model = PeftModel.from_pretrained(lm.model, str(resume), is_trainable=True)
    else:
        config = LoraConfig(
            r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(TARGET_MODULES),
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(lm.model, config)
    peft_model.peft_config["default"].base_model_name_or_path = base
    return peft_model


def save_adapter(peft_model: torch.nn.Module, out: Path, record: dict[str, object]) -> None:
    """adapter_config.json, the adapter's weights in float16 (a few MB) and training.json."""
    out.mkdir(parents=True, exist_ok=True)
    peft_model.peft_config["default"].save_pretrained(str(out))
    state = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in state.items()},
              str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def kind_weights(spec: str) -> dict[str, float]:
    """Every kind at weight 1 unless `spec` (`kind=weight,...`) says otherwise: a resumed run
    can draw more of the kinds the evaluation shows are weak."""
    weights = dict.fromkeys(KINDS, 1.0)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, weight = item.partition("=")
        if kind not in weights:
            raise ValueError(f"--kind-weights: unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
        try:
            weights[kind] = float(weight)
        except ValueError:
            raise ValueError(f"--kind-weights: {item!r} is not kind=number") from None
        if weights[kind] < 0:
            raise ValueError(f"--kind-weights: {kind} has a negative weight")
    if not any(weights.values()):
        raise ValueError("--kind-weights: every weight is 0")
    return weights


def train(args: argparse.Namespace) -> dict[str, object]:
    """Train until --minutes or --steps runs out, log the loss, and save to --out."""
    started = time.time()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train_files, held_out = split_files()
    if args.max_files:
        train_files = random.Random(args.seed).sample(train_files, args.max_files)
    source = ExampleSource(train_files, max_lines=args.max_lines,
                           exclude=frozenset(functions(held_out)))
    lm = load_model(base_location(args.base, Path.cwd()), device="cpu", dtype="float32")
    if lm.tokenizer.eos_token_id not in lm.eos_token_ids:
        raise ValueError("the tokenizer's EOS token does not end the model's turns")
    model = with_adapter(lm, args.rank, args.alpha, args.base, args.resume)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    examples = source.stream(rng, kind_weights(args.kind_weights), args.follow_up_share)
    setup = time.time() - started
    print(f"{len(source.codes)} training functions from {len(train_files)} files "
          f"({len(held_out)} held out); {sum(p.numel() for p in trainable):,} adapter "
          f"parameters; setup {setup:.0f}s", flush=True)
    model.train()
    step = seen = tokens = answer_tokens = skipped = 0
    kinds: Counter[str] = Counter()
    curve, window = [], []
    begin = time.time()
    budget = args.minutes * 60
    while True:
        elapsed = time.time() - begin
        progress = max(elapsed / budget if budget else 0.0,
                       step / args.steps if args.steps else 0.0)
        if progress >= 1:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(progress, args.lr, warmup=0.05)
        for _ in range(args.accumulate):
            example = next(examples)
            row = encode(lm.tokenizer, example, args.edit_weight)
            if len(row.ids) > args.max_tokens:
                skipped += 1
                continue
            loss = answer_loss(model.get_base_model(), row)
            (loss / args.accumulate).backward()
            window.append(loss.item())
            seen += 1
            tokens += len(row.ids)
            answer_tokens += row.answer_tokens
            kinds.update(answer.kind for answer in example.answers)
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if step % args.log_every == 0 and window:
            point = {"step": step, "examples": seen, "minutes": round(elapsed / 60, 2),
                     "lr": optimizer.param_groups[0]["lr"],
                     "loss": round(sum(window) / len(window), 4)}
            curve.append(point)
            window = []
            print(f"step {step} {point['minutes']:.1f}m lr {point['lr']:.2e} loss "
                  f"{point['loss']:.3f} ({tokens / max(elapsed, 1e-9):.0f} tok/s)", flush=True)
    train_seconds = time.time() - begin
    record = {
        "base": args.base,
        "compute": {
            "device": "cpu", "cpu": cpu_name(), "threads": torch.get_num_threads(),
            "setup_seconds": round(setup, 1), "train_seconds": round(train_seconds, 1),
            "optimizer_steps": step, "examples": seen, "tokens": tokens,
            "answer_tokens": answer_tokens, "skipped_too_long": skipped,
            "tokens_per_second": round(tokens / max(train_seconds, 1e-9), 1),
            "torch": torch.__version__,
        },
        "answers_by_kind": dict(sorted(kinds.items())),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "loss_curve": curve,
    }
    if args.resume:
        record["resumed_from"] = json.loads((args.resume / "training.json").read_text())
    save_adapter(model, args.out, record)
    print(json.dumps(record["compute"]), flush=True)
    return record


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m engine.training.adapter",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True,
                   help=f"writes {ADAPTER_CONFIG}, {ADAPTER_WEIGHTS} and training.json here, "
                   "nothing anywhere else")
    p.add_argument("--base", default=BASE,
                   help=f"a fetch name or a model path (default {BASE}: SmolLM2-135M-Instruct, "
                   "from `python -m engine.fetch smollm2`)")
    p.add_argument("--minutes", type=float, default=10.0, help="wall time of the training loop")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: none)")
    p.add_argument("--resume", type=Path,
                   help="train this adapter directory further (its rank and alpha)")
    p.add_argument("--kind-weights", default="",
                   help="kind=weight,... to draw some edit kinds more often (default: all 1)")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--accumulate", type=int, default=4, help="examples per optimizer step")
    p.add_argument("--edit-weight", type=float, default=3.0,
                   help="loss weight of the answer tokens where it stops copying")
    p.add_argument("--follow-up-share", type=float, default=0.3,
                   help="share of examples going on for 2-3 turns (every answer is learned)")
    p.add_argument("--max-tokens", type=int, default=700, help="longest example, tokens")
    p.add_argument("--max-lines", type=int, default=30, help="longest function, lines")
    p.add_argument("--max-files", type=int, default=0, help="use this many training files (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10, help="optimizer steps per logged point")
    args = p.parse_args(argv)
    if not args.minutes and not args.steps:
        p.error("give --minutes or --steps")
    try:
        kind_weights(args.kind_weights)
    except ValueError as error:
        p.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
