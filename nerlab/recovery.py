"""A restarted loop's first step: whatever a kill left half done is finished from git, the
rows and the logs, before anything new starts. Every experiment without a row gets its row
(its result when its log holds a finished run, else `crash` interrupted), a keep that did not
reach the branch lands, and a `git reset --hard` cut short is completed. Experiments are
concluded by the loop's own nerlab.judge.Judge, so a recovered one ends exactly as a live one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from git import GitCommandError

from nerlab.experiment import Experiment, logged, rebuild
from nerlab.gitops import RunBranch
from nerlab.judge import Judge
from nerlab.runner import RunOutcome
from nerlab.text import visible


def restore_cut_reset(git: RunBranch, path: Path, say: Callable[[str], None]) -> None:
    """A kill inside `git reset --hard` leaves the branch moved but the config file old:
    ours to restore, but only when the file holds a config this branch already had."""
    if git.repo.head.is_detached or git.repo.active_branch.name != git.branch:
        return
    rel = path.relative_to(git.root).as_posix()
    if git.dirty_files() != [rel] or not path.exists():
        return
    text = path.read_text()
    known = set()
    for commit in git.repo.iter_commits(git.branch, max_count=20):
        with contextlib.suppress(GitCommandError):  # the file may be new
            known.add(git.show(commit.hexsha, path).strip())
    if text.strip() in known:
        say(f"recovering: {rel} restored to the best commit (a reset was cut short)")
        git.reset_to("HEAD")


def recover(judge: Judge) -> None:
    """Give every experiment without a row its row; land a keep that was not landed."""
    statuses = judge.ledger.statuses()
    experiments = judge.git.experiments()
    rows = judge.ledger.tag_rows()
    kept = rows.loc[rows["status"] == "keep", "commit"].tolist()  # in decision order
    if kept and kept[-1] not in judge.git.on_branch():
        n = next(n for n, c in experiments.items() if c == kept[-1])
        judge.say(f"recovering: [{n}] {kept[-1]} was kept but not on the branch: landing it")
        judge.land(rebuild(judge.git, n, kept[-1], judge.config_path))
    for n, commit in sorted(experiments.items()):
        exp = rebuild(judge.git, n, commit, judge.config_path)
        if commit not in statuses:
            _recover_one(judge, exp)
        elif statuses[commit] in ("keep", "discard"):
            judge.check.remember(exp.cfg, f"experiment {n} ({statuses[commit]})")


def _recover_one(judge: Judge, exp: Experiment) -> None:
    """A run the last loop did not record: its result if its log holds one, else a crash."""
    first = logged(judge.logs.path(exp.n))
    if first is None or not first.ok:
        judge.say(f"recovering: [{exp.n}] {exp.commit} ({visible(exp.description)}) has no row: "
                 "interrupted")  # fmt: skip
        judge.record(exp, RunOutcome("crash", reason="interrupted"))
        return
    judge.say(f"recovering: [{exp.n}] {exp.commit} finished before the loop stopped")
    judge.best = judge.ledger.best()
    exp.first, exp.f1s = first, first.f1s
    confirm = logged(judge.logs.path(exp.n, ".confirm"))
    if confirm is not None and confirm.ok:
        exp.f1s = first.f1s + confirm.f1s
    decision = judge.decide(exp)
    if decision.action == "confirm":  # its confirmation was cut short
        judge.record(exp, RunOutcome("crash", reason="interrupted during confirmation"))
    else:
        judge.conclude(exp, decision)
