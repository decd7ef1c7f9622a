"""Read the experiment logs: the progress chart, a summary, and the transfer matrix.

    python analyze.py progress [--results results.tsv] [--out progress.png] [--target T]
    python analyze.py summary  [--results results.tsv] [--json] [--target T]
    python analyze.py matrix   [--results matrix.tsv] [--out matrix.png]

progress and summary read results.tsv (agent_loop.py, program.md, `train.py --results`). Its
statuses: keep / discard / crash from the loop, and `ok` for a hand run of train.py. An `ok` row
counts like `keep` for the running best (a deliberate run nobody rejected is a result you can
build on) but is drawn and counted apart, and is not part of the keep rate (no decision was
taken on it). The running best is the best dev F1 of kept/ok rows so far. With rows for several
targets, one target is analysed: --target, else the target of the latest row.

matrix reads the file of `python -m nerlab.sweep matrix`: per (source -> target), the dev F1s
of the source-then-target runs minus the target-only baseline's, mean and Welch 95% CI over
seeds, in F1 points. A cell whose CI includes 0 is not significant (hatched, `ns`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display needed, same output everywhere

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from nerlab.errors import UserError  # noqa: E402
from nerlab.results import read_results  # noqa: E402
from nerlab.stats import Interval, diff_ci, mean_ci  # noqa: E402
from nerlab.sweep import BASELINE, read_matrix  # noqa: E402

KEPT = ("keep", "ok")  # rows that may set the running best
CRASH_REASON = re.compile(r"\s*\[crash: (.*)\]\s*$")
TOP_IMPROVEMENTS = 5
LABEL_CHARS = 38  # a kept point's annotation: enough to tell experiments apart


# -----------------------------------------------------------------------------
# results.tsv: load, running best, summary


def load_experiments(path: Path, target: str | None) -> pd.DataFrame:
    """The rows of one target, numbered 1.. in file order (the experiment number `n`)."""
    if path.exists() and path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (no header, no experiments)")
    df = read_results(path)
    if df.empty:
        raise UserError(f"{path}: no experiments recorded yet (only the header)")
    targets = list(dict.fromkeys(df["target"]))
    if target is None:
        target = df["target"].iloc[-1]
        if len(targets) > 1:
            print(
                f"note: {path} holds {len(targets)} targets ({', '.join(targets)}); "
                f"showing {target}, the latest (choose with --target)",
                file=sys.stderr,
            )
    elif target not in targets:
        raise UserError(f"{path}: no rows for target {target!r}; targets: {', '.join(targets)}")
    df = df[df["target"] == target].reset_index(drop=True)
    df.insert(0, "n", range(1, len(df) + 1))
    return df


def running_best(df: pd.DataFrame) -> pd.Series:
    """Best dev F1 of the kept (and hand-run ok) rows up to each row; NaN before the first."""
    kept = df["dev_f1"].where(df["status"].isin(KEPT))
    return kept.cummax().ffill()


def crash_reason(description: str) -> str:
    m = CRASH_REASON.search(description)
    return m.group(1) if m else "(no reason recorded)"


def short(description: str, limit: int = LABEL_CHARS) -> str:
    text = CRASH_REASON.sub("", description).strip() or "(no description)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize(df: pd.DataFrame, path: Path) -> dict:
    counts = {s: int((df["status"] == s).sum()) for s in ("keep", "discard", "crash", "ok")}
    judged = counts["keep"] + counts["discard"] + counts["crash"]
    best = running_best(df)
    out: dict = {
        "results": str(path),
        "target": df["target"].iloc[0],
        "experiments": len(df),
        "counts": counts,
        "keep_rate": counts["keep"] / judged if judged else None,
        "best": None,
        "improvements": [],
        "crashes": [],
    }
    if best.notna().any():
        row = df.loc[df["dev_f1"].where(df["status"].isin(KEPT)).idxmax()]
        out["best"] = _brief(row)
    previous = best.shift(1)
    for i in df.index[df["status"].isin(KEPT) & (df["dev_f1"] == best)]:
        if pd.notna(previous[i]) and df.at[i, "dev_f1"] <= previous[i]:
            continue  # ties the best: not an improvement
        prev = None if pd.isna(previous[i]) else float(previous[i])
        delta = None if prev is None else float(df.at[i, "dev_f1"]) - prev
        out["improvements"].append({**_brief(df.loc[i]), "previous_best": prev, "delta": delta})
    # the first kept row has no previous best: listed last, the others by size of the gain
    out["improvements"].sort(key=lambda x: math.inf if x["delta"] is None else -x["delta"])
    out["improvements"] = out["improvements"][:TOP_IMPROVEMENTS]
    for _, row in df[df["status"] == "crash"].iterrows():
        out["crashes"].append({**_brief(row), "reason": crash_reason(row["description"])})
    return out


def _brief(row: pd.Series) -> dict:
    f1 = row["dev_f1"]
    return {
        "n": int(row["n"]),
        "commit": row["commit"],
        "dev_f1": None if pd.isna(f1) else float(f1),
        "status": row["status"],
        "description": CRASH_REASON.sub("", row["description"]).strip(),
    }


def summary_markdown(s: dict) -> str:
    c = s["counts"]
    lines = [f"# {s['results']}: {s['experiments']} experiments, target {s['target']}", ""]
    lines += ["| status | count |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in c.items() if v or k != "ok"]
    judged = c["keep"] + c["discard"] + c["crash"]
    rate = "n/a" if s["keep_rate"] is None else f"{s['keep_rate']:.0%}"
    lines += ["", f"Keep rate: {rate} ({c['keep']} kept of {judged} judged by the loop)", ""]
    if s["best"]:
        b = s["best"]
        lines.append(
            f"Best dev F1: **{b['dev_f1']:.4f}** (#{b['n']}, {b['commit']}, {b['status']})"
        )
        lines.append(f"  {b['description'] or '(no description)'}")
    else:
        lines.append("Best dev F1: none yet (no kept or ok row)")
    if s["improvements"]:
        lines += [
            "",
            "## Top improvements",
            "",
            "| # | commit | dev F1 | Δ over previous best | description |",
            "|---:|---|---:|---:|---|",
        ]
        for x in s["improvements"]:
            delta = "first" if x["delta"] is None else f"{x['delta']:+.4f}"
            lines.append(
                f"| {x['n']} | {x['commit']} | {x['dev_f1']:.4f} | {delta} | {x['description']} |"
            )
    if s["crashes"]:
        lines += ["", "## Crashes", "", "| # | commit | reason |", "|---:|---|---|"]
        lines += [f"| {x['n']} | {x['commit']} | {x['reason']} |" for x in s["crashes"]]
    return "\n".join(lines)


def plot_progress(df: pd.DataFrame, out: Path) -> None:
    best = running_best(df)
    fig, ax = plt.subplots(figsize=(max(8.0, min(20.0, 0.25 * len(df) + 6)), 5.5))
    scored = df[df["status"] != "crash"]
    grey = scored[scored["status"] == "discard"]
    ax.scatter(grey["n"], grey["dev_f1"], s=22, c="#b0b0b0", label="discarded", zorder=2)
    kept = scored[scored["status"] == "keep"]
    ax.scatter(
        kept["n"],
        kept["dev_f1"],
        s=42,
        c="#2ca02c",
        edgecolors="k",
        linewidths=0.5,
        label="kept",
        zorder=4,
    )
    hand = scored[scored["status"] == "ok"]
    if len(hand):
        ax.scatter(
            hand["n"],
            hand["dev_f1"],
            s=36,
            c="#1f77b4",
            marker="D",
            label="ok (hand run)",
            zorder=4,
        )
    ax.step(df["n"], best, where="post", c="#2ca02c", lw=1.8, alpha=0.8, label="running best")
    for k, (_, row) in enumerate(pd.concat([kept, hand]).sort_values("n").iterrows()):
        ax.annotate(
            short(row["description"]),
            (row["n"], row["dev_f1"]),
            fontsize=7,
            xytext=(3, 6 if k % 2 == 0 else 16),
            textcoords="offset points",
            rotation=20,
            color="#1a5e1a",
        )
    _set_ylim(ax, scored["dev_f1"].dropna())
    crashes = df[df["status"] == "crash"]
    if len(crashes):  # at the bottom edge: a crash's F1 of 0 would squash the scale
        ax.scatter(
            crashes["n"],
            [0.02] * len(crashes),
            marker="x",
            c="#808080",
            s=28,
            transform=ax.get_xaxis_transform(),
            label="crashed",
            zorder=3,
        )
    c = df["status"].value_counts().reindex(["keep", "discard", "crash", "ok"], fill_value=0)
    top = f", best {best.max():.4f}" if best.notna().any() else ""
    ax.set_title(
        f"{df['target'].iloc[0]}: {len(df)} experiments, {c['keep']} kept, {c['discard']} "
        f"discarded, {c['crash']} crashed" + (f", {c['ok']} hand runs" if c["ok"] else "") + top
    )
    ax.set_xlabel("experiment #")
    ax.set_ylabel("dev F1")
    ax.set_xlim(0.3, len(df) + 0.7)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, out)


def _set_ylim(ax, values: pd.Series) -> None:
    if values.empty:
        ax.set_ylim(0, 1)
        return
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.02, 0.08 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + 2 * pad))  # room above for the labels


def _save(fig, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)
    print(f"wrote {out}")


# -----------------------------------------------------------------------------
# the transfer matrix


@dataclass
class Transfer:
    """One (source -> target) cell; F1 values as fractions (the display shows points)."""

    target: str
    source: str
    n: int  # seeds of the curriculum
    n_base: int  # seeds of the baseline
    base: float  # baseline mean F1
    mean: float  # curriculum mean F1
    delta: Interval  # curriculum - baseline, Welch 95% CI

    @property
    def significant(self) -> bool:
        return self.delta.excludes_zero


def load_matrix(path: Path) -> pd.DataFrame:
    """The ok rows of a matrix file; crashes are reported on stderr, not averaged in."""
    df = read_matrix(path)
    if df.empty:
        raise UserError(f"{path}: no runs recorded yet (only the header)")
    crashed = df[df["status"] == "crash"]
    if len(crashed):
        print(
            f"note: {len(crashed)} crashed runs left out (see the reason column)", file=sys.stderr
        )
    if df["protocol"].nunique() > 1:
        print(f"note: {path} mixes protocols {sorted(set(df['protocol']))}", file=sys.stderr)
    ok = df[df["status"] == "ok"]
    if ok.empty:
        raise UserError(f"{path}: every run crashed; nothing to compare")
    return ok


def transfers(df: pd.DataFrame) -> tuple[list[Transfer], dict[str, Interval]]:
    """Every (source, target) cell that has both curriculum and baseline runs, and each
    target's baseline mean with its CI."""
    baselines = {
        t: g["dev_f1"].tolist()
        for t, g in df[df["source"] == BASELINE].groupby("target", sort=False)
    }
    cells = []
    for (target, source), g in df[df["source"] != BASELINE].groupby(
        ["target", "source"], sort=False
    ):
        base = baselines.get(target)
        if not base:
            print(
                f"note: {target} has no baseline runs; {source} -> {target} left out",
                file=sys.stderr,
            )
            continue
        f1s = g["dev_f1"].tolist()
        cells.append(
            Transfer(
                target,
                source,
                len(f1s),
                len(base),
                float(np.mean(base)),
                float(np.mean(f1s)),
                diff_ci(f1s, base),
            )
        )
    return cells, {t: mean_ci(v) for t, v in baselines.items()}


