"""GPU readiness check: every device-dependent claim measured in one run under one deadline.

GPU time is short and may come once, so each stage is a subprocess with its own time limit,
later stages get a shrinking share of what is left (and smaller sizes, said in the report),
and a stage that is missing, fails or times out is reported with its stderr tail while the
run goes on. The report (report.md, report.json, stages.png) is always written. Started by
scripts/gpu_check.sh, which prepares the interpreter; see docs/gpu.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "engine" / "models" / "demo"
"""The 2M demo model and its draft: the bench and server stages need a fast model with a draft."""
WIDTHS = [2**i for i in range(10)]
"""New tokens per verification pass in the cost curve: 1, 2, 4 … 512."""
CONTEXTS = [1024, 8192, 32768]
SHAPES = ["qwen2.5-coder-1.5b", "qwen2.5-coder-7b"]
BIG_SHAPE, BIG_SHAPE_GIB = "qwen2.5-coder-32b", 100
"""The 32B shape runs only where the GPU has this much memory (65 GB of bf16 weights + cache)."""
DRY_SHAPE = "builtin"
"""The dry run's model shape: the built-in model, tiny and real."""
REPLAY_LIMIT = 3
"""Requests per replay workload at full size: a timed plain decode of a 1.5B-7B shape is ~25 ms
a token at batch 1, so a few hundred-token requests per workload fill a stage."""
DECODE_WORKLOADS = ("single_file", "multi_turn")
"""What the decode stages replay: whole-file rewrites and chains (three turns per record)."""
DECODE_PLAIN_TOKENS = 128
"""Plain decoding is timed over each target's first tokens only: its rate barely changes along
a target, and a whole file (~3,000 tokens) would cost it a minute eagerly on a 7B shape."""
MINIMUM = 15.0
"""Seconds a stage gets at least (starting Python with torch takes some); with less left it is
skipped."""
TAIL = 2000
"""Characters of a failed stage's output kept in the report."""


@dataclass
class Run:
    """What every stage's command is built from."""

    device: str
    dry: bool
    out: Path
    shared: Path
    gib: float = 0.0
    """GPU memory, once the device stage has seen it."""

    @property
    def fast_dtype(self) -> str:
        return "float32" if self.device == "cpu" else "bfloat16"

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]


Command = Callable[[Run, float, Path], list[str] | str]
"""(run, scale in (0, 1], stage folder) → argv, or a string saying why the stage is skipped."""


@dataclass
class Stage:
    name: str
    what: str
    budget: float
    """Seconds on an H100/H200 at full size; the dry run scales all budgets alike."""
    command: Command
    needs: str | None = None
    """A file of the checkout the command runs; without it the stage fails as not found."""
    sized: bool = False
    """Whether its sizes follow the scale (a dry run's tiny sizes never do)."""
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    name: str
    what: str
    status: str
    seconds: float
    limit: float
    scale: float | None
    """Share of the full size it ran at; None for stages of one size."""
    command: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    tail: str = ""
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "passed"


def pytest_stage(run: Run, dtype: str) -> Stage:
    """The architecture matrix (greedy, copy, copy+draft against generate) on the device."""
    test = "tests/test_architectures.py"

    def command(run: Run, scale: float, folder: Path) -> list[str]:
        pick = ["-k", "llama"] if run.dry else []  # one architecture proves the plumbing
        return run.python("-m", "pytest", test, "-q", "-p", "no:cacheprovider", "-m", "not slow",
                          *pick, f"--junitxml={folder / 'junit.xml'}")

    return Stage(f"identity-{dtype}", f"architecture matrix in {dtype}: engine methods "
                 "token for token against generate", 40, command, needs=test,
                 env={"COPYSPEC_TEST_DEVICE": run.device, "COPYSPEC_TEST_DTYPE": dtype})


def divergence_stage() -> Stage:
    def command(run: Run, scale: float, folder: Path) -> list[str]:
        pick = ["--families", "llama"] if run.dry else []
        return run.python("scripts/measure_divergence.py", "--device", run.device,
                          "--dtype", "bfloat16", *pick, "--out", str(folder))

    return Stage("divergence-bfloat16", "first-divergence rate per architecture in bf16 "
                 "(near-ties)", 30, command, needs="scripts/measure_divergence.py")


