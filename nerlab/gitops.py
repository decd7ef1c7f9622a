"""Git through gitpython: the run branch, one commit per experiment, and the branch at the best.

Every experiment (the baseline too) is a commit `autoresearch: [<n>] <description>` of its
config on top of the best commit of the moment, made without touching the working tree or the
index, and held by the ref `refs/autoresearch/<tag>/<n>` so it is never garbage-collected and a
restarted loop finds every experiment it started. Only kept experiments join the branch: the
branch tip is always the best experiment, and the working tree always holds its config. A kept
experiment whose parent is no longer the tip lands as a new commit on the tip with the same
config, naming the commit that ran in a `Ran-as:` trailer.

What an experiment is travels with it as trailers (`Tag:`, `Experiment:`, `Role:`, `Config:`,
and `Ran-as:` on a landed copy), read back by `parse_experiment` alone (nerlab.provenance
turns them into the config file a tag edits). Commits made before the trailers existed are
read by their subject.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import git
from filelock import FileLock, Timeout

from nerlab.errors import UserError

PREFIX = "autoresearch: "
NUMBER = re.compile(r"^autoresearch: \[(\d+)\] ")
TRAILER = re.compile(r"^([A-Z][A-Za-z-]*): (.+)$")
ROLES = ("baseline", "experiment")
HAND_BASELINE = "baseline"  # the subject of a hand-run tag's first commit (program.md)


@dataclass(frozen=True)
class ExperimentCommit:
    """An experiment commit's message, as fields."""

    n: int
    description: str
    role: str | None  # baseline | experiment; None: an old commit that did not say
    config: str | None  # the config file, relative to the repository; None: did not say
    tag: str | None
    ran_as: str | None  # a landed copy: the short hash of the commit that ran


def experiment_message(n: int, description: str, *, tag: str, role: str, config: str,
                       ran_as: str = "") -> str:  # fmt: skip
    """An experiment commit's message: subject, then its identity as trailers."""
    subject = " ".join(description.split())[:200]
    trailers = [f"Tag: {tag}", f"Experiment: {n}", f"Role: {role}", f"Config: {config}"]
    trailers += [f"Ran-as: {ran_as}"] if ran_as else []
    return f"{PREFIX}[{n}] {subject}\n\n" + "\n".join(trailers) + "\n"


def parse_experiment(message: str) -> ExperimentCommit | None:
    """The one reader of experiment commit messages; None for any other commit."""
    lines = message.splitlines()
    m = NUMBER.match(lines[0]) if lines else None
    if not m:
        return None
    fields = {}
    for line in reversed(lines[1:]):  # trailers: the last paragraph
        t = TRAILER.match(line.strip())
        if not t:
            break
        fields[t.group(1).lower()] = t.group(2).strip()
    ran_as = fields.get("ran-as")
    return ExperimentCommit(
        n=int(fields.get("experiment", m.group(1))),
        description=lines[0][m.end() :],
        role=fields.get("role") if fields.get("role") in ROLES else None,
        config=fields.get("config"),
        tag=fields.get("tag"),
        ran_as=ran_as[:7] if ran_as and re.fullmatch(r"[0-9a-f]{7,40}", ran_as) else None,
    )


def is_baseline(commit: git.Commit) -> bool:
    """A tag's baseline: an experiment commit whose role says so, or a hand-made commit whose
    subject is exactly `baseline` (program.md's convention for record.py)."""
    info = parse_experiment(commit.message)
    if info is not None and info.role is not None:
        return info.role == "baseline"
    return commit.summary == HAND_BASELINE


def short_head(path: Path) -> str:
    """Short hash of HEAD for the repository containing `path`, or '-' outside git."""
    try:
        repo = git.Repo(path, search_parent_directories=True)
        return repo.head.commit.hexsha[:7]
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return "-"