def fmt_delta(iv: Interval) -> str:
    """`+4.4 ± 0.8` in F1 points; a single seed has no interval."""
    if math.isnan(iv.half_width):
        return f"{100 * iv.mean:+.1f} (n=1)"
    return f"{100 * iv.mean:+.1f} ± {100 * iv.half_width:.1f}"


def asymmetries(cells: list[Transfer]) -> list[dict]:
    """For each pair with both directions: Δ(A -> B) and Δ(B -> A), and their difference."""
    by = {(c.source, c.target): c for c in cells}
    out = []
    for (a, b), ab in sorted(by.items()):
        ba = by.get((b, a))
        if ba is None or a > b:
            continue
        out.append(
            {
                "a": a,
                "b": b,
                "a_to_b": ab.delta.mean,
                "b_to_a": ba.delta.mean,
                "asymmetry": ab.delta.mean - ba.delta.mean,
            }
        )
    return out


def matrix_markdown(cells: list[Transfer], baselines: dict[str, Interval], df) -> str:
    fraction = df["fraction"].iloc[0]
    lines = [
        f"ΔF1 (F1 points) of source → target (source for the first {fraction:.0%} of the budget, "
        f"then the target) against the target-only baseline; mean ± Welch 95% CI over "
        f"{_seeds(df)}; ns: the CI includes 0; n/a: one seed, no interval.",
        "",
        "| target | source | baseline F1 | curriculum F1 | ΔF1 | seeds (src/base) | sig. |",
        "|---|---|---:|---:|---:|---:|:---:|",
    ]
    for c in cells:
        lines.append(
            f"| {c.target} | {c.source} | {100 * c.base:.1f} | {100 * c.mean:.1f} | "
            f"{fmt_delta(c.delta)} | {c.n}/{c.n_base} | {_sig(c)} |"
        )
    pairs = asymmetries(cells)
    if pairs:
        lines += [
            "",
            "| pair A ↔ B | Δ A→B | Δ B→A | asymmetry (A→B − B→A) |",
            "|---|---:|---:|---:|",
        ]
        for p in pairs:
            lines.append(
                f"| {p['a']} ↔ {p['b']} | {100 * p['a_to_b']:+.1f} | {100 * p['b_to_a']:+.1f} | "
                f"{100 * p['asymmetry']:+.1f} |"
            )
    return "\n".join(lines)


