"""runs/<tag>/report.html: a tag's night on one self-contained page (images inline as base64,
no external file, script or font), to open from an email. Headline (baseline -> best, the final
test result when final.json exists, experiments, hours, keep rate, crashes), the progress figure,
every kept improvement with its config diff against the previous best, per-type F1 of the best,
crash reasons, and the transfer matrix when one exists."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from git import GitCommandError
from pydantic import ValidationError

from nerlab.analysis import (
    KEPT,
    crash_reason,
    elapsed_seconds,
    fmt_delta,
    load_matrix,
    running_best,
    summarize,
    tag_experiments,
    transfers,
)
from nerlab.config import ExperimentConfig, dump_config
from nerlab.errors import UserError
from nerlab.files import write_atomic
from nerlab.final import fmt_diff, fmt_points
from nerlab.gitops import RunBranch
from nerlab.plots import plot_matrix, plt, progress_figure
from nerlab.proposals import config_diff
from nerlab.provenance import choose_config
from nerlab.summary import parse_summary
from nerlab.text import html

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em}
h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0} .headline{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.box{border:1px solid #ddd;border-radius:6px;padding:.6em .9em;min-width:150px}
.box b{display:block;font-size:1.35em} .box span{color:#666;font-size:.85em}
.test{border-color:#2c7a2c;background:#f3faf3} img{max-width:100%;height:auto;display:block}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em} td,th{border:1px solid #ddd;
padding:.25em .6em;text-align:left;vertical-align:top} td.num{text-align:right}
pre{background:#f6f8fa;padding:.5em .8em;margin:.3em 0 1em;overflow-x:auto;font-size:.85em;
white-space:pre-wrap;word-break:break-word} .add{color:#116611} .del{color:#aa1111}
.note{color:#666;font-size:.9em}
"""


def write_report(
    root: Path, tag: str, results: Path, config: Path | None, matrix: Path, out: Path
) -> None:
    """`config`: default, the file the tag's loop edited (its commits say)."""
    root = Path(root).resolve()
    page = render(root, tag, root / results, config, root / matrix)
    write_atomic(out, page)  # the page a browser may be reading


def render(root: Path, tag: str, results: Path, config: Path | None, matrix: Path) -> str:
    df = tag_experiments(results, root, tag)
    git = RunBranch(root, tag)
    config = choose_config(git, config, root, lambda m: print(m, file=sys.stderr))
    summary = summarize(df, results)
    final_path = root / "runs" / tag / "final.json"
    final = json.loads(final_path.read_text()) if final_path.exists() else None
    parts = [
        f"<h1>ner-autoresearch: tag {_e(tag)}</h1>",
        f"<p class=sub>target {_e(summary['target'])} · branch autoresearch/{_e(tag)} · "
        f"generated {dt.datetime.now():%Y-%m-%d %H:%M}</p>",
        _headline(df, summary, final, _hours(df)),
        "<h2>Progress</h2>",
        _img(_progress_png(df), "progress of the experiments"),
        "<h2>Kept improvements</h2>",
        _improvements(df, git, config),
        "<h2>Per-type F1 of the best</h2>",
        _per_type(root / "runs" / tag, summary, final),
        "<h2>Crashes</h2>",
        _crashes(df),
    ]
    if final:
        parts += ["<h2>Final test</h2>", _final_table(final)]
    if matrix.exists():
        parts += ["<h2>Transfer matrix</h2>", _matrix(matrix)]
    body = "\n".join(parts)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>ner-autoresearch "
        f"{_e(tag)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def _e(x) -> str:
    return html(x)  # every text here may be untrusted: descriptions, reasons, configs


def _box(value: str, label: str, cls: str = "box") -> str:
    return f"<div class={cls}><b>{_e(value)}</b><span>{_e(label)}</span></div>"


