"""Read the experiment logs: the progress chart, a summary, and the transfer matrix.

    python analyze.py progress [--results results.tsv] [--out progress.png] [--target T]
    python analyze.py summary  [--results results.tsv] [--json] [--target T]
    python analyze.py matrix   [--results matrix.tsv] [--out matrix.png]
    python analyze.py report   --tag T [--results results.tsv]   # runs/<tag>/report.html

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
from pathlib import Path

from nerlab.analysis import (
    load_experiments,
    load_matrix,
    matrix_json,
    matrix_markdown,
    summarize,
    summary_markdown,
    tag_experiments,
    transfers,
)
from nerlab.errors import UserError, run_cli
from nerlab.plots import plot_matrix, plot_progress


def experiments(args):
    """The tag's experiments numbered by its refs with --tag, else the file's rows in order."""
    if getattr(args, "tag", None):
        return tag_experiments(Path(args.results), Path.cwd(), args.tag)
    return load_experiments(Path(args.results), args.target)


def cmd_progress(args) -> None:
    plot_progress(experiments(args), Path(args.out))


def cmd_summary(args) -> None:
    path = Path(args.results)
    s = summarize(experiments(args), path)
    print(json.dumps(s, indent=2) if args.json else summary_markdown(s))


def cmd_matrix(args) -> None:
    path = Path(args.results)
    df = load_matrix(path)
    cells, baselines = transfers(df)
    if not cells:
        raise UserError(f"{path}: no (source, target) cell has both curriculum and baseline runs")
    if args.json:
        print(json.dumps(matrix_json(cells), indent=2))
    else:
        print(matrix_markdown(cells, baselines, df))
    plot_matrix(cells, baselines, df, Path(args.out))


def cmd_report(args) -> None:
    from nerlab.report import write_report

    out = Path(args.out) if args.out else Path("runs") / args.tag / "report.html"
    write_report(Path.cwd(), args.tag, Path(args.results), args.config, Path(args.matrix),
                 out)  # fmt: skip
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("progress", help="the autoresearch chart of results.tsv")
    pr.add_argument("--results", default="results.tsv")
    pr.add_argument("--out", default="progress.png", help=".png, or .pdf/.svg (vector)")
    pr.add_argument("--target", help="with several targets in the file (default: the latest)")
    pr.add_argument("--tag", help="one loop tag's experiments, numbered as the loop numbered them")
    su = sub.add_parser("summary", help="counts, keep rate, best, improvements, crashes")
    su.add_argument("--results", default="results.tsv")
    su.add_argument("--json", action="store_true", help="JSON instead of markdown")
    su.add_argument("--target", help="with several targets in the file (default: the latest)")
    su.add_argument("--tag", help="one loop tag's experiments, numbered as the loop numbered them")
    rp = sub.add_parser("report", help="runs/<tag>/report.html: one self-contained page")
    rp.add_argument("--tag", required=True)
    rp.add_argument("--results", default="results.tsv")
    rp.add_argument("--config", type=Path, help="default: the config file the tag's loop edited")
    rp.add_argument("--matrix", default="matrix.tsv", help="a transfer matrix, shown if present")
    rp.add_argument("--out", help="default: runs/<tag>/report.html")
    ma = sub.add_parser("matrix", help="transfer matrix of python -m nerlab.sweep matrix")
    ma.add_argument("--results", default="matrix.tsv")
    ma.add_argument("--out", default="matrix.png")
    ma.add_argument("--json", action="store_true", help="the cells as JSON instead of markdown")
    args = p.parse_args(argv)
    commands = {"progress": cmd_progress, "summary": cmd_summary, "matrix": cmd_matrix,
                "report": cmd_report}  # fmt: skip
    commands[args.command](args)
    return 0


if __name__ == "__main__":
    run_cli(main)