def _sig(c: Transfer) -> str:
    if math.isnan(c.delta.half_width):
        return "n/a"  # one seed on a side: no interval to test
    return "yes" if c.significant else "ns"


def plot_matrix(cells: list[Transfer], baselines: dict[str, Interval], df, out: Path) -> None:
    # targets in sweep order; sources that are also targets first, in the same order, so the
    # skipped self-transfer cells line up on the diagonal
    targets = list(dict.fromkeys(df["target"]))
    named = [s for s in dict.fromkeys(df["source"]) if s != BASELINE]
    sources = [t for t in targets if t in named] + [s for s in named if s not in targets]
    grid = np.full((len(targets), len(sources)), np.nan)
    by = {(c.target, c.source): c for c in cells}
    for (t, s), c in by.items():
        grid[targets.index(t), sources.index(s)] = 100 * c.delta.mean
    limit = max(1.0, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0)
    fig, ax = plt.subplots(figsize=(max(7.0, 2.0 * len(sources) + 3.5), 1.1 * len(targets) + 2.4))
    im = ax.imshow(
        np.ma.masked_invalid(grid), cmap="RdBu", norm=TwoSlopeNorm(0, -limit, limit), aspect="auto"
    )
    ax.set_facecolor("#eeeeee")  # empty cells: diagonal or not run
    for i, t in enumerate(targets):
        for j, s in enumerate(sources):
            _annotate_cell(ax, i, j, by.get((t, s)), same=s == t, limit=limit)
    ax.set_xticks(range(len(sources)), sources, rotation=20, ha="right")
    ylabels = [f"{t}\nbaseline {_fmt_f1(baselines.get(t))}" for t in targets]
    ax.set_yticks(range(len(targets)), ylabels)
    fraction = df["fraction"].iloc[0]
    ax.set_xlabel(f"source (first {fraction:.0%} of the budget, then the target)")
    ax.set_ylabel("target")
    ax.set_title(
        f"ΔF1 vs the target-only baseline, F1 points\n"
        f"mean ± Welch 95% CI over {_seeds(df)}; hatched: not significant",
        fontsize=10,
    )
    fig.colorbar(im, ax=ax, label="ΔF1 (points)", shrink=0.85)
    _save(fig, out)