def costs_stage(shape: str, budget: float) -> Stage:
    def command(run: Run, scale: float, folder: Path) -> list[str] | str:
        if shape == BIG_SHAPE and run.gib < BIG_SHAPE_GIB:
            return f"needs {BIG_SHAPE_GIB} GiB of GPU memory; this device has {run.gib:.0f}"
        contexts = [128, 512] if run.dry else CONTEXTS[: max(1, round(len(CONTEXTS) * scale))]
        widths = WIDTHS[:5] if run.dry else WIDTHS
        return run.python("-m", "engine.cli", "bench", "costs", "--model-shape", shape,
                          "--widths", joined(widths), "--contexts", joined(contexts),
                          "--device", run.device, "--dtype", run.fast_dtype, "--out", str(folder))

    return Stage(f"costs-{shape}", f"{shape}: one forward over 1…512 new tokens at 1k/8k/32k "
                 "context, CUDA-event times, host syncs per step", budget, command, sized=True)


def replay_stage(shape: str, budget: float) -> Stage:
    def command(run: Run, scale: float, folder: Path) -> list[str] | str:
        workloads = sorted((run.shared / "replay").glob("*.jsonl"))
        # GPT-2's ids run past the demo model's 4096: it reads its own tokenizer (the
        # command's default), and a real shape reads GPT-2's.
        gpt2 = run.shared / "tokenizers" / "gpt2"
        tokenizer = [] if shape == DRY_SHAPE else ["--tokenizer", str(gpt2)]
        if not workloads or (tokenizer and not gpt2.is_dir()):
            return f"no replay workloads or GPT-2 tokenizer under {run.shared} (pass --shared)"
        limit = 1 if run.dry else max(1, round(REPLAY_LIMIT * scale))
        short = ["--max-target-tokens", "16"] if run.dry else []
        return run.python("-m", "engine.cli", "bench", "replay",
                          "--workload", *map(str, workloads), *tokenizer,
                          "--timed", "--model-shape", shape, "--device", run.device,
                          "--dtype", run.fast_dtype, "--limit", str(limit), *short,
                          "--out", str(folder))

    return Stage(f"replay-{shape}", f"{shape}: timed oracle replay, tok/s per request, "
                 "plain against copy", budget, command, sized=True)


def decode_stage(shape: str, budget: float) -> Stage:
    def command(run: Run, scale: float, folder: Path) -> list[str] | str:
        workloads = [run.shared / "replay" / f"{name}.jsonl" for name in DECODE_WORKLOADS]
        gpt2 = run.shared / "tokenizers" / "gpt2"
        tokenizer = [] if shape == DRY_SHAPE else ["--tokenizer", str(gpt2)]
        if not all(path.exists() for path in workloads) or (tokenizer and not gpt2.is_dir()):
            return (f"no {' or '.join(DECODE_WORKLOADS)} workload or GPT-2 tokenizer under "
                    f"{run.shared} (pass --shared)")
        # A CPU dry run traces the compiled path without inductor's minutes of code generation.
        sizes = (["--max-target-tokens", "16", "--identity-tokens", "16", "--trace-only"]
                 if run.dry else ["--plain-tokens", str(DECODE_PLAIN_TOKENS)])
        return run.python("-m", "engine.cli", "bench", "decode",
                          "--workload", *map(str, workloads), *tokenizer, "--limit", "1",
                          "--model-shape", shape, "--compile", "on", "--eager-first",
                          "--device", run.device, "--dtype", run.fast_dtype, *sizes,
                          "--out", str(folder))

    return Stage(f"decode-{shape}", f"{shape}: plain, HF prompt lookup and ours (the cost-aware "
                 "default) through the engine's decode loop, eager then compiled (--compile "
                 "on): tok/s per request on a whole-file rewrite and a 3-turn chain, identity "
                 "by real decoding first", budget, command)


