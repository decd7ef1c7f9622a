"""Git through gitpython: the run branch, one commit per experiment, and revert to the best.

Experiment commits carry the subject prefix `autoresearch: `, so a restarted loop can tell an
experiment commit (which must have a results row) from the commit the branch started at.
"""

from __future__ import annotations

from pathlib import Path

import git

from nerlab.errors import UserError

PREFIX = "autoresearch: "


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
        self.branch = f"autoresearch/{tag}"

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

    def head_is_experiment(self) -> bool:
        return self.repo.head.commit.message.startswith(PREFIX)

    def head_description(self) -> str:
        return self.repo.head.commit.message.removeprefix(PREFIX).splitlines()[0]

    def commit_file(self, path: Path, description: str) -> str:
        self.repo.index.add([str(Path(path).resolve().relative_to(self.root))])
        subject = " ".join(description.split())[:200]
        self.repo.index.commit(PREFIX + subject)
        return self.head()

    def reset_to(self, commit: str) -> None:
        self.repo.git.reset("--hard", commit)

    def reset_to_parent(self) -> None:
        self.repo.git.reset("--hard", "HEAD~1")

    def log(self) -> list[str]:
        return [c.message.splitlines()[0] for c in self.repo.iter_commits(self.branch)]
