"""The numbers behind analyze.py: results.tsv (running best, summary) and the transfer matrix
(per source -> target cell, ΔF1 against the target-only baseline with a Welch 95% CI).

results.tsv statuses: keep / discard / crash from the loop, and `ok` for a hand run of train.py.
An `ok` row counts like `keep` for the running best (a deliberate run nobody rejected is a result
you can build on) but is counted apart, and is not part of the keep rate (no decision was taken
on it). A tag's baseline is kept by rule (there is nothing to beat), so it is no part of the
keep rate either. Notes (several targets in a file, crashed or unpaired matrix runs) go to stderr.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nerlab.errors import UserError
from nerlab.results import BASELINE, read_matrix, read_results
from nerlab.stats import Interval, diff_ci, mean_ci
from nerlab.text import markdown

KEPT = ("keep", "ok")  # rows that may set the running best
TOP_IMPROVEMENTS = 5
LABEL_CHARS = 38  # a kept point's annotation: enough to tell experiments apart
ROW = "row"  # tag_experiments: a row's place in the file (rows are in completion order)
LONG_GAP_S = 1800.0  # a gap between rows longer than this, GAP_FACTOR typical gaps, and twice
GAP_FACTOR = 3.0  # its experiment's training is no work (elapsed_seconds)


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
    df = df.drop(columns="n")
    df.insert(0, "n", range(1, len(df) + 1))
    return df


def tag_experiments(path: Path, root: Path, tag: str) -> pd.DataFrame:
    """The rows of one tag's experiments (their commits are the tag's refs), numbered as the loop
    numbered them (the n of `[n]` and of refs/autoresearch/<tag>/<n>), in that order: with
    parallel workers the file holds them in completion order."""
    from nerlab.gitops import RunBranch

    number = {c: n for n, c in RunBranch(root, tag).experiments().items()}
    if not number:
        raise UserError(f"tag {tag!r} has no experiments (no refs/autoresearch/{tag}/*)")
    df = read_results(path)
    df = df[df["commit"].isin(number)].drop_duplicates("commit", keep="last")
    if df.empty:
        raise UserError(f"{path}: no rows for the experiments of tag {tag!r}")
    df = df.drop(columns="n")  # the refs number old-layout rows too
    df.insert(0, "n", df["commit"].map(number))
    df[ROW] = range(len(df))  # the completion order, for the time between rows (night_cost)
    return df.sort_values("n").reset_index(drop=True)


def running_best(df: pd.DataFrame) -> pd.Series:
    """Best dev F1 of the kept (and hand-run ok) rows up to each row; NaN before the first."""
    kept = df["dev_f1"].where(df["status"].isin(KEPT))
    return kept.cummax().ffill()


def crash_reason(reason: str) -> str:
    return reason or "(no reason recorded)"


def short(description: str, limit: int = LABEL_CHARS) -> str:
    text = description.strip() or "(no description)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize(df: pd.DataFrame, path: Path) -> dict:
    counts = {s: int((df["status"] == s).sum()) for s in ("keep", "discard", "crash", "ok")}
    baseline = df["role"] == "baseline"
    baselines = int((baseline & (df["status"] == "keep")).sum())
    judged = counts["keep"] + counts["discard"] + counts["crash"] - baselines
    best = running_best(df)
    out: dict = {
        "results": str(path),
        "target": df["target"].iloc[0],
        "experiments": len(df),
        "counts": counts,
        "baselines": baselines,
        "keep_rate": (counts["keep"] - baselines) / judged if judged else None,
        "best": None,
        "improvements": [],
        "crashes": [],
        "cost": night_cost(df),
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
        out["crashes"].append({**_brief(row), "reason": crash_reason(row["reason"])})
    return out


def night_cost(df: pd.DataFrame) -> dict | None:
    """What the night cost, from the row times (each written when its experiment ended): its
    hours, from the first experiment's start (its end less its training, the only part of it
    a row times) to the last result; every experiment per hour of that; and the share of it
    spent in training steps (seeds included); the rest is start-up, evaluation, proposals and
    git. With parallel workers the share exceeds 100%."""
    seconds = elapsed_seconds(df)
    if not seconds:
        return None
    rows = df.sort_values(ROW) if ROW in df else df  # completion order
    train_s = rows["train_s"].fillna(0) * rows["repeats"].clip(lower=1)
    hours = (seconds + float(train_s.iloc[0])) / 3600
    train_h = float(train_s.sum()) / 3600
    return {"hours": hours, "per_hour": len(df) / hours, "train_share": train_h / hours}


def elapsed_seconds(df: pd.DataFrame) -> float:
    """Seconds from the first row to the last, summed gap by gap in completion order.

    Row times are local times without a zone, so a DST or timezone change (or a clock set) moves
    them: the last minus the first would count that shift as hours of work. A gap that is
    negative, or far longer than both a typical gap and its own experiment's training (a clock
    moved forward, or a loop stopped for the day), counts as a typical gap instead."""
    rows = df.sort_values(ROW) if ROW in df else df
    ends = pd.to_datetime(rows["timestamp"], errors="coerce")
    known = ends.notna()
    gaps = ends[known].diff().dt.total_seconds().iloc[1:]
    typical = gaps[gaps > 0].median()
    if gaps.empty or pd.isna(typical):
        return 0.0
    own = (rows["train_s"].fillna(0) * rows["repeats"].clip(lower=1))[known].iloc[1:]
    limit = np.maximum(max(LONG_GAP_S, GAP_FACTOR * typical), 2 * own + typical)
    return float(gaps.where((gaps >= 0) & (gaps <= limit), typical).sum())


def _brief(row: pd.Series) -> dict:
    f1 = row["dev_f1"]
    return {
        "n": int(row["n"]),
        "commit": row["commit"],
        "dev_f1": None if pd.isna(f1) else float(f1),
        "status": row["status"],
        "description": row["description"],
    }


def summary_markdown(s: dict) -> str:
    c = s["counts"]
    lines = [f"# {s['results']}: {s['experiments']} experiments, target {s['target']}", ""]
    lines += ["| status | count |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in c.items() if v or k != "ok"]
    judged = c["keep"] + c["discard"] + c["crash"] - s["baselines"]
    rate = "n/a" if s["keep_rate"] is None else f"{s['keep_rate']:.0%}"
    kept = c["keep"] - s["baselines"]
    lines += ["", f"Keep rate: {rate} ({kept} kept of {judged} judged, "
              "baselines aside)", ""]  # fmt: skip
    if s["best"]:
        b = s["best"]
        lines.append(
            f"Best dev F1: **{b['dev_f1']:.4f}** (#{b['n']}, {b['commit']}, {b['status']})"
        )
        lines.append(f"  {_cell(b['description'] or '(no description)')}")
    else:
        lines.append("Best dev F1: none yet (no kept or ok row)")
    if s["cost"]:
        cost = s["cost"]
        lines += ["", f"Cost: {cost['per_hour']:.1f} experiments/hour over {cost['hours']:.2f} h; "
                  f"training steps took {cost['train_share']:.0%} of the wall time (the rest: "
                  "start-up, evaluation, proposals, git)"]  # fmt: skip
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
                f"| {x['n']} | {x['commit']} | {x['dev_f1']:.4f} | {delta} | "
                f"{_cell(x['description'])} |"
            )
    if s["crashes"]:
        lines += ["", "## Crashes", "", "| # | commit | reason |", "|---:|---|---|"]
        lines += [f"| {x['n']} | {x['commit']} | {_cell(x['reason'])} |" for x in s["crashes"]]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Untrusted text in markdown: a `|` (optuna's `a | lr 1e-3`) would split a table cell,
    HTML or a link would reach the renderer (nerlab.text.markdown)."""
    return markdown(text)


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
        return bool(self.delta.excludes_zero)  # a numpy bool (scipy's bounds) is not JSON


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