def _headline(df: pd.DataFrame, s: dict, final: dict | None, hours: float | None) -> str:
    best = running_best(df)
    base = df[df["status"].isin(KEPT)].head(1)
    boxes = []
    if len(base) and best.notna().any():
        b0, b1 = float(base["dev_f1"].iloc[0]), float(best.max())
        boxes.append(_box(f"{b0:.4f} → {b1:.4f}", f"dev F1, baseline → best ({b1 - b0:+.4f})"))
    if final and final.get("best", final["baseline"]).get("test"):
        arm = final.get("best", final["baseline"])
        label = f"test F1 of the best ({len(final['seeds'])} seeds, mean ± std)"
        boxes.append(_box(fmt_points(arm, "test"), label, "box test"))
        if final["difference"]:
            boxes.append(
                _box(
                    fmt_diff(final["difference"]).split(" (")[0],
                    "test Δ best − baseline, F1 points",
                    "box test",
                )
            )
    c = s["counts"]
    rate = "n/a" if s["keep_rate"] is None else f"{s['keep_rate']:.0%}"
    boxes += [
        _box(str(s["experiments"]), "experiments"),
        _box("n/a" if hours is None else f"{hours:.1f} h", "from the first result to the last"),
        _box(rate, f"keep rate ({c['keep']} kept)"),
        _box(str(c["crash"]), "crashes"),
    ]
    note = (
        ""
        if final
        else (
            "<p class=note>No final test yet: run <code>python final.py "
            "--tag …</code> for test F1 with a confidence interval.</p>"
        )
    )
    return f"<div class=headline>{''.join(boxes)}</div>{note}"


def _hours(df: pd.DataFrame) -> float | None:
    """From the first result to the last (a timezone or DST change counts no hours)."""
    seconds = elapsed_seconds(df)
    return seconds / 3600 if seconds else None


def _progress_png(df: pd.DataFrame) -> bytes:
    fig = progress_figure(df)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _improvements(df: pd.DataFrame, git: RunBranch, config: Path) -> str:
    """Each kept row that raised the running best, with its config diff against the previous
    best's config (the first: the baseline, shown whole)."""
    best = running_best(df)
    previous = best.shift(1)
    rows = df[
        df["status"].isin(KEPT)
        & (df["dev_f1"] == best)
        & ~(df["dev_f1"] <= previous.fillna(-math.inf))
    ]
    out, prev_text = [], None
    for _, r in rows.iterrows():
        text = _config_at(git, r["commit"], config)
        gain = "" if prev_text is None else f" ({r['dev_f1'] - previous[r.name]:+.4f})"
        head = (
            f"<p><b>#{r['n']}</b> <code>{_e(r['commit'])}</code> dev F1 "
            f"<b>{r['dev_f1']:.4f}</b>{gain} ± {r['dev_f1_std']:.4f} over {r['repeats']} "
            f"seed(s): {_e(r['description'])}{_note(r['reason'])}</p>"
        )
        diff = text if prev_text is None else config_diff(prev_text, text) or "(same config)"
        out.append(head + _diff_html(diff, whole=prev_text is None))
        prev_text = text
    return "\n".join(out) or "<p>No kept experiment.</p>"


def _note(reason: str) -> str:
    return f" <span class=note>(decision: {_e(reason)})</span>" if reason else ""


def _config_at(git: RunBranch, commit: str, config: Path) -> str:
    """The experiment's config, normalised (comments, order and style aside) so that diffs show
    only what changed; as committed when it does not parse."""
    try:
        text = git.show(commit, config)
    except GitCommandError:
        rel = config.relative_to(git.root).as_posix()
        raise UserError(f"{rel} is not in experiment commit {commit} of tag {git.tag!r}") from None
    try:
        return dump_config(ExperimentConfig.model_validate(yaml.safe_load(text)))
    except (yaml.YAMLError, ValidationError):
        return text


def _diff_html(text: str, whole: bool) -> str:
    lines = []
    for line in text.splitlines():
        cls = "" if whole else {"+": "add", "-": "del"}.get(line[:1], "")
        lines.append(f"<span class={cls}>{_e(line)}</span>" if cls else _e(line))
    return "<pre>" + "\n".join(lines) + "</pre>"


