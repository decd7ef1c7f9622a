"""The charts of analyze.py: the autoresearch progress of results.tsv and the transfer-matrix
heatmap. Headless (the Agg backend): no display needed, the same PNG everywhere."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.patches import Rectangle

from nerlab.analysis import Transfer, fmt_delta, fmt_f1, fmt_seeds, running_best, short
from nerlab.results import BASELINE
from nerlab.stats import Interval

matplotlib.use("Agg")  # before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402


def plot_progress(df: pd.DataFrame, out: Path) -> None:
    """Every experiment of one target (`analysis.load_experiments`) by number: discarded grey,
    kept and hand runs labelled, crashes as crosses at the bottom, the running best as a step."""
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


def plot_matrix(cells: list[Transfer], baselines: dict[str, Interval], df, out: Path) -> None:
    """Targets by sources, coloured by ΔF1 (F1 points); not significant cells hatched."""
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
    ylabels = [f"{t}\nbaseline {fmt_f1(baselines.get(t))}" for t in targets]
    ax.set_yticks(range(len(targets)), ylabels)
    fraction = df["fraction"].iloc[0]
    ax.set_xlabel(f"source (first {fraction:.0%} of the budget, then the target)")
    ax.set_ylabel("target")
    ax.set_title(
        f"ΔF1 vs the target-only baseline, F1 points\n"
        f"mean ± Welch 95% CI over {fmt_seeds(df)}; hatched: not significant",
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


def _save(fig, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)
    print(f"wrote {out}")
