"""Which config file a tag's experiments edit, so every tool measures what the night ran.

The loop's experiment commits name it (`Config:` trailer, nerlab.gitops); a tag made before
the trailers is read by the one file its experiments changed (and the tools say so); a
hand-run branch (program.md) by the file its HEAD commit changed. A `--config` the user gives
is read from where they stand, must lie inside the repository, and is refused when it
contradicts what the commits say, naming theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import git

from nerlab.errors import UserError
from nerlab.gitops import RunBranch, is_baseline, parse_experiment

DEFAULT_CONFIG = Path("configs/current.yaml")  # the config file of a tag that names none
CONFIG_SUFFIXES = (".yaml", ".yml")


def repo_path(root: Path, path: Path | str, base: Path) -> str:
    """`path` as the user meant it (relative to `base`, their working directory) expressed
    relative to the repository `root`; a path outside it is a one-line error."""
    full = (Path(base) / path).resolve()
    try:
        return full.relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        raise UserError(
            f"--config {path}: {full} is outside the repository {root}; the loop commits the "
            "config, so it must be a file of this repository"
        ) from None


def tag_config(run: RunBranch) -> tuple[str | None, str]:
    """The config file a tag's loop edits (relative to the repository) and how that is known;
    (None, why) when nothing tells."""
    experiments = run.experiments()
    for n in sorted(experiments):
        info = parse_experiment(run.repo.commit(experiments[n]).message)
        if info and info.config:
            return info.config, f"the Config: trailer of experiment {n}"
    for n in sorted(experiments):  # the baseline changes nothing; the others one file
        changed = run.changed(experiments[n])
        if len(changed) == 1:
            return changed[0], f"the file experiment {n} changed (a tag without trailers)"
    return None, "no experiment of the tag names or changes a config file"


def choose_config(run: RunBranch, given: Path | None, base: Path, say: Callable = print) -> Path:
    """The config file for a tag, absolute: the tag's own when it has experiments (a `given`
    one that contradicts it is refused), else `given` or DEFAULT_CONFIG. `given` is relative
    to `base` (the user's working directory)."""
    known, how = tag_config(run)
    if known and not how.startswith("the Config:"):
        say(f"note: tag {run.tag!r} edits {known}: {how}")
    return run.root / _agree(run.root, given, base, known, f"tag {run.tag!r} edits", how)


def head_config(repo: git.Repo, given: Path | None, base: Path) -> Path:
    """The config file HEAD's experiment edits, relative to the repository: the `Config:`
    trailer of the nearest experiment commit back to the baseline, else the one config file
    HEAD's commit changed (a hand-made commit), else `given` or DEFAULT_CONFIG."""
    root = Path(repo.working_tree_dir)
    known, how = None, ""
    for c in repo.iter_commits("HEAD", first_parent=True, max_count=1000):
        info = parse_experiment(c.message)
        if info is not None and info.config:
            known, how = info.config, f"the Config: trailer of {c.hexsha[:7]}"
            break
        if is_baseline(c):
            break
    if known is None:
        changed = [p for p in _changed(repo) if p.endswith(CONFIG_SUFFIXES)]
        if len(changed) == 1:
            known, how = changed[0], f"the config file {repo.head.commit.hexsha[:7]} changed"
    return Path(_agree(root, given, base, known, "this branch's experiments edit", how))


def _agree(root: Path, given: Path | None, base: Path, known: str | None, who: str,
           how: str) -> str:  # fmt: skip
    rel = repo_path(root, given, base) if given is not None else None
    if known and rel and rel != known:
        raise UserError(
            f"--config {given}: {who} {known} ({how}); drop --config or pass --config {known}"
        )
    return known or rel or DEFAULT_CONFIG.as_posix()


def _changed(repo: git.Repo) -> list[str]:
    head = repo.head.commit
    if not head.parents:
        return []
    return repo.git.diff_tree("--no-commit-id", "--name-only", "-r", head.parents[0], head).split()
