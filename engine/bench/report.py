"""Turning timed records into ratios: rich tables, results.json, PNG plots and the issue's targets.

Speeds are ratios of sums (all tokens over all seconds of a group), so long turns weigh as much
as they cost. tok/s is end to end per turn (prefill included): our sessions reuse the KV cache
across turns, while transformers' generate re-reads the conversation, and users feel both.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.bench import METHODS
from engine.bench.methods import copy_spec
from engine.bench.run import Record

ALL, LATER = "all", "2+"
Key = tuple[str, str, str]
"""(workload, turn label, method)."""


@dataclass
class Summary:
    """One group of records (a workload, a turn or turn range, a method) reduced to ratios."""

    workload: str
    turn: str
    method: str
    tokens: int
    seconds: float
    passes: int
    copied: int
    attempts: int
    drafted: int
    draft_attempts: int
    ttft: float
    context: float
    speedup_greedy: float | None = None
    speedup_pld: float | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "tokens_per_second": self.tokens_per_second,
            "passes_per_token": self.passes / self.tokens if self.tokens else 0.0,
            "copied_share": self.copied / self.tokens if self.tokens else 0.0,
            "tau": self.copied / self.attempts if self.attempts else 0.0,
            "drafted_share": self.drafted / self.tokens if self.tokens else 0.0,
            "draft_tau": self.drafted / self.draft_attempts if self.draft_attempts else 0.0,
        }


def summarize(records: Sequence[Record]) -> dict[Key, Summary]:
    """Groups per workload × (each turn, turns 2+, all turns) × method, plus workload 'all'."""
    groups: dict[Key, list[Record]] = defaultdict(list)
    for r in records:
        for workload in (r.workload, ALL):
            groups[workload, str(r.turn), r.method].append(r)
            groups[workload, ALL, r.method].append(r)
            if r.turn >= 2:
                groups[workload, LATER, r.method].append(r)
    summaries = {key: reduce(key, group) for key, group in groups.items()}
    for (workload, turn, _method), summary in summaries.items():
        for base, attr in (("greedy", "speedup_greedy"), ("pld", "speedup_pld")):
            other = summaries.get((workload, turn, base))
            if other is not None and other.tokens_per_second:
                setattr(summary, attr, summary.tokens_per_second / other.tokens_per_second)
    return summaries


def reduce(key: Key, group: Sequence[Record]) -> Summary:
    def total(field: str) -> int:
        return sum(int(r.stats[field]) for r in group)

    return Summary(
        *key, tokens=total("new_tokens"), seconds=sum(r.seconds for r in group),
        passes=total("forward_passes"), copied=total("copied_tokens"),
        attempts=total("copy_attempts"), drafted=total("drafted_tokens"),
        draft_attempts=total("draft_attempts"),
        ttft=statistics.median(float(r.stats["time_to_first_token"]) for r in group),
        context=statistics.fmean(r.prompt_tokens for r in group),
    )


def turn_order(turn: str) -> tuple[int, int]:
    return (1, 0) if turn == LATER else (2, 0) if turn == ALL else (0, int(turn))


def ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def summary_table(title: str, rows: Iterable[Summary]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("turn", "method", "tok/s", "× greedy", "× pld", "passes/tok", "copied",
                   "τ", "drafted", "τ₂", "TTFT ms", "context"):
        table.add_column(column, justify="left" if column in ("turn", "method") else "right",
                         no_wrap=True)
    previous = None
    for s in rows:
        d = s.as_dict()
        table.add_row(
            s.turn if s.turn != previous else "", escape(s.method), f"{s.tokens_per_second:.1f}",
            ratio(s.speedup_greedy), ratio(s.speedup_pld), f"{d['passes_per_token']:.2f}",
            f"{d['copied_share']:.0%}", f"{d['tau']:.1f}", f"{d['drafted_share']:.0%}",
            f"{d['draft_tau']:.1f}", f"{1000 * s.ttft:.0f}",
            f"{s.context:.0f}",
        )
        previous = s.turn
    return table


def main_methods(methods: Sequence[str]) -> list[str]:
    return [m for m in methods if m in METHODS]


def print_tables(console: Console, summaries: dict[Key, Summary], methods: Sequence[str]) -> None:
    """Per workload: each turn, turns 2+ and all turns, for the main methods; then ablations."""
    workloads = sorted({w for w, _, _ in summaries if w != ALL})
    main = main_methods(methods)
    for workload in workloads:
        turns = sorted({t for w, t, _ in summaries if w == workload}, key=turn_order)
        rows = [summaries[workload, t, m] for t in turns for m in main
                if (workload, t, m) in summaries]
        console.print(summary_table(f"Workload {workload}", rows))
    ablations = [m for m in methods if m not in METHODS or m in ("copy", "copy-fixed")]
    if len(ablations) > 2:
        rows = [summaries[ALL, ALL, m] for m in ["greedy", *ablations]]
        console.print(summary_table("Ablations, all workloads and turns", rows))


@dataclass
class Target:
    """One of the issue's targets, measured."""

    name: str
    goal: str
    measured: str
    met: bool


