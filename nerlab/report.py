"""runs/<tag>/report.html: a tag's night on one self-contained page (images inline as base64,
no external file, script or font), to open from an email. Headline (baseline -> best, the final
test result when final.json exists, experiments, hours, keep rate, crashes), the progress figure
with its numbered points listed, what the night learned about each factor (nerlab.findings),
every kept improvement with its config diff against the previous best, per-type F1 of the best,
crash reasons, and the transfer matrix when one exists. Every score on the page is in F1 points.
While the loop runs, nerlab.live rewrites the page with what is running now."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import re
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
from nerlab.findings import (
    ALIASED,
    EFFECT,
    NO_EFFECT,
    TOO_FEW,
    Effect,
    Findings,
    accounting,
    caveat,
    points,
    tag_findings,
)
from nerlab.gitops import RunBranch
from nerlab.plots import plot_matrix, plt, progress_figure, share_figure
from nerlab.proposals import config_diff
from nerlab.provenance import choose_config
from nerlab.summary import parse_summary
from nerlab.text import PLAIN_FIGURE_TEXT, html

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
.note{color:#666;font-size:.9em} h3{font-size:1em;margin:1.2em 0 .3em} img.small{max-width:640px}
.live{border:1px solid #c9a227;background:#fffbea;border-radius:6px;padding:.5em .9em}
.stopped{border-color:#888;background:#f4f4f4}
"""


def write_report(
    root: Path, tag: str, results: Path, config: Path | None, matrix: Path, out: Path
) -> None:
    """`config`: default, the file the tag's loop edited (its commits say)."""
    root = Path(root).resolve()
    git = RunBranch(root, tag)
    config = choose_config(git, config, root, lambda m: print(m, file=sys.stderr))
    body = render_body(root, tag, root / results, config, root / matrix)
    write_atomic(out, page(tag, body))  # the page a browser may be reading


def page(tag: str, body: str, head: str = "") -> str:
    """The whole document; `head`: extra tags for its <head> (the live page's refresh)."""
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>{head}<title>ner-autoresearch "
        f"{_e(tag)}</title><style>{STYLE}</style></head><body>"
        f"<h1>ner-autoresearch: tag {_e(tag)}</h1>\n{body}</body></html>\n"
    )