def _annotate_cell(ax, i: int, j: int, cell: Transfer | None, same: bool, limit: float) -> None:
    if cell is None:
        ax.text(j, i, "—" if same else "n/a", ha="center", va="center", color="#777777")
        return
    if cell.significant:
        strong = abs(100 * cell.delta.mean) > 0.6 * limit
        color = "white" if strong else "black"
        ax.text(
            j,
            i,
            fmt_delta(cell.delta),
            ha="center",
            va="center",
            fontsize=9,
            color=color,
            fontweight="bold",
        )
        return
    # not significant (or one seed, no interval): hatched, the label on a light box to stay legible
    ax.add_patch(
        Rectangle(
            (j - 0.5, i - 0.5),
            1,
            1,
            fill=False,
            hatch="///",
            edgecolor="#999999",
            linewidth=0,
            zorder=2,
        )
    )
    tested = not math.isnan(cell.delta.half_width)
    ax.text(
        j,
        i,
        fmt_delta(cell.delta) + (" ns" if tested else ""),
        ha="center",
        va="center",
        fontsize=9,
        zorder=3,
        bbox={"boxstyle": "round,pad=0.25", "fc": (1, 1, 1, 0.8), "ec": "none"},
    )


def _seeds(df: pd.DataFrame) -> str:
    k = df["seed"].nunique()
    return f"{k} seed" + ("s" if k != 1 else "")