def targets(summaries: dict[Key, Summary]) -> list[Target]:
    """The issue's targets for `copy`, where the workloads they name were run."""
    found: list[Target] = []

    def get(workload: str, turn: str, method: str = "copy") -> Summary | None:
        return summaries.get((workload, turn, method))

    later = get("refinement", LATER)
    if later is not None:
        if later.speedup_greedy is not None:
            found.append(Target("refinement turn 2+ vs greedy", "≥ 3.00x",
                                ratio(later.speedup_greedy), later.speedup_greedy >= 3.0))
        if later.speedup_pld is not None:
            found.append(Target("refinement turn 2+ vs pld", "≥ 1.30x",
                                ratio(later.speedup_pld), later.speedup_pld >= 1.3))
    passes = get(ALL, LATER)
    if passes is not None:
        ppt = passes.as_dict()["passes_per_token"]
        found.append(Target("forward passes per token, turn 2+", "≤ 0.25", f"{ppt:.2f}",
                            float(ppt) <= 0.25))
    first = get("new_code", "1")
    if first is not None and first.speedup_greedy is not None:
        found.append(Target("new code turn 1 vs greedy", "≥ 0.97x", ratio(first.speedup_greedy),
                            first.speedup_greedy >= 0.97))
    speeds = [get("fix_loop", str(t)) for t in (1, 2, 3)]
    if all(s is not None for s in speeds):
        values = [s.tokens_per_second for s in speeds if s is not None]
        found.append(Target("fix loop faster each turn", "t1 < t2 < t3 tok/s",
                            " < ".join(f"{v:.0f}" for v in values),
                            values[0] < values[1] < values[2]))
    return found


def print_targets(console: Console, found: Sequence[Target]) -> None:
    table = Table(title="Targets (method copy)", title_justify="left")
    for column in ("target", "goal", "measured", ""):
        table.add_column(column)
    for t in found:
        table.add_row(t.name, t.goal, t.measured, "[green]met" if t.met else "[red]missed")
    console.print(table)


def write_markdown(
    path: Path, summaries: dict[Key, Summary], methods: Sequence[str], found: Sequence[Target],
    meta: dict[str, object],
) -> None:
    """Compact Markdown for a README: one row per workload and turn, each method's speed-up
    over greedy, and copy's hardware-free figures; then the ablations and the targets."""
    main = [m for m in main_methods(methods) if m != "greedy"]
    lines = [
        f"Device: {meta['device']}, {meta['dtype']}, {meta['threads']} torch thread(s); model "
        f"`{meta['model']}`; {meta['repeats']} timed pass(es) after the identity pass; tok/s "
        "end to end per turn.", "",
        "| workload | turn | context | greedy tok/s | "
        + " | ".join(f"{m} × greedy" for m in main)
        + " | copy × pld | copy passes/tok | copy copied | copy τ |",
        "|---|---|---:|---:|" + "---:|" * len(main) + "---:|---:|---:|---:|",
    ]
    rows = sorted({(w, t) for w, t, _ in summaries}, key=lambda k: (k[0] == ALL, k[0],
                                                                   turn_order(k[1])))
    for workload, turn in rows:
        greedy, copy = summaries[workload, turn, "greedy"], summaries.get((workload, turn, "copy"))
        cells = [ratio(summaries[workload, turn, m].speedup_greedy) for m in main]
        figures = ["–"] * 4
        if copy is not None:
            d = copy.as_dict()
            figures = [ratio(copy.speedup_pld), f"{d['passes_per_token']:.2f}",
                       f"{d['copied_share']:.0%}", f"{d['tau']:.1f}"]
        lines.append(f"| {workload} | {turn} | {greedy.context:.0f} | "
                     f"{greedy.tokens_per_second:.1f} | " + " | ".join([*cells, *figures]) + " |")
    ablations = [m for m in methods if m not in METHODS]
    if ablations:
        lines += ["", "| variant (all workloads, all turns) | × greedy | passes/tok | copied | τ |",
                  "|---|---:|---:|---:|---:|"]
        for name in ["copy", "copy-fixed", *ablations]:
            if (ALL, ALL, name) in summaries:
                v = summaries[ALL, ALL, name]
                d = v.as_dict()
                lines.append(f"| {name} | {ratio(v.speedup_greedy)} | {d['passes_per_token']:.2f}"
                             f" | {d['copied_share']:.0%} | {d['tau']:.1f} |")
    lines += ["", "| target (method copy) | goal | measured | |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.goal} | {t.measured} | {'met' if t.met else 'missed'} |"
              for t in found]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


RECORDS_PLACEHOLDER = "<records>"