def matrix_json(cells: list[Transfer]) -> dict:
    """The cells and the asymmetries, JSON-ready (a one-seed interval's half width: null)."""
    return {"cells": [_cell_json(c) for c in cells], "asymmetry": asymmetries(cells)}


def _cell_json(c: Transfer) -> dict:
    d = asdict(c)
    hw = c.delta.half_width
    d["delta"] = {"mean": c.delta.mean, "half_width": None if math.isnan(hw) else hw}
    return {**d, "significant": c.significant}


def matrix_markdown(cells: list[Transfer], baselines: dict[str, Interval], df) -> str:
    fraction = df["fraction"].iloc[0]
    lines = [
        f"ΔF1 (F1 points) of source → target (source for the first {fraction:.0%} of the budget, "
        f"then the target) against the target-only baseline; mean ± Welch 95% CI over "
        f"{fmt_seeds(df)}; ns: the CI includes 0; n/a: one seed, no interval.",
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


# -----------------------------------------------------------------------------
# formatting, shared with the plots


def fmt_delta(iv: Interval) -> str:
    """`+4.4 ± 0.8` in F1 points; a single seed has no interval."""
    if math.isnan(iv.half_width):
        return f"{100 * iv.mean:+.1f} (n=1)"
    return f"{100 * iv.mean:+.1f} ± {100 * iv.half_width:.1f}"


def fmt_f1(iv: Interval | None) -> str:
    """`81.2 ± 0.9` in F1 points; n/a without runs, no interval for a single seed."""
    if iv is None:
        return "n/a"
    if math.isnan(iv.half_width):
        return f"{100 * iv.mean:.1f}"
    return f"{100 * iv.mean:.1f} ± {100 * iv.half_width:.1f}"


def fmt_seeds(df: pd.DataFrame) -> str:
    """`3 seeds`: how many distinct seeds the runs of `df` have."""
    k = df["seed"].nunique()
    return f"{k} seed" + ("s" if k != 1 else "")