def render_body(root: Path, tag: str, results: Path, config: Path, matrix: Path,
                running: str = "") -> str:  # fmt: skip
    """Everything the tag's rows say (a UserError when it has none yet); `config`: the path
    of the file the loop edits (choose_config); `running`: the live page's Running now
    section, shown below the headline."""
    df = tag_experiments(results, root, tag)
    git = RunBranch(root, tag)
    summary = summarize(df, results)
    final_path = root / "runs" / tag / "final.json"
    final = json.loads(final_path.read_text()) if final_path.exists() else None
    parts = [
        f"<p class=sub>target {_e(summary['target'])} · branch autoresearch/{_e(tag)} · "
        f"results to {dt.datetime.now():%Y-%m-%d %H:%M}</p>",
        _headline(df, summary, final),
        running,
        "<h2>Progress</h2>",
        _img(_progress_png(df), "progress of the experiments"),
        _numbered(df),
        "<h2>Findings</h2>",
        _findings(tag_findings(root, tag, results, config)),
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
    return "\n".join(parts)


def _e(x) -> str:
    return html(x)  # every text here may be untrusted: descriptions, reasons, configs


def _box(value: str, label: str, cls: str = "box") -> str:
    return f"<div class={cls}><b>{_e(value)}</b><span>{_e(label)}</span></div>"


def _headline(df: pd.DataFrame, s: dict, final: dict | None) -> str:
    best = running_best(df)
    base = df[df["status"].isin(KEPT)].head(1)
    boxes = []
    if len(base) and best.notna().any():
        b0, b1 = float(base["dev_f1"].iloc[0]), float(best.max())
        boxes.append(_box(f"{_pct(b0)} → {_pct(b1)}",
                          f"dev F1 points, baseline → best ({100 * (b1 - b0):+.2f})"))  # fmt: skip
    if final and final.get("best", final["baseline"]).get("test"):
        arm = final.get("best", final["baseline"])
        label = f"test F1 points of the best ({len(final['seeds'])} seeds, mean ± std)"
        boxes.append(_box(fmt_points(arm, "test"), label, "box test"))
        if final["difference"]:
            boxes.append(
                _box(
                    fmt_diff(final["difference"]).split(" (")[0],
                    "test Δ best − baseline, F1 points",
                    "box test",
                )
            )
    c, cost = s["counts"], s["cost"]
    kept = c["keep"] - s["baselines"]
    judged = kept + c["discard"] + c["crash"]
    boxes += [
        _box(str(s["experiments"]), "experiments"),
        _box(f"{kept} of {judged}", "experiments kept (the baseline not counted)"),
        _box(str(c["crash"]), "crashes"),
    ]
    if cost:
        boxes += [
            _box(duration(cost["hours"] * 3600), "from the first run's start to the last result"),
            _box(f"{cost['per_hour']:.1f}", "experiments per hour (all of them)"),
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


def duration(seconds: float) -> str:
    """`42 s`, `12 min`, `3.4 h`: a short night is not `0.0 h`."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _progress_png(df: pd.DataFrame) -> bytes:
    return _png(progress_figure(df, page=True), 110)


def _png(fig, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _img(png: bytes, alt: str, cls: str = "") -> str:
    data = base64.b64encode(png).decode()
    klass = f" class={cls}" if cls else ""
    return f'<img{klass} alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _numbered(df: pd.DataFrame) -> str:
    """The figure's numbered points (kept and hand runs), for the key it does not draw."""
    marked = df[df["status"].isin(KEPT)].sort_values("n")
    if marked.empty:
        return ""
    rows = "".join(
        f"<tr><td class=num>{r.n}</td><td class=num>{_pct(r.dev_f1)}</td>"
        f"<td>{_e(r.status)}</td><td>{_e(r.description or '(no description)')}</td></tr>"
        for r in marked.itertuples()
    )
    return (
        "<table><tr><th>#</th><th>dev F1</th><th>status</th><th>description</th></tr>"
        f"{rows}</table>"
    )


def _findings(f: Findings) -> str:
    """nerlab.findings as HTML: effects with intervals and n, the factors too thin to tell,
    the seed study's questions, and F1 against the sources' share where shares varied."""
    out = [f"<p>{_e(accounting(f))}</p>"] + [f"<p class=note>{_e(n)}</p>" for n in f.notes]
    found = sorted((e for e in f.effects if e.verdict == EFFECT), key=lambda e: -abs(e.estimate))
    flat = [e for e in f.effects if e.verdict == NO_EFFECT]  # factor order: noise is not ranked
    if found:
        out += ["<h3>Effects (the 95% interval excludes 0)</h3>", _effects_table(found)]
    if flat:
        out += ["<h3>No effect distinguishable from noise</h3>", _effects_table(flat)]
    thin = [e for e in f.effects if e.verdict in (TOO_FEW, ALIASED)]
    if thin:
        items = "".join(
            f"<li>{_e(e.label)}: not enough to tell ({_e(e.verdict)}: {_e(e.note)}; "
            f"n = {e.n_with} vs {e.n_without})</li>"
            for e in thin
        )
        out += ["<h3>Not enough to tell</h3>", f"<ul>{items}</ul>"]
    if f.answers:
        items = "".join(f"<li><b>{_e(a.question)}</b> {_e(a.answer)}</li>" for a in f.answers)
        out += ["<h3>The seed study's questions</h3>", f"<ul>{items}</ul>"]
    if len({p.share for p in f.share_points}) > 1:
        with plt.rc_context(PLAIN_FIGURE_TEXT):
            png = _png(share_figure(f.share_points), 80)
        out.append(_img(png, "F1 against pretraining share per source", "small"))
    if f.importances:
        items = "".join(f"<li>{_e(k)}: {v:.2f}</li>" for k, v in f.importances.items())
        out += [
            "<h3>Optuna's parameter importance (supplementary)</h3>",
            "<p class=note>fANOVA share of the explained variance per search parameter; no "
            "interval, no direction: read the effects above first.</p>",
            f"<ul>{items}</ul>",
        ]
    if caveat(f):
        out.append(f"<p class=note>{_e(caveat(f))}</p>")
    return "\n".join(out)


def _effects_table(effects: list[Effect]) -> str:
    rows = "".join(
        f"<tr><td>{_e(e.label)}</td><td>{_e(e.unit)}</td><td class=num>{points(e.estimate)}</td>"
        f"<td class=num>[{points(e.low)}, {points(e.high)}]</td>"
        f"<td class=num>{e.n_with} vs {e.n_without}</td></tr>"
        for e in effects
    )
    return (
        "<table><tr><th>factor</th><th>unit</th><th>effect (F1 points)</th><th>95% interval</th>"
        f"<th>n (with vs without)</th></tr>{rows}</table>"
    )


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
        gain = "" if prev_text is None else f" ({100 * (r['dev_f1'] - previous[r.name]):+.2f})"
        head = (
            f"<p><b>#{r['n']}</b> <code>{_e(r['commit'])}</code> dev F1 "
            f"<b>{_pct(r['dev_f1'])}</b>{gain} ± {_pct(r['dev_f1_std'])} over {r['repeats']} "
            f"seed(s): {_e(r['description'])}{_note(r['reason'])}</p>"
        )
        diff = text if prev_text is None else config_diff(prev_text, text) or "(same config)"
        out.append(head + diff_html(diff, whole=prev_text is None))
        prev_text = text
    return "\n".join(out) or "<p>No kept experiment.</p>"


def _note(reason: str) -> str:
    """The loop's decision (nerlab.stats writes F1 as a fraction, `0.8533`) in F1 points."""
    if not reason:
        return ""
    text = FRACTION.sub(lambda m: f"{100 * float(m[0]):.2f}", reason)
    return f" <span class=note>(decision: {_e(text)})</span>"


FRACTION = re.compile(r"(?<![\d.])[01]\.\d{4}(?![\d.])")


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


def diff_html(text: str, whole: bool) -> str:
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
    return "n/a" if x is None or pd.isna(x) else f"{100 * x:.2f}"


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