class RunBranch:
    """The loop's view of the repository: branch `autoresearch/<tag>`, kept commits only."""

    def __init__(self, root: Path, tag: str):
        try:
            self.repo = git.Repo(root, search_parent_directories=True)
        except git.InvalidGitRepositoryError:
            raise UserError(f"{root}: not inside a git repository") from None
        self.root = Path(self.repo.working_tree_dir)
        if not tag or any(c in tag for c in " ~^:?*[\\") or tag.startswith("-"):
            raise UserError(f"--tag {tag!r}: use letters, digits, - or _ (e.g. nov28)")
        self.tag = tag
        self.branch = f"autoresearch/{tag}"
        self.refs = f"refs/autoresearch/{tag}"
        self._lock: FileLock | None = None
        self._experiments: dict[int, str] | None = None  # read once; only we add to it

    def dirty_files(self) -> list[str]:
        """Tracked files with staged or unstaged changes (untracked files do not count)."""
        staged = [d.a_path for d in self.repo.index.diff("HEAD")]
        unstaged = [d.a_path for d in self.repo.index.diff(None)]
        return sorted(set(staged + unstaged))

    def ensure_clean(self) -> None:
        dirty = self.dirty_files()
        if dirty:
            raise UserError(
                "refusing to start: tracked files have uncommitted changes: "
                + ", ".join(dirty)
                + " (commit or stash them first)"
            )

    def checkout(self) -> bool:
        """Create the branch from HEAD, or switch to it when it exists. True if resumed."""
        exists = self.branch in [h.name for h in self.repo.heads]
        if exists:
            other = self._other_worktree_on_branch()
            if other:  # git refuses to check a branch out twice, in a multi-line traceback
                raise UserError(
                    f"branch {self.branch} is checked out in another worktree, {other}: run the "
                    "loop there, choose another --tag, or free the branch with "
                    f"`git worktree remove {other}` (`git worktree prune` if that folder was "
                    "deleted)"
                )
            self.repo.heads[self.branch].checkout()
        else:
            self.repo.create_head(self.branch).checkout()
        return exists

    def _other_worktree_on_branch(self) -> str | None:
        """The path of another worktree of this repository that has the run branch checked
        out, from `git worktree list --porcelain` (stanzas of `worktree <path>`, `branch <ref>`;
        a worktree whose folder was deleted is listed until `git worktree prune`)."""
        path, here = None, self.root.resolve()
        for line in self.repo.git.worktree("list", "--porcelain").splitlines():
            if line.startswith("worktree "):
                path = line.removeprefix("worktree ")
            elif line == f"branch refs/heads/{self.branch}" and Path(path).resolve() != here:
                return path
        return None

    def head(self) -> str:
        return self.repo.head.commit.hexsha[:7]

    def reopen(self) -> None:
        """A fresh handle: a Ctrl-C in the terminal also kills gitpython's long-lived
        `git cat-file` helpers, and the old handle would fail with BrokenPipeError."""
        self.repo.close()
        self.repo = git.Repo(self.root)

    def reset_to(self, commit: str) -> None:
        self.repo.git.reset("--hard", commit)

    # -- one loop per working tree -------------------------------------------------------

    def lock(self) -> None:
        """Refuse a second loop in this working tree; a killed loop's lock dies with it."""
        git_dir = Path(self.repo.git_dir)  # per worktree
        lock = FileLock(str(git_dir / "autoresearch.lock"))
        pid_file = git_dir / "autoresearch.pid"
        try:
            lock.acquire(timeout=0)
        except Timeout:
            pid = pid_file.read_text().strip() if pid_file.exists() else "?"
            raise UserError(
                f"another agent_loop.py (pid {pid}) is running in {self.root}; stop it first, "
                "or run this one in another working tree (git worktree add)"
            ) from None
        pid_file.write_text(f"{os.getpid()}\n")
        self._lock = lock

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def clear_stale_index_lock(self) -> bool:
        """A loop killed inside `git reset` leaves index.lock; we hold the tree's lock, so no
        loop of ours is using it (a user's own git command would be a race we accept)."""
        stale = Path(self.repo.git_dir) / "index.lock"
        if stale.exists():
            stale.unlink()
            return True
        return False

    # -- experiments as commits --------------------------------------------------------

    def tip(self) -> git.Commit:
        return self.repo.head.commit

    def experiment_commit(self, n: int, path: Path, text: str, description: str,
                          parent: str, role: str, ran_as: str = "") -> str:  # fmt: skip
        """A commit of `text` as `path` on top of `parent` (no checkout, no index change),
        held by the experiment's ref; returns its short hash."""
        rel = Path(path).resolve().relative_to(self.root).as_posix()
        message = experiment_message(n, description, tag=self.tag, role=role, config=rel,
                                     ran_as=ran_as)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="ner-git-") as tmp:
            blob_file = Path(tmp) / "blob"
            blob_file.write_text(text)
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            blob = self.repo.git.hash_object("-w", str(blob_file))
            self.repo.git.read_tree(parent, env=env)
            self.repo.git.update_index("--add", "--cacheinfo", f"100644,{blob},{rel}", env=env)
            tree = self.repo.git.write_tree(env=env)
        sha = self.repo.git.commit_tree(tree, "-p", parent, "-m", message)
        if not ran_as:
            self.repo.git.update_ref(f"{self.refs}/{n}", sha)
            self.experiments()[n] = sha[:7]
        return sha[:7]

    def experiments(self) -> dict[int, str]:
        """Every experiment this tag started: number -> short hash (the loop's own map: the
        refs are read once, then kept up to date as experiments are made)."""
        if self._experiments is not None:
            return self._experiments
        out = self._experiments = {}
        for line in self.repo.git.for_each_ref("--format=%(refname) %(objectname)", self.refs,
                                               ).splitlines():  # fmt: skip
            ref, sha = line.split()
            if ref.rsplit("/", 1)[-1].isdigit():
                out[int(ref.rsplit("/", 1)[-1])] = sha[:7]
        return out

    def changed(self, commit: str) -> list[str]:
        """The files a commit changed against its first parent (none for a root commit)."""
        c = self.repo.commit(commit)
        if not c.parents:
            return []
        out = self.repo.git.diff_tree("--no-commit-id", "--name-only", "-r", c.parents[0], c)
        return out.split()

    def show(self, commit: str, path: Path) -> str:
        rel = Path(path).resolve().relative_to(self.root).as_posix()
        return self.repo.git.show(f"{commit}:{rel}")

    def ran_as(self, commit: git.Commit) -> str:
        """The experiment commit a branch commit stands for (itself, or its Ran-as trailer)."""
        info = parse_experiment(commit.message)
        return info.ran_as if info and info.ran_as else commit.hexsha[:7]

    def info(self, commit: str) -> ExperimentCommit:
        """An experiment of this tag as fields; an old commit's role is inferred (the tag's
        first experiment is its baseline)."""
        c = self.repo.commit(commit)
        info = parse_experiment(c.message)
        if info is None:
            raise UserError(f"{commit} is not an experiment commit of tag {self.tag!r}")
        if info.role is None:
            first = min(self.experiments(), default=info.n)
            role = "baseline" if info.n == first else "experiment"
            info = ExperimentCommit(info.n, info.description, role, info.config, info.tag,
                                    info.ran_as)  # fmt: skip
        return info

    def on_branch(self) -> set[str]:
        """Experiments the branch holds (by the commit that ran)."""
        return {
            self.ran_as(c)
            for c in self.repo.iter_commits(self.branch, max_count=10_000)
            if parse_experiment(c.message)
        }

    def land(self, n: int, commit: str, path: Path, text: str, description: str, role: str) -> str:
        """Put a kept experiment on the branch: fast-forward when it was made on the tip, else
        the same config as a new commit on the tip. Moves the working tree along."""
        tip = self.tip()
        parent = self.repo.commit(commit).parents[0].hexsha
        if parent == tip.hexsha:
            target = commit
        else:
            target = self.experiment_commit(n, path, text, description, tip.hexsha, role, commit)
        self.repo.git.reset("--hard", target)
        return target
