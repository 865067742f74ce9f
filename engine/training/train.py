"""Time-boxed CPU training of the built-in default model and its draft model.

Run as ``copyspec train-default-model``. The tokenizer is trained once and shared; then
the default model and the draft model are trained in turn, each for its share of
``--minutes``, on an endless stream of freshly generated rows (no epoch repeats).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from engine.training.data import EDIT_KINDS, SnippetSource, split_files
from engine.training.encode import IGNORE, Row, encode_conversation
from engine.training.tokenizer import END_OF_TEXT, IM_END, save_tokenizer, train_tokenizer

CONTEXT_LENGTH = 2048  # declared context; training rows are at most --max-len tokens


@dataclass(frozen=True)
class ModelSize:
    """Llama shape; the default and the draft differ only here."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int


# Small: on a 2-core CPU, a model that sees more tokens in the time box copies better.
SIZES = {
    "default": ModelSize(hidden=160, layers=4, heads=4, kv_heads=4, intermediate=448),
    "draft": ModelSize(hidden=96, layers=2, heads=2, kv_heads=2, intermediate=256),
}


def row_mix(code_share: float) -> dict[str, float]:
    """Row kinds and weights: mostly edit chats (a third multi-turn), some raw code."""
    chat = 1 - code_share
    return {
        "code": code_share,
        "multi": chat / 3,
        **{k: chat * 2 / 3 / len(EDIT_KINDS) for k in EDIT_KINDS},
    }


def row_stream(
    tok: PreTrainedTokenizerFast,
    source: SnippetSource,
    rng: random.Random,
    args: argparse.Namespace,
) -> Iterator[Row]:
    """Endless rows drawn from row_mix; rows longer than --max-len are skipped."""
    max_len = args.max_len
    kinds, weights = zip(*row_mix(args.code_share).items(), strict=True)
    eot = tok.convert_tokens_to_ids(END_OF_TEXT)
    while True:
        kind = rng.choices(kinds, weights)[0]
        if kind == "code":
            ids = tok(source.code_chunk(rng, rng.randint(800, 4000)), add_special_tokens=False)
            ids = [*ids["input_ids"][: max_len - 1], eot]
            row = ids, list(ids), [1.0] * len(ids)
        else:
            row = encode_conversation(tok, source.conversation(rng, kind), args.edit_weight)
        if len(row[0]) <= max_len:
            yield row


def batches(
    rows: Iterator[Row], tokens_per_batch: int, pad_id: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Length-bucketed, right-padded batches of about tokens_per_batch tokens.

    Rows are never packed together, so a row can only copy from its own context; right
    padding needs no attention mask under causal attention (pads carry no loss).
    """
    while True:
        pool = sorted((next(rows) for _ in range(256)), key=lambda r: len(r[0]))
        groups, group = [], []
        for row in pool:
            if group and (len(group) + 1) * len(row[0]) > tokens_per_batch:
                groups.append(group)
                group = []
            group.append(row)
        groups.append(group)
        random.shuffle(groups)
        for group in groups:
            width = max(len(row[0]) for row in group)
            ids = [r[0] + [pad_id] * (width - len(r[0])) for r in group]
            labels = [r[1] + [IGNORE] * (width - len(r[1])) for r in group]
            weights = [r[2] + [0.0] * (width - len(r[2])) for r in group]
            yield torch.tensor(ids), torch.tensor(labels), torch.tensor(weights)


def weighted_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Next-token cross-entropy averaged with per-token weights (ignored labels weigh 0)."""
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        labels[:, 1:].flatten(),
        ignore_index=IGNORE,
        reduction="none",
    )
    w = weights[:, 1:].flatten()
    return (ce * w).sum() / w.sum().clamp_min(1e-9)


def lr_at(progress: float, peak: float, warmup: float = 0.03) -> float:
    """Linear warmup then cosine decay to 10%, over the fraction of the time box used."""
    if progress < warmup:
        return peak * max(progress / warmup, 0.01)
    frac = min(1.0, (progress - warmup) / (1 - warmup))
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))