def _fmt_f1(iv: Interval | None) -> str:
    if iv is None:
        return "n/a"
    if math.isnan(iv.half_width):
        return f"{100 * iv.mean:.1f}"
    return f"{100 * iv.mean:.1f} ± {100 * iv.half_width:.1f}"


# -----------------------------------------------------------------------------
# commands


def cmd_progress(args) -> None:
    plot_progress(load_experiments(Path(args.results), args.target), Path(args.out))


def cmd_summary(args) -> None:
    path = Path(args.results)
    s = summarize(load_experiments(path, args.target), path)
    print(json.dumps(s, indent=2) if args.json else summary_markdown(s))


def cmd_matrix(args) -> None:
    path = Path(args.results)
    df = load_matrix(path)
    cells, baselines = transfers(df)
    if not cells:
        raise UserError(f"{path}: no (source, target) cell has both curriculum and baseline runs")
    if args.json:
        print(
            json.dumps(
                {"cells": [_cell_json(c) for c in cells], "asymmetry": asymmetries(cells)}, indent=2
            )
        )
    else:
        print(matrix_markdown(cells, baselines, df))
    plot_matrix(cells, baselines, df, Path(args.out))


def _cell_json(c: Transfer) -> dict:
    d = asdict(c)
    hw = c.delta.half_width
    d["delta"] = {"mean": c.delta.mean, "half_width": None if math.isnan(hw) else hw}
    return {**d, "significant": c.significant}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("progress", help="the autoresearch chart of results.tsv")
    pr.add_argument("--results", default="results.tsv")
    pr.add_argument("--out", default="progress.png")
    pr.add_argument("--target", help="with several targets in the file (default: the latest)")
    su = sub.add_parser("summary", help="counts, keep rate, best, improvements, crashes")
    su.add_argument("--results", default="results.tsv")
    su.add_argument("--json", action="store_true", help="JSON instead of markdown")
    su.add_argument("--target", help="with several targets in the file (default: the latest)")
    ma = sub.add_parser("matrix", help="transfer matrix of python -m nerlab.sweep matrix")
    ma.add_argument("--results", default="matrix.tsv")
    ma.add_argument("--out", default="matrix.png")
    ma.add_argument("--json", action="store_true", help="the cells as JSON instead of markdown")
    args = p.parse_args(argv)
    {"progress": cmd_progress, "summary": cmd_summary, "matrix": cmd_matrix}[args.command](args)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
