"""Bad input to `copyspec` and `copyspec-lsp` gets one line on stderr and exit status 2 at
once: each case runs the real entry point in a fresh interpreter, with a time bound, and checks
that torch was never imported (importing it alone takes seconds, so it must come after the
checks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from copyspec_lsp.__main__ import build_parser, settings_from
from engine.cli import build_parser as build_copyspec_parser

from gguf_files import cut, write_gguf

pytestmark = pytest.mark.timeout(60)

RUN = """
import sys
from {module} import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
if "torch" in sys.modules:
    sys.stderr.write("TORCH WAS IMPORTED\\n")
sys.exit(code if isinstance(code, int) else 1)
"""
LIMIT = 1.0
"""Seconds an answer may take on an idle machine; a busy one gets BUSY_FACTOR times that."""
BUSY_FACTOR = 8
ENTRY = {"copyspec": "engine.cli", "copyspec-lsp": "copyspec_lsp.__main__"}


def run(tool: str, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", RUN.format(module=ENTRY[tool]), *args],
        capture_output=True, text=True, timeout=50, env=env,
    )
    return done, time.perf_counter() - started


def baseline() -> float:
    """Seconds a bare interpreter takes to start now, so a loaded machine does not fail us."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=50)
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    latin1 = root / "latin1.txt"
    latin1.write_bytes("def café():\n    pass\n".encode("latin-1"))
    empty = root / "empty-model"
    empty.mkdir()
    chat = root / "chat.json"
    chat.write_text("[1, 2]", encoding="utf-8")
    broken = root / "broken.json"
    broken.write_text("[", encoding="utf-8")
    not_gguf = root / "x.gguf"
    not_gguf.write_text("not a model\n", encoding="utf-8")
    downloads = root / "downloads"
    downloads.mkdir()
    good = write_gguf(downloads / "model.gguf")
    size = good.stat().st_size
    return {"latin1": str(latin1), "empty": str(empty), "chat": str(chat),
            "broken": str(broken), "missing": str(root / "missing.txt"),
            "not_gguf": str(not_gguf), "gguf_dir": str(downloads), "good_gguf": str(good),
            "cut_header": str(cut(good, root / "cut-header.gguf", 60)),
            "cut_data": str(cut(good, root / "cut-data.gguf", size // 2))}


NOT_GGUF = "is a file but not a GGUF file (it does not start with the GGUF magic bytes)"
CUT_HEADER = "GGUF file '{cut_header}': it is truncated: its header runs past the end"
CUT_DATA = "GGUF file '{cut_data}': it is truncated: "


GENERATE = [
    (["--prompt-file", "{latin1}"], "is not UTF-8 text (byte 0xe9"),
    (["--prompt-file", "{missing}"], "cannot read"),
    (["--chat-file", "{chat}"], "JSON list of strings"),
    (["--chat-file", "{broken}"], "is not valid JSON"),
    (["--prompt", "x", "--model", "{empty}"], "has no config.json"),
    (["--prompt", "x", "--model", "/no/such/dir"], "does not exist"),
    (["--prompt", "x", "--model", "nobody/no-such-model"], "not in the local Hugging Face cache"),
    (["--prompt", "x", "--draft-model", "{empty}"], "has no config.json"),
    (["--prompt", "x", "--model", "{not_gguf}"], NOT_GGUF),
    (["--prompt", "x", "--model", "{cut_header}"], CUT_HEADER),
    (["--prompt", "x", "--draft-model", "{cut_data}"], CUT_DATA),
    (["--prompt", "x", "--model", "{gguf_dir}"], "it holds GGUF files: name one, e.g. "
     "'{good_gguf}'"),
    (["--prompt", "x", "--max-new-tokens", "0"], "--max-new-tokens: must be at least 1"),
    (["--prompt", "x", "--threads", "0"], "--threads: must be at least 1"),
    (["--prompt", "x", "--threads", "two"], "expected a whole number"),
    (["--prompt", "x", "--gamma", "0"], "--gamma: must be at least 1"),
    (["--prompt", "x", "--block", "-3"], "--block: must be at least 1"),
    (["--prompt", "x", "--max-block", "0"], "--max-block: must be at least 1"),
    (["--prompt", "x", "--block", "20", "--max-block", "8"], "max_block (8) must be at least"),
    (["--prompt", "x", "--draft-block", "0"], "--draft-block: must be at least 1"),
    (["--prompt", "x", "--temperature", "-1"], "--temperature: must be 0 or more"),
    (["--prompt", "x", "--top-p", "0"], "--top-p: must be above 0"),
    (["--prompt", "x", "--top-p", "1.5"], "--top-p: must be above 0"),
    (["--prompt", "x", "--top-k", "-1"], "--top-k: must be 0 or more"),
    (["--prompt", "x", "--device", "tpu"], "unknown device 'tpu'"),
    (["--prompt", "x", "--bogus"], "unrecognized arguments: --bogus"),
]
BENCH = [
    (["--tasks", "{missing}"], "missing.txt"),
    (["--tasks", "{chat}", "--methods", "greedy,beam"], "unknown method(s) beam"),
    (["--tasks", "{chat}", "--repeats", "0"], "--repeats: must be at least 1"),
    (["--tasks", "{chat}", "--max-new-tokens", "0"], "--max-new-tokens: must be at least 1"),
    (["--tasks", "{chat}", "--model", "{empty}"], "has no config.json"),
    (["--tasks", "{chat}", "--model", "{cut_data}"], CUT_DATA),
]
SERVE = [
    (["--model", "{not_gguf}"], NOT_GGUF),
    (["--draft-model", "{cut_header}"], CUT_HEADER),
]
LSP = [
    (["--port", "99999"], "a TCP port is 1 to 65535, got 99999"),
    (["--port", "0"], "a TCP port is 1 to 65535"),
    (["--port", "http"], "expected a whole number"),
    (["--max-new-tokens", "0"], "--max-new-tokens: must be at least 1"),
    (["--threads", "0"], "--threads: must be at least 1"),
    (["--gamma", "0"], "--gamma: must be at least 1"),
    (["--block", "0"], "--block: must be at least 1"),
    (["--model", "{empty}"], "has no config.json"),
    (["--draft-model", "/no/such/dir"], "does not exist"),
    (["--model", "{not_gguf}"], NOT_GGUF),
    (["--draft-model", "{cut_data}"], CUT_DATA),
    (["--log-level", "loud"], "invalid choice"),
]
CASES = (
    [("copyspec", ["generate", *args], message) for args, message in GENERATE]
    + [("copyspec", ["bench", *args], message) for args, message in BENCH]
    + [("copyspec", ["serve", *args], message) for args, message in SERVE]
    + [("copyspec-lsp", args, message) for args, message in LSP]
)


@pytest.mark.parametrize(("tool", "args", "message"), CASES,
                         ids=[f"{t} {' '.join(a)}" for t, a, _ in CASES])
def test_bad_input_gets_one_line_and_status_2_without_torch(
    tool: str, args: list[str], message: str, files: dict[str, str]
) -> None:
    argv = [arg.format(**files) for arg in args]
    start_up = baseline()
    done, seconds = run(tool, *argv)
    assert done.returncode == 2, done.stderr
    assert "TORCH WAS IMPORTED" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{tool}"), lines[0]
    assert message.format(**files) in lines[0]
    assert seconds < max(LIMIT, BUSY_FACTOR * start_up), (seconds, start_up)


@pytest.mark.parametrize("argv", [
    ("copyspec", "--help"), ("copyspec", "generate", "--help"), ("copyspec", "bench", "--help"),
    ("copyspec-lsp", "--help"), ("copyspec-lsp", "--version"),
])
def test_help_is_fast_and_imports_no_torch(argv: tuple[str, ...]) -> None:
    start_up = baseline()
    done, seconds = run(*argv)
    assert done.returncode == 0, done.stderr
    assert "TORCH WAS IMPORTED" not in done.stderr
    assert done.stdout.strip()
    assert seconds < max(LIMIT, BUSY_FACTOR * start_up), (seconds, start_up)


def test_lsp_flags_become_validated_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    parser = build_parser()
    args = parser.parse_args(["--tcp", "--port", "9000", "--model", str(model), "--gamma", "4",
                              "--max-new-tokens", "64", "--log-level", "debug", "--threads", "1",
                              "--no-cost-aware", "--compile", "off"])
    settings = settings_from(args, parser)
    assert (settings.cost_aware, settings.compile) == (False, "off")
    assert args.tcp and args.port == 9000
    assert (settings.model, settings.gamma, settings.max_new_tokens) == (str(model), 4, 64)
    assert settings.threads == 1
    assert settings.log_level == "DEBUG"
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--version"])
    assert exit_info.value.code == 0 and "copyspec-lsp 0.1.0" in capsys.readouterr().out


def test_bench_without_its_extra_says_what_to_install(files: dict[str, str]) -> None:
    """rich is installed here, so its absence is faked: a None entry in sys.modules is what
    importlib reports as "not installed"."""
    hide = "import sys; sys.modules['rich'] = None\n" + RUN.format(module="engine.cli")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", hide, "bench", "--tasks", files["chat"]],
                          capture_output=True, text=True, timeout=50, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "copyspec: error: copyspec bench needs rich: pip install 'copyspec-lsp[bench]'")


def test_a_gguf_file_is_a_model_to_every_command_line(files: dict[str, str]) -> None:
    """Accepted as given by `--model` and `--draft-model` of every tool (no torch yet)."""
    good = files["good_gguf"]
    copyspec = build_copyspec_parser()
    for command in (["generate", "--prompt", "x"], ["bench", "--tasks", files["chat"]],
                    ["serve"]):
        args = copyspec.parse_args([*command, "--model", good, "--draft-model", good])
        assert (args.model, args.draft_model) == (good, good)
    parser = build_parser()
    settings = settings_from(parser.parse_args(["--model", good, "--draft-model", good]), parser)
    assert (settings.model, settings.draft_model) == (good, good)


@pytest.mark.slow  # it imports torch and transformers: ~5 s
def test_a_gguf_file_transformers_cannot_read_gets_one_line_once_loading(
    tmp_path: Path
) -> None:
    """Past the early checks (the header is fine), loading refuses the architecture: still one
    line naming the file, no traceback, exit status 2."""
    model = write_gguf(tmp_path / "rwkv.gguf", architecture="rwkv7")
    done, _ = run("copyspec", "generate", "--prompt", "x", "--model", str(model))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert [line for line in lines if line != "TORCH WAS IMPORTED"] == [
        f"copyspec: error: could not load a causal LM from GGUF file {str(model)!r}: GGUF model "
        "with architecture rwkv7 is not supported yet."
    ]