def build_model(size: ModelSize, tok: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A fresh Llama whose config already carries the chat EOS and pad ids."""
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=CONTEXT_LENGTH,
        tie_word_embeddings=True,
        eos_token_id=tok.convert_tokens_to_ids(IM_END),
        pad_token_id=tok.convert_tokens_to_ids(END_OF_TEXT),
        bos_token_id=None,
    )
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


def train_one(
    name: str,
    tok: PreTrainedTokenizerFast,
    source: SnippetSource,
    args: argparse.Namespace,
    minutes: float,
    out: Path,
) -> dict[str, float]:
    """Train one model for `minutes` of wall time, save it, and return its metrics."""
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    random.seed(args.seed)
    if args.resume:
        model = LlamaForCausalLM.from_pretrained(args.resume / name, dtype=torch.float32)
    else:
        model = build_model(SIZES[name], tok)
    params = sum(p.numel() for p in model.parameters())
    print(f"[{name}] {params / 1e6:.2f}M params, {minutes:.1f} min", flush=True)
    opt = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=False
    )
    pad_id = tok.convert_tokens_to_ids(END_OF_TEXT)
    stream = batches(row_stream(tok, source, rng, args), args.batch_tokens, pad_id)
    start, budget = time.time(), minutes * 60
    step, seen, window, ema = 0, 0, [], None
    model.train()
    while (elapsed := time.time() - start) < budget:
        lr = lr_at(elapsed / budget, args.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        ids, labels, weights = next(stream)
        loss = weighted_loss(model(input_ids=ids).logits, labels, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += ids.numel()
        window.append(loss.item())
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % args.log_every == 0:
            print(
                f"[{name}] step {step} {elapsed / 60:.1f}m lr {lr:.2e} "
                f"loss {sum(window) / len(window):.3f} ema {ema:.3f} "
                f"tok/s {seen / max(elapsed, 1e-9):.0f}",
                flush=True,
            )
            window = []
    metrics = {
        "params": params,
        "steps": step,
        "tokens_seen": seen,
        "minutes": round((time.time() - start) / 60, 2),
        "final_loss_ema": round(ema or float("nan"), 4),
    }
    save(model, tok, out / name, metrics, args)
    print(f"[{name}] done: {metrics}", flush=True)
    return metrics


def save(
    model: LlamaForCausalLM,
    tok: PreTrainedTokenizerFast,
    path: Path,
    metrics: dict[str, float],
    args: argparse.Namespace,
) -> None:
    """bf16 safetensors + tokenizer + generation config + a record of how it was made."""
    path.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.generation_config = GenerationConfig(
        eos_token_id=model.config.eos_token_id,
        pad_token_id=model.config.pad_token_id,
        do_sample=False,
    )
    model.to(torch.bfloat16).save_pretrained(path, safe_serialization=True)
    save_tokenizer(tok, path)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    record = {"metrics": metrics, "args": settings, "device": "cpu"}
    if args.resume:
        record["resumed_from"] = json.loads((args.resume / path.name / "training.json").read_text())
    (path / "training.json").write_text(json.dumps(record, indent=2) + "\n")


def build_tokenizer(source: SnippetSource, vocab: int, seed: int) -> PreTrainedTokenizerFast:
    """BPE trained on the training files plus rendered chats (so chat words get merges)."""
    rng = random.Random(seed)
    kinds = ["multi", *EDIT_KINDS]
    chats = [source.conversation(rng, rng.choice(kinds)) for _ in range(2000)]
    texts = source.texts + [
        "\n".join(f"{m['role']}\n{m['content']}" for m in c.messages) for c in chats
    ]
    return train_tokenizer(texts, vocab)


@dataclass
class Summary:
    """What one training run produced, for the log and the model card."""

    tokenizer_vocab: int
    models: dict[str, dict[str, float]]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="copyspec train-default-model",
        description="Train the built-in default and draft models on the stdlib (CPU).",
    )
    p.add_argument(
        "--out", type=Path, required=True,
        help="writes OUT/default and OUT/draft (engine/models in a checkout replaces the "
        "built-in models); nothing is written anywhere else",
    )
    p.add_argument("--minutes", type=float, default=58.0, help="wall time for both models")
    p.add_argument("--draft-share", type=float, default=0.15, help="share of time for the draft")
    p.add_argument("--only", choices=("both", "default", "draft"), default="both")
    p.add_argument(
        "--resume", type=Path, help="continue from the models (and tokenizer) in RESUME/<name>"
    )
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--code-share", type=float, default=0.05, help="share of raw-code rows")
    p.add_argument("--snippet-lines", type=int, default=10, help="longest code snippet in a chat")
    p.add_argument(
        "--edit-weight", type=float, default=4.0, help="loss weight of the tokens that edit"
    )
    p.add_argument("--max-len", type=int, default=1280, help="longest training row, tokens")
    p.add_argument("--batch-tokens", type=int, default=2048, help="padded tokens per step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="1 is fastest when other jobs share the CPU"
    )
    p.add_argument("--log-every", type=int, default=20)
    return p.parse_args(argv)


def cli_main(argv: list[str]) -> int:
    """Entry point of ``copyspec train-default-model``; returns a process exit code."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    train_files, held_out = split_files()
    print(f"{len(train_files)} training files, {len(held_out)} held out", flush=True)
    source = SnippetSource(train_files, args.snippet_lines)
    if args.resume:
        tok = PreTrainedTokenizerFast.from_pretrained(args.resume / "default")
    else:
        tok = build_tokenizer(source, args.vocab, args.seed)
    print(f"tokenizer: {len(tok)} tokens ({time.time() - t0:.0f}s)", flush=True)
    names = ["default", "draft"] if args.only == "both" else [args.only]
    shares = {"default": 1 - args.draft_share, "draft": args.draft_share}
    if args.only != "both":
        shares[args.only] = 1.0
    remaining = args.minutes - (time.time() - t0) / 60
    results = {}
    for name in names:
        results[name] = train_one(name, tok, source, args, remaining * shares[name], args.out)
    summary = Summary(tokenizer_vocab=len(tok), models=results)
    print(json.dumps(asdict(summary)), flush=True)
    print(f"total {(time.time() - t0) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main(sys.argv[1:]))
