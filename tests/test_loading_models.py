"""Loading real-world model directories: device strings, accelerate placement with disk
offload, remote code (off by default) whose forward predates `logits_to_keep`, the server's
`trustRemoteCode` setting, and GGUF files transformers cannot read (tests/test_real_weights.py
loads a real one)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from gguf import GGMLQuantizationType

from copyspec_lsp.adapters.model_host import load_models, load_notices
from copyspec_lsp.adapters.settings import Settings
from engine.compiled import decodes_compiled
from engine.config import SpecConfig, device_name
from engine.loading import REMOTE_CODE_WARNING, LoadedModel, ModelLoadError, load_model
from engine.paths import GGUF_KIND, locate_model
from engine.sequence import SequenceState
from engine.turn import generate_ids

from architectures import tiny
from gguf_files import cut, write_gguf
from lsp_fixtures import tiny_model

PROMPT = "def add(a, b):\n    return a + b\n" * 3 + "def add("


@pytest.mark.timeout(30)
def test_device_strings() -> None:
    for good in ("auto", "cpu", "cuda", "cuda:0", "cuda:7", "mps"):
        assert device_name(good) == good
    for bad in ("tpu", "cuda:", "cuda:x", "CPU", ""):
        with pytest.raises(ValueError, match="unknown device"):
            device_name(bad)
    assert Settings().update({"device": "cuda:1"})[0].device == "cuda:1"
    settings, problems = Settings().update({"device": "gpu"})
    assert settings.device == "auto" and "unknown device" in problems[0]


@pytest.mark.timeout(30)
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a GPU-less host")
def test_absent_devices_are_refused_by_name(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"'cuda:1'.*no CUDA GPU"):
        load_model(tiny_model_dir, device="cuda:1")
    if not torch.backends.mps.is_available():
        with pytest.raises(ModelLoadError, match=r"'mps'.*no Apple GPU"):
            load_model(tiny_model_dir, device="mps")


@pytest.mark.timeout(60)
def test_auto_placement_offloads_to_disk_and_stays_lossless(
    tiny_model_dir: Path, copying_llama: LoadedModel, tmp_path: Path
) -> None:
    """A CPU budget smaller than the model: accelerate keeps some layers on disk and streams
    them in per forward. Greedy and copy decoding still give generate's tokens."""
    lm = load_model(tiny_model_dir, device="auto", max_memory={"cpu": "300KB"},
                    offload_folder=tmp_path / "offload")
    assert set(lm.model.hf_device_map.values()) == {"cpu", "disk"}
    assert lm.device == torch.device("cpu")
    ids = lm.tokenizer(PROMPT)["input_ids"]
    expected = copying_llama.model.generate(
        torch.tensor([ids]), do_sample=False, max_new_tokens=40,
        pad_token_id=lm.tokenizer.eos_token_id,
    )[0, len(ids) :].tolist()
    assert generate_ids(lm, ids, SpecConfig(method="greedy"), 40)[0] == expected
    tokens, stats = generate_ids(lm, ids, SpecConfig(), 40)
    assert tokens == expected and stats.copied_tokens > 0


OLD_MODELING = '''
from transformers import LlamaConfig, LlamaForCausalLM


class OldConfig(LlamaConfig):
    model_type = "old-llama"


class OldForCausalLM(LlamaForCausalLM):
    """A forward written before transformers had `logits_to_keep` or `cache=`."""

    config_class = OldConfig

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None,
                position_ids=None, use_cache=None, return_dict=None):
        return super().forward(input_ids=input_ids, past_key_values=past_key_values,
                               attention_mask=attention_mask, position_ids=position_ids,
                               use_cache=use_cache)
'''


