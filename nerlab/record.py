"""Recording a hand-run experiment (program.md's loop): a train.py log becomes one results.tsv
row, decided by agent_loop.py's rule (nerlab.stats.decide), and the exact next command is
printed, so a coding agent never averages seeds, picks seeds or writes TSV by hand.

The git shape is agent_loop.py's: every experiment is a commit of the config (the first one the
commit `baseline`), and the branch holds only kept experiments. The best is the keep row of the
nearest commit before HEAD on the branch that has one; the walk stops at the baseline commit,
so a new tag never inherits another tag's score. A run that needs confirmation writes no row:
its confirmation's record writes one row with all the seeds; a commit has one row, whatever
its outcome. A log is HEAD's only when the config it names (its `config_sha256`) is HEAD's.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import git

from nerlab import policy, provenance
from nerlab.config import ExperimentConfig, config_hash, load_config
from nerlab.errors import UserError
from nerlab.gitops import HAND_BASELINE, is_baseline, parse_experiment
from nerlab.ledger import Best
from nerlab.policy import MIN_SEEDS, NOISE_MARGIN
from nerlab.results import append_row, read_results, results_row
from nerlab.runner import RunOutcome, outcome_of
from nerlab.stats import Decision, decide
from nerlab.summary import parse_summary

CONFIG_HASH = re.compile(r"^(?:# config sha256|config_sha256):\s*([0-9a-f]{64})\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Recorded:
    commit: str
    action: str  # keep | discard | crash | confirm (confirm: no row written yet)
    reason: str
    best: Best | None  # the best before this experiment
    row: dict | None  # as written to results.tsv
    next: list[str]  # the commands to run next, in order


def run_timeout(cfg: ExperimentConfig, repeats: int | None = None) -> int:
    """Seconds before a run counts as hung (nerlab.policy, as the loop's)."""
    return round(policy.run_timeout(cfg.budget, repeats or cfg.repeats))


def head_config(root: Path, given: Path | None) -> Path:
    """The config file HEAD's experiment edits, relative to the repository (nerlab.provenance);
    `given` is relative to `root`, where the user stands."""
    return provenance.head_config(_repo(root), given, root)


def record(
    root: Path,
    log: Path,
    description: str = "",
    confirms: Path | None = None,
    config: Path | None = None,
    results: Path = Path("results.tsv"),
) -> Recorded:
    """Decide on HEAD's run(s) and write its row (none while a confirmation is pending)."""
    repo = _repo(root)
    top = Path(repo.working_tree_dir)
    rel = head_config(root, config)
    cfg = _committed_config(repo, top / rel, rel)
    results = root / results
    head = repo.head.commit
    commit = head.hexsha[:7]
    _refuse_second_row(results, commit)
    baseline = is_baseline(head)
    best = None if baseline else find_best(repo, results)
    description = description or head.summary
    ran = config_hash((top / rel).read_text(encoding="utf-8", errors="replace"))
    outcome = read_log(root / log, head, ran, rel)
    first = read_log(root / confirms, head, ran, rel) if confirms else None
    if first is not None and not first.ok:
        raise UserError(f"{confirms}: that run crashed, so there is nothing to confirm")
    fields = {
        "commit": commit, "target": cfg.target, "description": description, "tag": _tag(repo),
        "role": "baseline" if baseline else "experiment", "config": rel.as_posix(),
    }  # fmt: skip
    if not outcome.ok:
        row = results_row(outcome.summary, status="crash", reason=outcome.reason, **fields)
        append_row(results, row)
        return Recorded(commit, "crash", outcome.reason, best, row, _after_crash(best))
    f1s = (first.f1s if first else []) + outcome.f1s
    decision = decide(f1s, best.f1 if best else None, NOISE_MARGIN, MIN_SEEDS)
    if decision.action == "confirm":
        if first is not None:
            raise UserError(
                f"{log} and {confirms} hold {len(f1s)} seeds, {MIN_SEEDS} are needed: "
                f"run the confirmation command printed for {confirms}"
            )
        steps = _confirmation(cfg, len(f1s), log, rel)
        return Recorded(commit, "confirm", decision.reason, best, None, steps)
    summary = (first or outcome).summary  # the first run's cost and memory, as the loop does
    row = results_row(summary, status=decision.action, reason=decision.reason, f1s=f1s, **fields)
    append_row(results, row)
    return Recorded(
        commit, decision.action, decision.reason, best, row, _after(decision, best, rel)
    )


def read_log(path: Path, head: git.Commit, config_sha256: str, config: Path) -> RunOutcome:
    """A run's outcome from its log's summary block (train.py exits 0 exactly when it is ok).
    A log of another config (its `config_sha256`, or the runner's header, differs from HEAD's
    `config`) is another commit's run: refused. A log without either is held to its age: one
    older than HEAD's commit is an earlier experiment's."""
    if not path.exists():
        raise UserError(f"{path}: log not found (run: python train.py > {path} 2>&1)")
    text = path.read_text(encoding="utf-8", errors="replace")
    named = CONFIG_HASH.findall(text)
    if any(h != config_sha256 for h in named):
        raise UserError(
            f"{path.name} is a run of another config (sha256 {named[-1][:12]}), not of "
            f"{config} at {head.hexsha[:7]} ({config_sha256[:12]}): run this commit's config "
            "and record that log"
        )
    if not named and path.stat().st_mtime < head.committed_date:
        raise UserError(
            f"{path.name} is older than commit {head.hexsha[:7]}: it is an earlier "
            "run's log; run this commit first"
        )
    summary = parse_summary(text)
    if summary is None or summary["status"] not in ("ok", "crash"):
        if summary is not None or "\n---" in text:
            return RunOutcome("crash", reason="truncated log: its summary block is cut short")
        tail = " | ".join(text.strip().splitlines()[-3:])[-300:]
        return RunOutcome("crash", reason=f"no summary block (killed or timed out): {tail}")
    return outcome_of(text, 0 if summary["status"] == "ok" else 1)


def _tag(repo: git.Repo) -> str:
    """The tag of a branch autoresearch/<tag>; empty on any other branch."""
    branch = "" if repo.head.is_detached else repo.active_branch.name
    return branch.removeprefix("autoresearch/") if branch.startswith("autoresearch/") else ""


def find_best(repo: git.Repo, results: Path) -> Best:
    """The keep row of the nearest commit before HEAD on the branch; the walk stops at the
    baseline commit, whose row must exist."""
    kept = _kept_rows(results)
    for c in list(repo.iter_commits("HEAD", first_parent=True))[1:]:
        if c.hexsha[:7] in kept:
            info = parse_experiment(c.message)
            return Best(c.hexsha[:7], kept[c.hexsha[:7]], info.description if info else c.summary)
        if is_baseline(c):
            raise UserError(
                f"the baseline {c.hexsha[:7]} has no keep row in {results.name}: "
                "record its run first (python record.py run.log)"
            )
    raise UserError(
        f"no `{HAND_BASELINE}` commit on this branch: make one with "
        f"git commit --allow-empty -am {HAND_BASELINE}, run it and record it"
    )


def _kept_rows(results: Path) -> dict[str, float]:
    if not results.exists() or results.stat().st_size == 0:
        return {}
    rows = read_results(results)
    kept = rows[rows["status"] == "keep"]
    return dict(zip(kept["commit"], kept["dev_f1"]))


def _refuse_second_row(results: Path, commit: str) -> None:
    """A recorded commit is done (kept, discarded or crashed): a second row would count its
    seeds twice, or its crash twice."""
    if not results.exists() or results.stat().st_size == 0:
        return
    rows = read_results(results)
    done = rows[rows["commit"] == commit]
    if len(done):
        status = done["status"].iloc[-1]
        then = "commit the next experiment"
        if status == "crash":
            then = "fix what its reason names, git commit --amend -a --no-edit, run again"
        raise UserError(
            f"{commit} already has a {status} row in {results.name}: {then} before recording"
        )


def _repo(root: Path) -> git.Repo:
    try:
        return git.Repo(root, search_parent_directories=True)
    except git.InvalidGitRepositoryError:
        raise UserError(f"{root}: not inside a git repository") from None


def _committed_config(repo: git.Repo, path: Path, shown: Path) -> ExperimentConfig:
    """The config HEAD ran: the file must be as committed, or the row would name another one."""
    if repo.git.status("--porcelain", "--", str(path)):
        raise UserError(
            f"{shown} has uncommitted changes: commit the experiment "
            "(git commit -am '<description>') before running and recording it"
        )
    try:
        return load_config(path)
    except UserError as e:
        raise UserError(
            f"{e} (fix it, git commit --amend -a --no-edit, run again; nothing was recorded)"
        ) from None


# -----------------------------------------------------------------------------
# the next commands


def _confirmation(cfg: ExperimentConfig, measured: int, log: Path, config: Path) -> list[str]:
    """New seeds right after the measured ones (seed..seed+measured-1), up to MIN_SEEDS."""
    extra = MIN_SEEDS - measured
    sets = f"--set seed={cfg.seed + measured} --set repeats={extra}"
    confirm_log = log.with_name(f"{log.stem}.confirm{log.suffix}")
    return [
        f"timeout {run_timeout(cfg, extra)} {_train_command(config)} {sets} > {confirm_log} 2>&1",
        f"{python()} record.py {confirm_log} --confirms {log}{_config_flag(config)}",
    ]


def _after(decision: Decision, best: Best | None, config: Path) -> list[str]:
    if decision.action == "keep":
        return [f"edit {config} with the next idea, then: git commit -am '<one-line description>'"]
    return [f"git reset --hard {best.commit}"]


def _after_crash(best: Best | None) -> list[str]:
    if best is None:  # the baseline itself: nothing to go back to
        return [
            "fix what the log's reason names (tail -n 50 the log), git commit --amend -a "
            "--no-edit, and run the baseline again"
        ]
    return [f"git reset --hard {best.commit}"]


def _train_command(config: Path) -> str:
    return f"{python()} train.py{_config_flag(config)}"


def _config_flag(config: Path) -> str:
    return "" if config == provenance.DEFAULT_CONFIG else f" --config {config}"


def python() -> str:
    """`python` when that is this interpreter on PATH, else this interpreter's full path."""
    found = shutil.which("python")
    same = found is not None and Path(found).resolve() == Path(sys.executable).resolve()
    return "python" if same else sys.executable


def describe(r: Recorded) -> str:
    """What a person or an agent reads: the decision, the row, the best, what to run next."""
    lines = [f"{r.action}: {r.reason}"]
    if r.row:
        seeds = r.row["repeats"]
        lines.append(
            f"recorded {r.commit}: dev_f1 {r.row['dev_f1']} (std {r.row['dev_f1_std']}"
            f", {seeds} seed{'s' if seeds != 1 else ''}), {r.row['status']}"
        )
    if r.best:
        lines.append(f"best before it: {r.best.f1:.4f} at {r.best.commit} ({r.best.description})")
    lines += [f"next: {step}" for step in r.next]
    return "\n".join(lines)
