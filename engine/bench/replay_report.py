"""The replay's outputs: a Markdown table, a JSON file and a PNG plot, one row per method."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from engine.bench.replay import Row

COLUMNS = (
    ("passes/token", lambda r: f"{r.passes_per_token:.3f}"),
    ("median/pair", lambda r: f"{r.median_passes_per_token:.3f}"),
    ("vs ours", lambda r: "" if r.ratio_vs_ours is None else f"{r.ratio_vs_ours:.2f}x"),
    ("accepted share", lambda r: f"{r.accepted_share:.1%}" if r.us_per_pass else ""),
    ("accepted/attempt", lambda r: f"{r.accepted_per_attempt:.1f}" if r.us_per_pass else ""),
    ("drafted/pass", lambda r: f"{r.drafted_per_pass:.1f}" if r.us_per_pass else ""),
    ("µs/pass", lambda r: f"{r.us_per_pass:.0f}" if r.us_per_pass else ""),
    ("repeated substitution", lambda r: f"{r.repeated_share:.1%}" if r.us_per_pass else ""),
)


def groups(rows: Sequence[Row]) -> list[tuple[str, str]]:
    return sorted({(r.workload, r.turn) for r in rows})


def markdown(rows: Sequence[Row], title: str) -> str:
    """One table per (workload, turn), methods sorted by passes per token."""
    out = [f"# {title}", ""]
    curves = sorted({name for r in rows for name in r.cost_per_token})
    columns = [*COLUMNS, *((f"cost/token, {name}", cost_cell(name)) for name in curves)]
    for workload, turn in groups(rows):
        members = sorted((r for r in rows if (r.workload, r.turn) == (workload, turn)),
                         key=lambda r: r.passes_per_token)
        label = workload if turn == "all" else f"{workload}, {turn}"
        out += [f"## {label} ({members[0].pairs} pairs, {members[0].tokens} target tokens)", "",
                "| method | " + " | ".join(name for name, _ in columns) + " |",
                "|---|" + "---:|" * len(columns)]
        out += [f"| {r.method} | " + " | ".join(cell(r) for _, cell in columns) + " |"
                for r in members]
        out.append("")
    return "\n".join(out)


def cost_cell(curve: str) -> Callable[[Row], str]:
    return lambda r: f"{r.cost_per_token[curve]:.3f}" if curve in r.cost_per_token else ""


def figure(row: Row, curve: str | None) -> float:
    """Passes per token, or the cost per token on `curve`."""
    return row.passes_per_token if curve is None else row.cost_per_token[curve]


def summary_table(rows: Sequence[Row], curve: str | None = None) -> str:
    """Passes per token (or the cost per token on `curve`), methods down, workloads across:
    the headline table."""
    columns = groups(rows)
    rows = [r for r in rows if curve is None or curve in r.cost_per_token]
    methods = sorted({r.method for r in rows},
                     key=lambda m: sum(figure(r, curve) for r in rows if r.method == m))
    by_key = {(r.method, r.workload, r.turn): r for r in rows}
    head = ["method", *(w if t == "all" else f"{w} {t}" for w, t in columns)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(columns)]
    for method in methods:
        cells = [f"{figure(by_key[(method, w, t)], curve):.3f}" if (method, w, t) in by_key
                 else "" for w, t in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timed_table(timed: dict[str, Any]) -> str:
    """The timed replay's headline: tokens per second of plain decoding and of ours, and the
    speedup, per workload and over all of them."""
    summary = timed["summary"]
    groups = {**summary["by_workload"], "all": summary["all"]}
    methods = list(summary["all"]["tok_s"])
    lines = [f"## Timed: {timed['model_shape']} on {timed['device']} ({timed['dtype']})", "",
             "| workload | pairs | tokens | " + " | ".join(f"{m} tok/s" for m in methods)
             + " | speedup |", "|---|" + "---:|" * (len(methods) + 3)]
    lines += [f"| {name} | {g['pairs']} | {g['tokens']} | "
              + " | ".join(f"{g['tok_s'][m]:.1f}" for m in methods) + f" | {g['speedup']:.2f}x |"
              for name, g in groups.items()]
    return "\n".join(lines)


def write_all(out: Path, rows: Sequence[Row], meta: dict[str, Any],
              extra: dict[str, Any] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    title = f"Oracle replay ({meta.get('tokenizer', '')})"
    timed = f"\n{timed_table(extra['timed'])}\n" if extra and "timed" in extra else ""
    costs = "".join(f"\n## Summary: cost per output token, {name} curve (plain decoding = 1)"
                    f"\n\n{summary_table(rows, name)}\n"
                    for name in sorted({n for r in rows for n in r.cost_per_token}))
    (out / "replay.md").write_text(
        markdown(rows, title) + "\n## Summary: passes per output token\n\n"
        + summary_table(rows) + "\n" + costs + timed, encoding="utf-8")
    payload = {"meta": meta, "rows": [{**asdict(r), "passes_per_token": r.passes_per_token}
                                      for r in rows], **(extra or {})}
    (out / "replay.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    plot(out / "replay.png", rows, title)
    return [out / "replay.md", out / "replay.json", out / "replay.png"]


def plot(path: Path, rows: Sequence[Row], title: str) -> None:
    """Horizontal bars of passes per token, one panel per (workload, turn)."""
    columns = groups(rows)
    figure = Figure(figsize=(4.2 * len(columns), 0.35 * len({r.method for r in rows}) + 1.5))
    axes = figure.subplots(1, len(columns), squeeze=False)[0]
    for ax, (workload, turn) in zip(axes, columns, strict=True):
        members = sorted((r for r in rows if (r.workload, r.turn) == (workload, turn)),
                         key=lambda r: -r.passes_per_token)
        ax.barh([r.method for r in members], [r.passes_per_token for r in members],
                color=["#888" if r.method.startswith("bound") else "#2a7" if
                       r.ratio_vs_ours == 1.0 else "#47c" for r in members])
        ax.set_title(workload if turn == "all" else f"{workload} {turn}", fontsize=9)
        ax.set_xlabel("passes per output token (lower is better)", fontsize=8)
        ax.tick_params(labelsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
