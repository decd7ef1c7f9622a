"""One experiment of the loop as the driver holds it, and how it is rebuilt from git and its
logs after a restart."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nerlab.agents import Proposal
from nerlab.config import ExperimentConfig, parse_config_text
from nerlab.gitops import RunBranch
from nerlab.runner import RunOutcome, outcome_of


@dataclass
class Experiment:
    n: int
    commit: str  # short hash of the commit that runs
    role: str  # baseline | experiment
    description: str  # the proposer's text ("baseline" for the config as it was)
    config_text: str
    cfg: ExperimentConfig
    proposal: Proposal | None = None  # None for the baseline and for recovered experiments
    f1s: list[float] = field(default_factory=list)  # seeds measured so far
    first: RunOutcome | None = None  # the first run (its summary fills the row)

    @property
    def baseline(self) -> bool:
        return self.role == "baseline"


@dataclass(frozen=True)
class RunLogs:
    """A tag's run logs, runs/<tag>/<n>.log (and <n>.confirm.log for a confirmation)."""

    dir: Path

    def path(self, n: int, suffix: str = "") -> Path:
        return self.dir / f"{n}{suffix}.log"

    def tail(self, n: int, lines: int) -> str:
        path = self.path(n)
        if not path.exists():
            return f"no log for experiment {n}"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def numbers(self) -> list[int]:
        """The experiment numbers that have a log (a failed proposal's included)."""
        return [int(p.stem) for p in self.dir.glob("*.log") if p.stem.isdigit()]


def rebuild(git: RunBranch, n: int, commit: str, config_path: Path) -> Experiment:
    """Experiment n as its commit holds it."""
    info = git.info(commit)
    text = git.show(commit, config_path)
    return Experiment(n, commit, info.role, info.description, text, parse_config_text(text))


def logged(log: Path) -> RunOutcome | None:
    """The outcome a finished run's log holds; None when there is no log or the run never
    reached its summary's status."""
    if not log.exists():
        return None
    text = log.read_text(encoding="utf-8", errors="replace")
    return outcome_of(text, 0) if "\nstatus:" in text else None
