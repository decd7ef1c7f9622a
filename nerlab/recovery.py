"""A restarted loop's first step: whatever a kill left half done is finished from git, the
rows and the logs, before anything new starts. Every experiment without a row gets its row
(its result when its log holds a finished run, else `crash` interrupted), a keep that did not
reach the branch lands, and a `git reset --hard` cut short is completed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from git import GitCommandError

from nerlab.experiment import Experiment, RunLogs, logged, rebuild
from nerlab.gitops import RunBranch
from nerlab.ledger import Best, Ledger
from nerlab.proposals import ProposalCheck
from nerlab.runner import RunOutcome
from nerlab.stats import Decision
from nerlab.text import visible


class Driver(Protocol):
    """What recovery needs of the loop (nerlab.loop.ResearchLoop): its state, and its own way
    to decide, record and land, so a recovered experiment is concluded exactly as a live one."""

    root: Path
    config_path: Path
    git: RunBranch
    ledger: Ledger
    check: ProposalCheck
    best: Best | None
    logs: RunLogs
    say: Callable[[str], None]

    def decide(self, exp: Experiment) -> Decision: ...
    def conclude(self, exp: Experiment, decision: Decision) -> None: ...
    def land(self, exp: Experiment) -> None: ...
    def record(self, exp: Experiment, outcome: RunOutcome) -> None: ...


def restore_cut_reset(loop: Driver) -> None:
    """A kill inside `git reset --hard` leaves the branch moved but the config file old:
    ours to restore, but only when the file holds a config this branch already had."""
    git, path = loop.git, loop.config_path
    if git.repo.head.is_detached or git.repo.active_branch.name != git.branch:
        return
    rel = path.relative_to(loop.root).as_posix()
    if git.dirty_files() != [rel] or not path.exists():
        return
    text = path.read_text()
    known = set()
    for commit in git.repo.iter_commits(git.branch, max_count=20):
        with contextlib.suppress(GitCommandError):  # the file may be new
            known.add(git.show(commit.hexsha, path).strip())
    if text.strip() in known:
        loop.say(f"recovering: {rel} restored to the best commit (a reset was cut short)")
        git.reset_to("HEAD")


def recover(loop: Driver) -> None:
    """Give every experiment without a row its row; land a keep that was not landed."""
    statuses = loop.ledger.statuses()
    experiments = loop.git.experiments()
    rows = loop.ledger.tag_rows()
    kept = rows.loc[rows["status"] == "keep", "commit"].tolist()  # in decision order
    if kept and kept[-1] not in loop.git.on_branch():
        n = next(n for n, c in experiments.items() if c == kept[-1])
        loop.say(f"recovering: [{n}] {kept[-1]} was kept but not on the branch: landing it")
        loop.land(rebuild(loop.git, n, kept[-1], loop.config_path))
    for n, commit in sorted(experiments.items()):
        exp = rebuild(loop.git, n, commit, loop.config_path)
        if commit not in statuses:
            _recover_one(loop, exp)
        elif statuses[commit] in ("keep", "discard"):
            loop.check.remember(exp.cfg, f"experiment {n} ({statuses[commit]})")


def _recover_one(loop: Driver, exp: Experiment) -> None:
    """A run the last loop did not record: its result if its log holds one, else a crash."""
    first = logged(loop.logs.path(exp.n))
    if first is None or not first.ok:
        loop.say(f"recovering: [{exp.n}] {exp.commit} ({visible(exp.description)}) has no row: "
                 "interrupted")  # fmt: skip
        loop.record(exp, RunOutcome("crash", reason="interrupted"))
        return
    loop.say(f"recovering: [{exp.n}] {exp.commit} finished before the loop stopped")
    loop.best = loop.ledger.best()
    exp.first, exp.f1s = first, first.f1s
    confirm = logged(loop.logs.path(exp.n, ".confirm"))
    if confirm is not None and confirm.ok:
        exp.f1s = first.f1s + confirm.f1s
    decision = loop.decide(exp)
    if decision.action == "confirm":  # its confirmation was cut short
        loop.record(exp, RunOutcome("crash", reason="interrupted during confirmation"))
    else:
        loop.conclude(exp, decision)
