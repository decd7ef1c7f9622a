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
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

from nerlab.analysis import KEPT, Transfer, fmt_delta, fmt_f1, fmt_seeds, running_best, short
from nerlab.findings import SEVERAL, TARGET_ONLY, SharePoint
from nerlab.results import BASELINE
from nerlab.stats import Interval
from nerlab.text import PLAIN_FIGURE_TEXT, visible

matplotlib.use("Agg")  # before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402


def plot_progress(df: pd.DataFrame, out: Path) -> None:
    """The progress figure (`progress_figure`) as PNG, or PDF/SVG by the suffix of `out`."""
    _save(progress_figure(df), out)


def progress_figure(df: pd.DataFrame, page: bool = False):
    """Every experiment of one target (`analysis.load_experiments` or `tag_experiments`) by its
    number: discarded grey, kept green, hand runs blue, crashes as crosses and runs that found
    no entity (F1 0) as triangles at the bottom, the
    running best as a step line with its seed spread (± std) where it has repeats. Kept and
    hand-run points carry their number; a key beside the axes gives their descriptions; the
    legend sits below the axes, so it hides no point. Text is drawn as written, never as
    mathtext: a description is untrusted (`lr $x^ 50%` would not parse).

    `page`: the report's version, in F1 points like the rest of its page and without the key
    (the page lists the numbered points in its own, readable, text)."""
    if page:
        df = df.assign(dev_f1=100 * df["dev_f1"], dev_f1_std=100 * df["dev_f1_std"])
    with plt.rc_context(PLAIN_FIGURE_TEXT):  # read when each text object is created
        return _progress_figure(df, page)


def _progress_figure(df: pd.DataFrame, page: bool):
    best = running_best(df)
    width = max(8.0, min(16.0, 0.12 * df["n"].max() + 7))
    fig = plt.figure(figsize=(width * 0.8 if page else width, 5.2))
    grid = fig.add_gridspec(1, 1 if page else 2, width_ratios=[1] if page else [3.2, 1],
                            wspace=0.04)  # fmt: skip
    ax = fig.add_subplot(grid[0])
    scored = df[df["status"] != "crash"]
    grey = scored[(scored["status"] == "discard") & (scored["dev_f1"] != 0)]
    if len(grey):
        ax.scatter(grey["n"], grey["dev_f1"], s=20, c="#b0b0b0", label="discarded", zorder=2)
    marked = scored[scored["status"].isin(KEPT)].sort_values("n")
    _spread(ax, df, best)
    for status, style in (("keep", PROGRESS_KEPT), ("ok", PROGRESS_HAND)):
        rows = marked[marked["status"] == status]
        if len(rows):
            ax.errorbar(rows["n"], rows["dev_f1"], yerr=_std(rows), fmt="none", ecolor="k",
                        elinewidth=0.8, capsize=2, zorder=3)  # fmt: skip
            ax.scatter(rows["n"], rows["dev_f1"], **style, zorder=4)
    ax.step(df["n"], best, where="post", c="#2ca02c", lw=1.6, alpha=0.85, label="running best")
    crashes = df[df["status"] == "crash"]
    if len(crashes):  # at the bottom edge: a crash's F1 of 0 would squash the scale
        ax.scatter(crashes["n"], [0.03] * len(crashes), marker="x", c="#808080", s=26,
                   transform=ax.get_xaxis_transform(), label="crashed", zorder=3)  # fmt: skip
    # F1 0 (a run that found no entity) at the bottom edge too, so it does not set the scale
    none = scored[scored["dev_f1"] == 0]
    if len(none):
        ax.scatter(none["n"], [0.03] * len(none), marker="v", c="#b0b0b0", s=24,
                   transform=ax.get_xaxis_transform(), label="F1 0 (found no entity)",
                   zorder=3)  # fmt: skip
    _set_ylim(ax, scored["dev_f1"][scored["dev_f1"] != 0].dropna(), 100.0 if page else 1.0)
    ax.set_xlim(0.3, df["n"].max() + 0.7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # 1 experiment: "1"
    ax.set_title(_progress_title(df, best, page), fontsize=10, loc="left")
    ax.set_xlabel("experiment #")
    ax.set_ylabel("dev F1 (points)" if page else "dev F1")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.88, bottom=0.2)
    _label_points(fig, ax, marked, scored, 9 if page else 7)
    if not page:
        _key(fig.add_subplot(grid[1]), marked)
    return fig


PROGRESS_KEPT = dict(s=40, c="#2ca02c", edgecolors="k", linewidths=0.5, label="kept")
PROGRESS_HAND = dict(s=34, c="#1f77b4", marker="D", label="ok (hand run)")
LABEL_OFFSETS = (7, 15, 23, -13, -21, 31, -29, 39)  # points above (+) or below (-) a marker


def _std(rows: pd.DataFrame) -> np.ndarray:
    return rows["dev_f1_std"].fillna(0.0).to_numpy() if "dev_f1_std" in rows else None


def _spread(ax, df: pd.DataFrame, best: pd.Series) -> None:
    """A band of ± the std over seeds of the experiment holding the running best."""
    if "dev_f1_std" not in df or not (df["dev_f1_std"].fillna(0) > 0).any():
        return
    top, std, stds = -math.inf, math.nan, []
    for row in df.itertuples():
        if row.status in KEPT and row.dev_f1 > top:  # as running_best: the first holder
            top, std = row.dev_f1, row.dev_f1_std
        stds.append(std)
    ax.fill_between(df["n"], best - stds, best + stds, step="post", color="#2ca02c", alpha=0.15,
                    lw=0, label="best ± std over seeds")  # fmt: skip