def _per_type(run_dir: Path, s: dict, final: dict | None) -> str:
    """Dev per-type F1 from the best's run log; test per-type from final.json when present."""
    dev: dict[str, float] = {}
    if s["best"]:
        log = run_dir / f"{s['best']['n']}.log"
        summary = parse_summary(log.read_text(errors="replace")) if log.exists() else None
        dev = {
            k[3:]: float(v)
            for k, v in (summary or {}).items()
            if k.startswith("f1_") and k != "f1_seeds"
        }
    arm = (final or {}).get("best") or (final or {}).get("baseline") or {}
    test = arm.get("test", {}).get("per_type", {})
    types = sorted(set(dev) | set(test))
    if not types:
        return "<p>No per-type scores recorded.</p>"
    rows = "".join(
        f"<tr><td>{_e(t)}</td><td class=num>{_pct(dev.get(t))}</td>"
        f"<td class=num>{_pct(test.get(t))}</td></tr>"
        for t in types
    )
    return (
        f"<table><tr><th>entity type</th><th>dev F1 (the loop's run)</th>"
        f"<th>test F1 (final, mean over seeds)</th></tr>{rows}</table>"
    )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _crashes(df: pd.DataFrame) -> str:
    crashed = df[df["status"] == "crash"]
    if crashed.empty:
        return "<p>None.</p>"
    rows = "".join(
        f"<tr><td class=num>{r['n']}</td><td><code>{_e(r['commit'])}</code></td>"
        f"<td>{_e(crash_reason(r['reason']))}</td></tr>"
        for _, r in crashed.iterrows()
    )
    return f"<table><tr><th>#</th><th>commit</th><th>reason</th></tr>{rows}</table>"


def _final_table(final: dict) -> str:
    rows = ""
    for role in ("baseline", "best"):
        a = final.get(role)
        if not a:
            continue
        t = a.get("test", {})
        rows += (
            f"<tr><td>{role} (#{a['n']}, <code>{_e(a['commit'])}</code>)</td>"
            f"<td class=num>{a['finished']}/{a['finished'] + a['crashed']}</td>"
            f"<td class=num>{fmt_points(a, 'dev')}</td><td class=num>{fmt_points(a, 'test')}"
            f"</td><td class=num>{_pct(t.get('precision'))}</td>"
            f"<td class=num>{_pct(t.get('recall'))}</td></tr>"
        )
    diff = (
        "The best is the baseline."
        if final["best_is_baseline"]
        else f"Test F1, best − baseline: {fmt_diff(final['difference'])}."
    )
    return (
        f"<p class=note>{_e(final['note'])} {_e(final['hardware'])}; seeds "
        f"{_e(', '.join(map(str, final['seeds'])))}.</p><table><tr><th>config</th>"
        f"<th>seeds ok</th><th>dev F1</th><th>test F1</th><th>test P</th><th>test R</th></tr>"
        f"{rows}</table><p>{_e(diff)}</p>"
    )


def _matrix(path: Path) -> str:
    df = load_matrix(path)
    cells, baselines = transfers(df)
    if not cells:
        return "<p>The matrix file has no complete cell yet.</p>"
    rows = "".join(
        f"<tr><td>{_e(c.target)}</td><td>{_e(c.source)}</td><td class=num>{100 * c.base:.1f}</td>"
        f"<td class=num>{100 * c.mean:.1f}</td><td class=num>{_e(fmt_delta(c.delta))}</td></tr>"
        for c in cells
    )
    with tempfile.TemporaryDirectory(prefix="ner-report-") as tmp:
        plot_matrix(cells, baselines, df, Path(tmp) / "matrix.png")
        png = (Path(tmp) / "matrix.png").read_bytes()
    return (
        f"{_img(png, 'transfer matrix')}<table><tr><th>target</th><th>source</th>"
        f"<th>baseline F1</th><th>curriculum F1</th><th>ΔF1 (95% CI)</th></tr>{rows}</table>"
    )
