"""Record a hand-run experiment: read a train.py log, write its results.tsv row, decide keep,
discard or confirm (agent_loop.py's noise-aware rule) and print the exact next command.

    python record.py run.log                         # HEAD's run; description: HEAD's subject
    python record.py run.log --description "bc2gm first, 30%"
    python record.py run.confirm.log --confirms run.log   # the confirmation: one row, all seeds
    python record.py --timeout                       # seconds to give `timeout` for this config

Exit code 0 whatever the decision (crash included); 1 with a one-line `error:` when nothing
could be recorded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nerlab.config import load_config
from nerlab.errors import UserError, run_cli
from nerlab.record import describe, head_config, record, run_timeout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("log", nargs="?", type=Path, help="the train.py log to record")
    p.add_argument("--description", default="", help="default: the subject of HEAD's commit")
    p.add_argument(
        "--confirms",
        type=Path,
        metavar="FIRST_LOG",
        help="LOG is the confirmation run of FIRST_LOG's commit",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="default: the file HEAD's experiments edit (their commits say), else "
        "configs/current.yaml",
    )
    p.add_argument("--results", type=Path, default=Path("results.tsv"))
    p.add_argument(
        "--timeout",
        action="store_true",
        help="print the run's time limit in seconds (checks the config) and exit",
    )
    args = p.parse_args()
    if args.timeout:
        cfg = load_config(head_config(Path.cwd(), args.config))
        cfg.views()  # the corpora too: a run that cannot start is caught before it is timed
        print(run_timeout(cfg))
        return 0
    if args.log is None:
        raise UserError("name the log to record (python record.py run.log), or pass --timeout")
    print(
        describe(
            record(Path.cwd(), args.log, args.description, args.confirms, args.config, args.results)
        )
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