def bench_stage() -> Stage:
    def command(run: Run, scale: float, folder: Path) -> list[str]:
        # One task per workload: a 160-token turn is ~1 s per method at ~7 ms a pass.
        files = sorted((REPO / "benchmarks").glob("*.jsonl"))
        files = files[:1] if run.dry else files[: max(1, round(len(files) * scale))]
        tasks = [first_task(path, folder / "tasks") for path in files]
        methods = "greedy,copy" if run.dry else "greedy,pld,copy,copy+draft"
        return run.python("-m", "engine.cli", "bench", "--tasks", *map(str, tasks),
                          "--model", str(DEMO_MODEL), "--methods", methods, "--repeats", "1",
                          "--max-new-tokens", "48" if run.dry else "160",
                          "--device", run.device, "--dtype", run.fast_dtype, "--out", str(folder))

    return Stage("bench", "demo model (and its draft): identity first, then tok/s per method and "
                 "workload", 20, command, sized=True)


def server_stage() -> Stage:
    def command(run: Run, scale: float, folder: Path) -> list[str]:
        return run.python("scripts/lsp_smoke.py", "--device", run.device,
                          "--model", str(DEMO_MODEL), "--dtype", run.fast_dtype,
                          "--out", str(folder))

    return Stage("server", "copyspec-lsp over stdio on the demo model: a refine streams, "
                 "$/cancelRequest stops it within a step (2 passes of the chunk it answers)", 25,
                 command, needs="scripts/lsp_smoke.py")


def device_stage() -> Stage:
    probe = ("import json, torch; c = torch.cuda.is_available(); p = c and "
             "torch.cuda.get_device_properties(0); print(json.dumps({'torch': torch.__version__,"
             " 'cuda': torch.version.cuda, 'available': c, 'name': p.name if c else 'cpu',"
             " 'gib': round(p.total_memory / 2**30, 1) if c else 0}))")

    def command(run: Run, scale: float, folder: Path) -> list[str]:
        return run.python("-c", probe + ("" if run.device == "cpu" else "; assert c, 'no CUDA'"))

    return Stage("device", "the interpreter sees the device (torch, CUDA, memory)", 15, command)


def joined(numbers: list[int]) -> str:
    return ",".join(map(str, numbers))


def first_task(path: Path, folder: Path) -> Path:
    """The first task of a workload file, in a file of the same name (the workload's name)."""
    folder.mkdir(parents=True, exist_ok=True)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    (folder / path.name).write_text(first + "\n", encoding="utf-8")
    return folder / path.name


def stages(run: Run) -> list[Stage]:
    shapes = [DRY_SHAPE] if run.dry else SHAPES
    dtypes = ["float32"] if run.dry else ["float32", "bfloat16"]
    big = [] if run.dry else [costs_stage(BIG_SHAPE, 35)]
    # The decode stages come last: compiling is the one step whose time is unknown, and
    # they get what the others leave.
    return [
        device_stage(),
        *(pytest_stage(run, dtype) for dtype in dtypes),
        divergence_stage(),
        *(costs_stage(shape, 25 + 5 * i) for i, shape in enumerate(shapes)),
        *big,
        *(replay_stage(shape, 30 + 5 * i) for i, shape in enumerate(shapes)),
        bench_stage(),
        server_stage(),
        *(decode_stage(shape, 90 + 10 * i) for i, shape in enumerate(shapes)),
    ]


def run_stage(stage: Stage, run: Run, limit: float, scale: float) -> Result:
    """The one stage runner: build the command, run it under its limit, classify the end."""
    folder = run.out / stage.name
    folder.mkdir(parents=True, exist_ok=True)
    sized = stage.sized and not run.dry
    result = Result(stage.name, stage.what, "", 0.0, round(limit), round(scale, 2) if sized
                    else None)
    if stage.needs and not (REPO / stage.needs).exists():
        result.status = f"failed: command not found ({stage.needs} is not in this checkout)"
        return result
    argv = stage.command(run, scale, folder)
    if isinstance(argv, str):
        result.status = f"skipped: {argv}"
        return result
    result.command = shlex.join(argv).replace(sys.executable, "python")
    env = {**os.environ, **stage.env, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    if run.device == "cpu":  # tiny models run fastest on one thread (tests/conftest.py)
        env.setdefault("OMP_NUM_THREADS", "1")
    began = time.monotonic()
    output, code = execute(argv, env, limit)
    result.seconds = round(time.monotonic() - began, 1)
    usage = code == 2 and "usage:" in output
    result.status = ("passed" if code == 0 else f"failed: timed out after {limit:.0f} s"
                     if code is None else "failed: command or option not found (usage error)"
                     if usage else f"failed: exit {code}")
    (folder / "output.log").write_text(output, encoding="utf-8")
    if not result.ok:
        result.tail = output[-TAIL:]
    try:  # a file half-written by a kill, or short of a key, costs the figures only
        result.figures = figures(stage.name, folder, output)
    except (OSError, ValueError, KeyError, ET.ParseError, IndexError) as error:
        result.figures = {"unreadable": str(error)}
    result.files = sorted(str(p.relative_to(run.out)) for p in folder.rglob("*")
                          if p.is_file() and p.parent.name != "tasks")
    return result


def execute(argv: list[str], env: dict[str, str], limit: float) -> tuple[str, int | None]:
    """(stdout and stderr, exit status or None on timeout). The command runs in a process
    group of its own that is killed whole afterwards, so nothing it started (a server, test
    workers) lives on holding the GPU or the output pipe."""
    with subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace",
                          start_new_session=True) as process:
        try:
            output, _ = process.communicate(timeout=limit)
            code: int | None = process.returncode
        except subprocess.TimeoutExpired:
            code = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if code is None:
            output, _ = process.communicate()
    return output, code


