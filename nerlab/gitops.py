"""Git through gitpython: the commit a result belongs to, and the loop's branch operations."""

from __future__ import annotations

from pathlib import Path

import git


def short_head(path: Path) -> str:
    """Short hash of HEAD for the repository containing `path`, or '-' outside git."""
    try:
        repo = git.Repo(path, search_parent_directories=True)
        return repo.head.commit.hexsha[:7]
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return "-"
