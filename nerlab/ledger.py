"""A tag's record: its experiments' rows in results.tsv, and its best, derived from git + rows.

There is no separate record of the best that a kill could leave behind: the branch tip is the
best experiment (only kept experiments join the branch, after their `keep` row is written), and
its row holds its mean F1. Rows belong to a tag through their commits (the experiments' refs),
so several tags can share one results.tsv.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nerlab.gitops import RunBranch, parse_experiment
from nerlab.results import COLUMNS, append_row, read_results, results_row
from nerlab.runner import RunOutcome


@dataclass(frozen=True)
class Best:
    commit: str  # the experiment commit that ran (short hash)
    f1: float  # its mean over seeds
    description: str


class Ledger:
    def __init__(self, path: Path, git: RunBranch, target: str, config: str = ""):
        self.path, self.git, self.target, self.config = path, git, target, config

    def rows(self) -> pd.DataFrame:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return pd.DataFrame(columns=COLUMNS)
        return read_results(self.path)

    def tag_rows(self) -> pd.DataFrame:
        rows = self.rows()
        return rows[rows["commit"].isin(set(self.git.experiments().values()))]

    def statuses(self) -> dict[str, str]:
        """Each of this tag's recorded commits -> the status of its last row."""
        rows = self.tag_rows()
        return dict(zip(rows["commit"], rows["status"]))

    def best(self) -> Best | None:
        """The tip's experiment and its keep row; None before a baseline was kept."""
        tip = self.git.tip()
        info = parse_experiment(tip.message)
        if info is None:
            return None
        commit = self.git.ran_as(tip)
        if commit not in self.git.experiments().values():
            return None  # a tag branched from another tag's best runs its own baseline
        rows = self.rows()
        kept = rows[(rows["commit"] == commit) & (rows["status"] == "keep")]
        if not len(kept):
            return None
        return Best(commit, float(kept["dev_f1"].iloc[-1]), info.description)

    def record(self, n: int, commit: str, role: str, description: str, outcome: RunOutcome,
               status: str = "crash", reason: str = "", f1s: list[float] | None = None,
               ) -> None:  # fmt: skip
        """Experiment n's row. A write that fails (disk full) raises UserError and appends
        nothing."""
        if status == "crash":
            f1s = []
        row = results_row(outcome.summary, commit=commit, target=self.target,
                          description=description, status=status,
                          reason=reason or outcome.reason, f1s=f1s, tag=self.git.tag, n=n,
                          role=role, config=self.config)  # fmt: skip
        append_row(self.path, row)
