"""Real chat templates, read at run time from the shared reference data, on tiny models.

The templates' exact Jinja text lives in `<repo>/../shared/chat_templates/*.json` (override
the folder with COPYSPEC_SHARED=/path/to/shared); it is not copied into the repository.
Sources of each file, as recorded in its `source` field (repository@commit, then path):
- deepseek-coder: ShishirPatil/gorilla@0f6fbeb6a9222978acda2ed13353911afc17908c
  berkeley-function-call-leaderboard/bfcl/model_handler/oss_model/deepseek.py
  (its docstring quotes deepseek-coder-*-instruct's tokenizer_config.json chat_template)
- deepseek-coder-v2: ShishirPatil/gorilla@13f28ddce9d851cd125668f8d519d1a83266a5ae
  berkeley-function-call-leaderboard/bfcl/model_handler/oss_model/deepseek_coder.py
  (its docstring quotes DeepSeek-Coder-V2's tokenizer_config.json chat_template)
- gemma2: ye-NX/llama.cpp@b354d7c9ecb76c97c07098617cdebbdfffa2583e
  models/templates/google-gemma-2-2b-it.jinja
- gemma3: unslothai/unsloth@0050c73e05ca9bb74e42d0649be410f177160c08
  unsloth/chat_templates.py (gemma3_template)
- llama3.2: ye-NX/llama.cpp@b354d7c9ecb76c97c07098617cdebbdfffa2583e
  models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja
- mistral-nemo: ye-NX/llama.cpp@b354d7c9ecb76c97c07098617cdebbdfffa2583e
  models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja
- phi3.5: ye-NX/llama.cpp@b354d7c9ecb76c97c07098617cdebbdfffa2583e
  models/templates/microsoft-Phi-3.5-mini-instruct.jinja
- phi4: unslothai/unsloth@0050c73e05ca9bb74e42d0649be410f177160c08
  unsloth/chat_templates.py (phi4_template)
- qwen2.5: chujiezheng/chat_templates@06e8a5b80195d2906d6ec81056ea564c2f86622e
  chat_templates/qwen2.5-instruct.jinja (the Qwen2.5 / Qwen2.5-Coder-Instruct template)
- qwen3: ye-NX/llama.cpp@b354d7c9ecb76c97c07098617cdebbdfffa2583e
  models/templates/Qwen-Qwen3-0.6B.jinja
- starcoder2-instruct:
  bigcode-project/starcoder2-self-align@0028ed8f2f9551499f1f91704664bbce08d4379b
  src/star_align/prompt_template.py (CHAT_TEMPLATE)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast

from engine.chat import chat_format
from engine.config import SpecConfig
from engine.loading import LoadedModel
from engine.prompt_format import SYSTEM_PROMPT, edit_request, failure_message
from engine.session import Session

from tiny_models import build_model, build_tokenizer, save

TEMPLATES = {
    # name: (bos token, end-of-turn/eos token), as in each model's tokenizer config
    "deepseek-coder": ("<｜begin▁of▁sentence｜>", "<|EOT|>"),
    "deepseek-coder-v2": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "gemma2": ("<bos>", "<end_of_turn>"),
    "gemma3": ("<bos>", "<end_of_turn>"),
    "llama3.2": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral-nemo": ("<s>", "</s>"),
    "phi3.5": ("<s>", "<|end|>"),
    "phi4": ("<|endoftext|>", "<|im_end|>"),
    "qwen2.5": ("<|endoftext|>", "<|im_end|>"),
    "qwen3": ("<|endoftext|>", "<|im_end|>"),
    "starcoder2-instruct": ("<|endoftext|>", "<|endoftext|>"),
}
MARKERS = re.compile(r"<[|｜][^<>|｜\s]+[|｜]>|<(?:start|end)_of_turn>|\[/?INST\]")


def shared_dir() -> Path:
    return Path(
        os.environ.get("COPYSPEC_SHARED") or Path(__file__).resolve().parents[2] / "shared"
    )


def template_text(name: str) -> str:
    path = shared_dir() / "chat_templates" / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the chat templates are read from the shared reference data "
            "beside the clone; set COPYSPEC_SHARED=/path/to/shared"
        )
    return json.loads(path.read_text(encoding="utf-8"))["text"]


def template_tokenizer(name: str) -> PreTrainedTokenizerFast:
    """The tests' character-level tokenizer with this template and its special tokens.

    Characters, not BPE pieces: any answer a random model writes decodes and re-encodes to the
    same ids, so a re-prefill count measures the template, not the tokenizer's merges."""
    text = template_text(name)
    bos, eos = TEMPLATES[name]
    tokenizer = build_tokenizer()
    markers = sorted({*MARKERS.findall(text), bos, eos} - {"<|end|>"})
    tokenizer.add_special_tokens({"additional_special_tokens": markers})
    tokenizer.bos_token, tokenizer.eos_token = bos, eos
    tokenizer.chat_template = text
    return tokenizer