def write_json(
    path: Path,
    meta: dict[str, object],
    methods: dict[str, dict[str, object]],
    records: Sequence[Record],
    summaries: dict[Key, Summary],
    found: Sequence[Target],
) -> None:
    data = {
        "meta": meta,
        "methods": methods,
        "identity": {"passed": True, "reference": "greedy",
                     "checked": "every method, task and turn, identity and timed passes"},
        "summary": [s.as_dict() for s in summaries.values()],
        "targets": [asdict(t) for t in found],
        "records": RECORDS_PLACEHOLDER,
    }
    # One record per line and floats to 6 significant digits: the file stays small and
    # reviewable in git, and no reported ratio needs more precision than that.
    lines = ",\n  ".join(json.dumps(_rounded(asdict(r)), ensure_ascii=False) for r in records)
    text = json.dumps(_rounded(data), indent=1, ensure_ascii=False)
    text = text.replace(json.dumps(RECORDS_PLACEHOLDER), f"[\n  {lines}\n ]")
    path.write_text(text + "\n", encoding="utf-8")


def _rounded(value: Any) -> Any:
    """`value` with every float rounded to 6 significant digits."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def write_plots(
    out: Path,
    summaries: dict[Key, Summary],
    records: Sequence[Record],
    methods: dict[str, dict[str, object]],
    device: str,
) -> list[Path]:
    """PNG plots; ablation plots only for the ablations that were run. Figures are built
    without pyplot, so no GUI backend or global state is involved."""
    main = main_methods(list(methods))
    paths = [plot_turns(out, summaries, main, device), plot_context(out, records, main, device)]
    ablations = {
        "ablation_gamma.png": ("γ (key length), adaptive K", [
            (f"γ={g}", copy_spec(gamma=g)) for g in (1, 2, 3, 4, 5, 6, 8)]),
        "ablation_block.png": ("K (block length), γ=3", [
            *((f"K={k}", copy_spec(block=k, adaptive=False)) for k in (5, 10, 20, 50, 100)),
            ("adaptive", copy_spec())]),
        "ablation_policy.png": ("match policy, adaptive K", [
            (p, copy_spec(policy=p)) for p in ("recent", "oldest", "longest")]),
    }
    for filename, (title, candidates) in ablations.items():
        wanted = [(label, {"engine": "copyspec", **asdict(spec)}) for label, spec in candidates]
        bars = [(label, name) for label, config in wanted
                for name, run_config in methods.items() if config.items() <= run_config.items()]
        if len(bars) > 1:
            paths.append(plot_bars(out / filename, title, bars, summaries, device))
    return paths


def plot_turns(out: Path, summaries: dict[Key, Summary], main: list[str], device: str) -> Path:
    workloads = sorted({w for w, _, _ in summaries if w != ALL})
    fig = Figure(figsize=(4 * len(workloads), 3.6))
    axes = fig.subplots(1, len(workloads), squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        turns = sorted(int(t) for w, t, _ in summaries if w == workload and t.isdigit())
        for method in main:
            speeds = [summaries[workload, str(t), method].tokens_per_second for t in turns]
            ax.plot(turns, speeds, marker="o", label=method)
        ax.set_title(workload)
        ax.set_xlabel("turn")
        ax.set_xticks(turns)
    axes[0][0].set_ylabel("tokens/s (end to end)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"Tokens/s by turn · {device}")
    return save(fig, out / "tokens_per_turn.png")


def plot_context(out: Path, records: Sequence[Record], main: list[str], device: str) -> Path:
    """Each (task, turn) averaged over repeats: speed against the prompt length it answered."""
    points: dict[tuple[str, str, int], list[Record]] = defaultdict(list)
    for r in records:
        points[r.method, r.task, r.turn].append(r)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for method in main:
        groups = [g for (m, _, _), g in points.items() if m == method]
        xs = [g[0].prompt_tokens for g in groups]
        ys = [sum(r.new_tokens for r in g) / sum(r.seconds for r in g) for g in groups]
        ax.scatter(xs, ys, s=14, alpha=0.7, label=method)
    ax.set_xlabel("context length (prompt tokens at the turn)")
    ax.set_ylabel("tokens/s (end to end)")
    ax.set_title(f"Speed against context length · {device}")
    ax.legend(fontsize=8)
    return save(fig, out / "speed_vs_context.png")


def plot_bars(path: Path, title: str, bars: list[tuple[str, str]],
              summaries: dict[Key, Summary], device: str) -> Path:
    """Speed-up over greedy (bars) and forward passes per token (line), all tasks and turns."""
    rows = [summaries[ALL, ALL, name] for _, name in bars]
    labels = [label for label, _ in bars]
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    ax.bar(labels, [r.speedup_greedy or 0.0 for r in rows], color="tab:blue")
    ax.set_ylabel("speed-up over greedy (bars)")
    twin = ax.twinx()
    twin.plot(labels, [r.as_dict()["passes_per_token"] for r in rows], color="tab:red", marker="o")
    twin.set_ylabel("forward passes per token (line)")
    twin.set_ylim(bottom=0)
    ax.set_title(f"Ablation: {title} · {device}")
    return save(fig, path)


def save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
