"""The run branch: creating, resuming, and the one-line errors when git refuses."""

import shutil
from pathlib import Path

import git
import pytest

from nerlab.errors import UserError
from nerlab.gitops import RunBranch


@pytest.fixture
def repo(tmp_path) -> git.Repo:
    repo = git.Repo.init(tmp_path / "proj", initial_branch="main")
    with repo.config_writer() as c:
        c.set_value("user", "name", "test").set_value("user", "email", "test@example.com")
    (Path(repo.working_tree_dir) / "train.py").write_text("print('hi')\n")
    repo.index.add(["train.py"])
    repo.index.commit("project")
    return repo


def test_checkout_creates_then_resumes(repo):
    run = RunBranch(Path(repo.working_tree_dir), "nov28")
    assert run.checkout() is False and repo.active_branch.name == "autoresearch/nov28"
    repo.heads.main.checkout()
    assert run.checkout() is True and repo.active_branch.name == "autoresearch/nov28"
    assert run.checkout() is True  # already on it: nothing to do


def test_branch_checked_out_in_another_worktree_is_a_one_line_error(repo, tmp_path):
    other = tmp_path / "other"
    repo.git.worktree("add", str(other), "-b", "autoresearch/nov28")
    run = RunBranch(Path(repo.working_tree_dir), "nov28")
    with pytest.raises(UserError) as e:
        run.checkout()
    assert str(e.value) == (
        f"branch autoresearch/nov28 is checked out in another worktree, {other}: run the loop "
        f"there, choose another --tag, or free the branch with `git worktree remove {other}` "
        "(`git worktree prune` if that folder was deleted)"
    )
    assert repo.active_branch.name == "main"
    shutil.rmtree(other)  # deleted by hand: git still holds the branch until a prune
    with pytest.raises(UserError, match="another worktree"):
        run.checkout()
    repo.git.worktree("prune")
    assert run.checkout() is True and repo.active_branch.name == "autoresearch/nov28"