def save_template_model(name: str, directory: Path) -> Path:
    """A tiny llama with this template on disk, for the server to load as a user's model."""
    if not (directory / "config.json").exists():
        tokenizer = template_tokenizer(name)
        save(LoadedModel(build_model("llama", tokenizer, 0, 0.1), tokenizer, name,
                         torch.device("cpu"), torch.float32), directory)
    return directory


def template_model(name: str, seed: int = 0, mixing: float = 0.1) -> LoadedModel:
    """A tiny llama for this template whose head never picks a special token but EOS, as a
    trained chat model's does not: a stray one is dropped from the decoded answer, so the
    history would differ from the cache for a reason that has nothing to do with templates."""
    tokenizer = template_tokenizer(name)
    model = build_model("llama", tokenizer, seed, mixing)
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        for token_id in tokenizer.added_tokens_decoder:
            if token_id != tokenizer.eos_token_id:
                biased.bias[token_id] = -1e4
    model.lm_head = biased.eval()
    return LoadedModel(model, tokenizer, f"tiny-llama-{name}", torch.device("cpu"), torch.float32)


REGION = "def add(a, b):\n    total = a + b\n    return total"
TURNS = (
    edit_request(REGION, "Rename total to acc.", "python"),
    "Now add a docstring.",
    failure_message(["SyntaxError: invalid syntax (line 2)"]),
)


@dataclass
class Reuse:
    """Tokens prefilled on a later turn, against the ideal: only what the previous turn did
    not leave in the cache (the previous turn's closing tokens, the new user message and the
    generation prompt)."""

    prefilled: int
    ideal: int
    answer: int  # tokens the previous answer had


def measure(name: str, max_new_tokens: int = 24) -> list[Reuse]:
    """Turns 2 and 3 of a refine -> follow-up -> fix session, through the real Session."""
    lm = template_model(name)
    session = Session(lm, SpecConfig("copy"), system=SYSTEM_PROMPT)
    previous: list[int] | None = None
    rows, answer = [], 0
    for message in TURNS:
        result = session.send(message, max_new_tokens)
        if previous is not None:
            ideal = len(result.prompt_ids) - len(previous)
            rows.append(Reuse(result.stats.prefill_tokens, ideal, answer))
        previous = result.prompt_ids + result.token_ids
        answer = len(result.token_ids)
    return rows


def table() -> str:
    """The markdown table for docs/chat_templates.md."""
    lines = [
        "| template | system prompt | turn 2 prefilled / ideal | turn 3 prefilled / ideal |",
        "|---|---|---|---|",
    ]
    for name in TEMPLATES:
        fmt = chat_format(template_tokenizer(name))
        where = "folded into 1st user message" if fmt.fold_system else "system role"
        if fmt.takes_thinking:
            where += ", `enable_thinking=False`"
        cells = [f"{r.prefilled} / {r.ideal}" for r in measure(name)]
        lines.append(f"| {name} | {where} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(table())