def remote_code_model(lm: LoadedModel, directory: Path) -> Path:
    """`lm`'s weights under a custom model type whose code ships in the directory."""
    lm.model.save_pretrained(directory)
    lm.tokenizer.save_pretrained(directory)
    (directory / "modeling_old.py").write_text(textwrap.dedent(OLD_MODELING))
    config = json.loads((directory / "config.json").read_text())
    config.update(model_type="old-llama", architectures=["OldForCausalLM"], auto_map={
        "AutoConfig": "modeling_old.OldConfig",
        "AutoModelForCausalLM": "modeling_old.OldForCausalLM",
    })
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.timeout(60)
def test_remote_code_is_off_by_default_and_old_forwards_work(tmp_path: Path) -> None:
    lm = tiny("llama", seed=1)
    directory = remote_code_model(lm, tmp_path / "old")
    with pytest.raises(ModelLoadError, match="old"):
        load_model(directory, device="cpu")
    remote = load_model(directory, device="cpu", trust_remote_code=True)
    assert type(remote.model).__name__ == "OldForCausalLM"
    assert SequenceState(remote.model).call.keeps_logits is False
    ids = lm.tokenizer(PROMPT)["input_ids"]
    expected = generate_ids(lm, ids, SpecConfig(method="greedy"), 32)[0]
    for method in ("greedy", "copy"):
        assert generate_ids(remote, ids, SpecConfig(method=method), 32)[0] == expected


@pytest.mark.timeout(30)
def test_trust_remote_code_setting_is_off_by_default_and_warned_about() -> None:
    assert Settings().trust_remote_code is False
    settings, problems = Settings().update({"trustRemoteCode": True})
    assert settings.trust_remote_code and not problems
    assert Settings().needs_reload(settings)
    bad, problems = Settings().update({"trustRemoteCode": "yes"})
    assert bad.trust_remote_code is False and "trustRemoteCode" in problems[0]
    lm = tiny("llama")
    assert load_notices(lm, settings) == [REMOTE_CODE_WARNING]
    assert load_notices(lm, Settings()) == []
    notices = load_notices(tiny("lfm2"), Settings())
    assert len(notices) == 1 and "recurrent" in notices[0]


@pytest.mark.timeout(30)
def test_a_gguf_file_is_located_by_its_magic_under_any_name(tmp_path: Path) -> None:
    """Ollama keeps its GGUF files as blobs named by digest, without an extension."""
    good = write_gguf(tmp_path / "model.gguf")
    blob = tmp_path / "sha256-0123abcd"
    blob.write_bytes(good.read_bytes())
    for path in (good, blob):
        assert locate_model(str(path)) == (str(path), GGUF_KIND)
    (tmp_path / "notes.txt").write_text("not a model\n")
    with pytest.raises(ModelLoadError, match="is a file but not a GGUF file"):
        locate_model(str(tmp_path / "notes.txt"))


UNREADABLE = {
    "architecture": ({"architecture": "rwkv7"}, None,
                     "GGUF model with architecture rwkv7 is not supported"),
    "quantization": ({"quantization": GGMLQuantizationType.Q8_1}, None,
                     "it holds tensors quantized as Q8_1, which transformers cannot dequantize"),
    "last tensor cut": ({}, -8, "it is truncated: "),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", UNREADABLE)
def test_gguf_files_transformers_cannot_read_get_one_line_naming_them(
    case: str, tmp_path: Path
) -> None:
    """These pass the command lines' early header check; loading refuses them with the reason
    (the truncation and the quantization before transformers reads anything)."""
    options, keep, reason = UNREADABLE[case]
    path = write_gguf(tmp_path / "model.gguf", **options)
    if keep is not None:
        size = path.stat().st_size
        path = cut(path, tmp_path / "cut.gguf", keep)
        reason += f"{size + keep:,} bytes, but its tensor data ends at byte {size:,}"
    assert locate_model(str(path))[1] == GGUF_KIND
    with pytest.raises(ModelLoadError) as refused:
        load_model(path, device="cpu")
    message = str(refused.value)
    assert "\n" not in message and repr(str(path)) in message and reason in message, message


@pytest.mark.timeout(60)
def test_the_compile_setting_reaches_the_target_and_the_draft(tmp_path: Path) -> None:
    """The server's `compile` setting is the engine's per-model switch, for both models."""
    model = str(tiny_model(tmp_path))
    for setting, compiled in (("on", True), ("off", False)):
        settings = Settings(model=model, draft_model=model, device="cpu", compile=setting)
        lm, draft = load_models(settings)
        assert isinstance(lm, LoadedModel) and draft is not None
        assert decodes_compiled(lm.model) is compiled and decodes_compiled(draft.model) is compiled
