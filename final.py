"""The morning after: the final test of a tag's best config against its baseline.

    python final.py --tag nov28                      # 3 seeds each; dev and TEST F1
    python final.py --tag nov28 --seeds 5 --workers 4
    python final.py --tag nov28 --export models/nov28   # + the winning model, transformers format

Trains the tag's baseline (experiment 1) and its best (the branch tip's experiment) with K seeds
each (train.py runs, as the loop's), scores every saved model on dev and on test, and writes
runs/<tag>/final.json and final.md: test F1 mean ± std for both, the difference with a Welch 95%
CI, precision, recall and per-type F1 (and runs/<tag>/report.html). This is the only place the
test split is used.
Resumable: finished seeds are not rerun. --export writes the best config's best-dev seed as a
directory that transformers loads (AutoModelForTokenClassification, pipeline) with a model card.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nerlab import signals
from nerlab.errors import UserError, run_cli
from nerlab.export import check_exportable, check_target_dir, export_model
from nerlab.final import FinalEvaluation, FinalOptions, markdown, missing_seeds
from nerlab.gitops import RunBranch
from nerlab.report import write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tag", required=True, help="the run: branch autoresearch/<tag>")
    p.add_argument("--seeds", type=int, default=3, help="seeds per config (0..K-1; default 3)")
    p.add_argument(
        "--config",
        type=Path,
        help="default: the config file the tag's loop edited (its commits say)",
    )
    p.add_argument("--results", type=Path, default=Path("results.tsv"))
    p.add_argument("--workers", type=int, default=1, help="runs at a time (>1: Ray)")
    p.add_argument("--ray-address", help="an existing Ray cluster, e.g. auto")
    p.add_argument("--export", type=Path, metavar="DIR", help="write the winning model here")
    p.add_argument("--force", action="store_true", help="--export: replace an existing directory")
    p.add_argument("--license", default="other", help="the model card's license field")
    args = p.parse_args(argv)
    here = Path.cwd()  # paths given are the user's, from where they stand
    root = RunBranch(here, args.tag).root  # train.py, runs/ and results.tsv: the loop's
    config = here / args.config if args.config else None
    export = here / args.export if args.export else None
    if export:
        check_target_dir(export, args.force)  # before hours of training, not after
    final = FinalEvaluation(
        FinalOptions(
            args.tag, root, args.seeds, config, args.results, args.workers, args.ray_address
        )
    )
    if export:  # an unexportable head, said before hours of training
        best = final.arms[-1]
        check_exportable(best.config_text, Path(os.path.relpath(final.seed_dir(best, 0), here)))
    report = final.run()
    print(markdown(report))
    print(f"\nwrote {final.dir / 'final.json'} and {final.dir / 'final.md'}")
    try:  # the night's page, now with the final test in its headline
        page = final.dir / "report.html"
        write_report(root, args.tag, args.results, config, Path("matrix.tsv"), page)
        print(f"wrote {page}")
    except UserError as e:
        print(f"note: no report.html: {e}")
    if export:
        print(export_model(final.best_seed_dir(), export, report, args.license))
    missing = missing_seeds(report)
    if missing:  # `final.py && publish` must stop: the report is not the one asked for
        print(f"error: incomplete: {'; '.join(missing)} did not finish (see final.md); "
              "rerun the same command to train them", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    signals.install()  # SIGTERM, SIGHUP: the seeds in flight stopped, as on Ctrl-C
    run_cli(main)