def _progress_title(df: pd.DataFrame, best: pd.Series, page: bool) -> str:
    c = df["status"].value_counts().reindex(["keep", "discard", "crash", "ok"], fill_value=0)
    target = visible(df["target"].iloc[0])
    value = f"{best.max():.2f} points" if page else f"{best.max():.4f}"
    head = f"{target}: best dev F1 {value}" if best.notna().any() else target
    hand = f", {c['ok']} hand run(s)" if c["ok"] else ""
    many = "s" if len(df) != 1 else ""
    counts = (f"{len(df)} experiment{many}: {c['keep']} kept, {c['discard']} discarded, "
              f"{c['crash']} crashed{hand}")  # fmt: skip
    return f"{head}\n{counts}"


def _label_points(fig, ax, marked: pd.DataFrame, scored: pd.DataFrame, size: float) -> None:
    """Each kept/hand point's number, at the first offset where it touches no other label, no
    marker and stays inside the axes; a point with no free spot keeps only its key entry."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    radius = 4.0 * fig.dpi / 72  # a marker's half size in pixels
    xy = ax.transData.transform(scored[["n", "dev_f1"]].to_numpy(dtype=float))
    taken = [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius) for x, y in xy]
    for row in marked.itertuples():  # error bars are taken space too
        std = 0.0 if pd.isna(getattr(row, "dev_f1_std", 0.0)) else row.dev_f1_std
        (x, lo), (_, hi) = ax.transData.transform([(row.n, row.dev_f1 - std),
                                                   (row.n, row.dev_f1 + std)])  # fmt: skip
        taken.append(Bbox.from_extents(x - radius, lo - radius, x + radius, hi + radius))
    for _, row in marked.iterrows():
        for dy in LABEL_OFFSETS:
            text = ax.annotate(str(row["n"]), (row["n"], row["dev_f1"]), xytext=(0, dy),
                               textcoords="offset points", ha="center", va="center",
                               fontsize=size, color="#1a5e1a", zorder=5)  # fmt: skip
            box = text.get_window_extent(renderer)
            if _contains(inside, box) and not any(box.overlaps(t) for t in taken):
                taken.append(box)
                break
            text.remove()


def _contains(outer: Bbox, inner: Bbox) -> bool:
    return (outer.x0 <= inner.x0 and inner.x1 <= outer.x1 and outer.y0 <= inner.y0
            and inner.y1 <= outer.y1)  # fmt: skip


def _key(key, marked: pd.DataFrame) -> None:
    """The descriptions of the numbered points, beside the axes (as many as fit)."""
    key.axis("off")
    lines = [
        f"{r.n:>3}  {r.dev_f1:.4f}  {short(visible(r.description), 30)}"
        for r in marked.itertuples()
    ]
    if len(lines) > KEY_LINES:
        lines = lines[: KEY_LINES - 1] + [f"… and {len(lines) - KEY_LINES + 1} more"]
    text = "kept experiments\n  #  dev F1  description\n" + "\n".join(lines)
    key.text(
        0, 1, text, va="top", ha="left", fontsize=7, family="monospace", transform=key.transAxes
    )


KEY_LINES = 28


def _set_ylim(ax, values: pd.Series, top: float) -> None:
    """Fitted to the scores, a little room either side (labels also go below their points):
    a best of 0.97 does not stretch the axis to 1.0. `top`: a perfect score (1 or 100)."""
    if values.empty:
        ax.set_ylim(0, top)
        return
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.005 * top, 0.06 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(top, hi + pad))


def plot_matrix(cells: list[Transfer], baselines: dict[str, Interval], df, out: Path) -> None:
    """Targets by sources, coloured by ΔF1 (F1 points); not significant cells hatched."""
    with plt.rc_context(PLAIN_FIGURE_TEXT):
        _plot_matrix(cells, baselines, df, out)


def _plot_matrix(cells: list[Transfer], baselines: dict[str, Interval], df, out: Path) -> None:
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
    _save(fig, out, tight=True)


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


def _save(fig, out: Path, tight: bool = False) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(out, dpi=150, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {out}")


def plot_share(points: list[SharePoint], out: Path) -> None:
    """The share figure (`share_figure`) as PNG, or PDF/SVG by the suffix of `out`."""
    _save(share_figure(points), out)


def share_figure(points: list[SharePoint]):
    """F1 against pretraining share per source (`findings.share_points`): each single-source
    experiment at the share of the budget its source got, one colour and line per source
    (in order of share), the target-only experiments at share 0 in black, those with several
    sources grey at their sources' total share. The x axis ends a little after the last point."""
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    names = list(dict.fromkeys(p.source for p in points if p.source not in (TARGET_ONLY, SEVERAL)))
    for i, name in enumerate(names):
        mine = sorted((p for p in points if p.source == name), key=lambda p: p.share)
        x, y = [100 * p.share for p in mine], [100 * p.f1 for p in mine]
        ax.plot(x, y, "o-", c=plt.cm.tab10(i % 10), lw=0.8, ms=5, alpha=0.85, label=name)
    for name, style in ((SEVERAL, {"c": "#a0a0a0", "marker": "D", "s": 20}),
                        (TARGET_ONLY, {"c": "k", "marker": "s", "s": 24})):  # fmt: skip
        mine = [p for p in points if p.source == name]
        if mine:
            x, y = [100 * p.share for p in mine], [100 * p.f1 for p in mine]
            ax.scatter(x, y, label=name, zorder=3, **style)
    ax.set_xlabel("share of the budget on the source(s) before the target (%)")
    ax.set_ylabel("dev F1 (points)")
    ax.set_title("F1 against pretraining share per source", fontsize=10)
    ax.set_xlim(-3, min(100.0, 100 * max((p.share for p in points), default=1.0) + 8))
    ax.grid(alpha=0.3)
    if points:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=9)
    return fig