def figures(name: str, folder: Path, output: str) -> dict[str, Any]:
    """The few numbers the summary table shows; each tool's own report has the rest."""
    if (folder / "junit.xml").exists():
        suite = ET.parse(folder / "junit.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts = {k: int(suite.get(k, 0)) for k in ("failures", "errors", "skipped")}
        return {"passed": int(suite.get("tests", 0)) - sum(counts.values()), **counts}
    if (folder / "smoke.json").exists():
        smoke = json.loads((folder / "smoke.json").read_text())
        return smoke.get("cancel", {}) | {"refine_tok_s": round(
            smoke.get("refine", {}).get("stats", {}).get("tokens_per_second", 0), 1)}
    if (folder / "costs.json").exists():
        meta = json.loads((folder / "costs.json").read_text())["meta"]
        return {"suggested_max_block": meta["suggested_max_block"]}
    if (folder / "decode.json").exists():
        found: dict[str, Any] = {}
        for path, result in json.loads((folder / "decode.json").read_text())["paths"].items():
            checks = result["identity"]
            same = sum(all(check["identical"].values()) for check in checks)
            found[f"{path} identical"] = f"{same}/{len(checks)}"
            found[f"{path} setup s"] = result["setup_s"]
            for workload, cell in result["summary"].items():
                if workload != "all":
                    found[f"{path} {workload} tok/s plain/PLD/ours"] = " / ".join(
                        f"{cell[method]['tok_s']:.0f}" for method in ("plain", "HF prompt "
                                                                      "lookup", "ours"))
        return found
    if (folder / "replay.json").exists():
        timed = json.loads((folder / "replay.json").read_text())["timed"]["summary"]["all"]
        return {f"{method} tok/s": rate for method, rate in timed["tok_s"].items()} | {
            "speedup": timed["speedup"]}
    found = [line for line in output.splitlines() if line.startswith("{")]
    return json.loads(found[-1]) if name == "device" and found else {}


def share(budgets: list[float], left: float, unit: float, minimum: float) -> tuple[float, float]:
    """(time limit, scale) of the next stage: its budget's share of the time left, but at least
    `minimum` (earlier stages matter more), and that share against its budget (in units of
    `unit` seconds per budgeted second)."""
    limit = max(left * budgets[0] / sum(budgets), min(minimum, left))
    return limit, min(1.0, limit / (unit * budgets[0]))


def check(run: Run, deadline: float, minimum: float) -> list[Result]:
    began = time.monotonic()
    results: list[Result] = []
    todo = stages(run)
    # A dry run fits its whole plan into its own deadline; a real one is short of time only
    # when the deadline is below the budgets.
    unit = deadline / sum(s.budget for s in todo) if run.dry else 1.0
    for index, stage in enumerate(todo):
        left = deadline - (time.monotonic() - began)
        limit, scale = share([s.budget for s in todo[index:]], left, unit, minimum)
        if left < minimum:
            results.append(Result(stage.name, stage.what, f"skipped: only {left:.0f} s left of "
                                  f"the {deadline:.0f} s deadline", 0.0, round(left), None))
        else:
            results.append(run_stage(stage, run, limit, scale))
            if stage.name == "device":  # the 32B cost curve runs only where it fits
                run.gib = float(results[-1].figures.get("gib", 0))
        print(f"{results[-1].name}: {results[-1].status} ({results[-1].seconds} s)", flush=True)
    return results


def write_report(run: Run, results: list[Result], deadline: float, total: float) -> None:
    device = results[0].figures
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv), "device": device.get("name", "unknown"),
        "torch": device.get("torch"), "cuda": device.get("cuda"), "dry_run": run.dry,
        "deadline_s": deadline, "total_s": round(total, 1),
        "scaled": [r.name for r in results if r.command and r.scale is not None and r.scale < 1],
    }
    (run.out / "report.json").write_text(json.dumps(
        {"meta": meta, "stages": [asdict(r) for r in results]}, indent=2), encoding="utf-8")
    lines = [f"# GPU check: {meta['device']}{' (dry run)' if run.dry else ''}", "",
             f"{meta['date']}, torch {meta['torch']}, CUDA {meta['cuda']}; "
             f"{meta['total_s']} s of a {deadline:.0f} s deadline. `{meta['command']}`", ""]
    if meta["scaled"]:
        lines += [f"**Time ran short**: {', '.join(meta['scaled'])} ran at reduced size "
                  "(the scale column: share of the full size).", ""]
    lines += ["| stage | status | s / limit | scale | figures |", "|---|---|---|---|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds} / {r.limit} | "
              f"{'–' if r.scale is None else r.scale} | "
              f"{', '.join(f'{k} {v}' for k, v in r.figures.items())} |" for r in results]
    plotted = plot(run.out / "stages.png", results, meta["device"])
    lines += ["", "![stage times](stages.png)" if plotted else "(no plot: matplotlib is missing)",
              ""]
    for r in results:
        lines += [f"## {r.name}", "", f"{r.what}. **{r.status}**.", ""]
        lines += [f"`{r.command}`", ""] if r.command else []
        lines += [f"Files: {', '.join(f'[{f}]({f})' for f in r.files)}", ""] if r.files else []
        lines += ["```", r.tail.strip(), "```", ""] if r.tail.strip() else []
        lines += [demoted((run.out / f).read_text(encoding="utf-8")) for f in r.files
                  if f.endswith(".md")]
    (run.out / "report.md").write_text("\n".join(lines), encoding="utf-8")


def demoted(markdown: str) -> str:
    """A stage tool's own Markdown report, its headings (not code comments) moved below the
    stage's."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        fenced ^= line.startswith("```")
        lines.append("##" + line if line.startswith("#") and not fenced else line)
    return "\n".join(lines) + "\n"


def plot(path: Path, results: list[Result], device: str) -> bool:
    """Time used against the limit per stage. Imported here: on a machine whose install
    failed, the report is still written, without its plot."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(7, 0.4 * len(results) + 1.2))
    ax = fig.subplots()
    names = [r.name for r in results][::-1]
    ax.barh(names, [r.limit for r in results][::-1], color="#dddddd", label="limit")
    ax.barh(names, [r.seconds for r in results][::-1], label="used",
            color=["#4c9a2a" if r.ok else "#c0392b" for r in results][::-1])
    ax.set_xlabel("seconds")
    ax.set_title(f"GPU check stages on {device} (green passed, red not)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def default_shared() -> Path:
    """shared/ inside the checkout (where the GPU machine gets a copy) or beside it."""
    inside = REPO / "shared"
    return inside if inside.is_dir() else REPO.parent / "shared"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes and counts")
    parser.add_argument("--out", type=Path, default=Path("gpu-check"))
    parser.add_argument("--shared", type=Path, default=default_shared(),
                        help="folder holding replay/*.jsonl and tokenizers/gpt2 "
                        "(default: shared/ in or beside the checkout)")
    parser.add_argument("--deadline", type=float, help="seconds for all stages "
                        "(default 480, 240 for a dry run)")
    args = parser.parse_args()
    deadline = args.deadline or (240.0 if args.dry_run else 480.0)
    run = Run(args.device, args.dry_run, args.out.resolve(), args.shared.resolve())
    run.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    results = check(run, deadline, minimum=MINIMUM)
    write_report(run, results, deadline, time.monotonic() - began)
    print(f"wrote {run.out / 'report.md'}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
