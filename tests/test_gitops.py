"""The run branch: creating, resuming, and the one-line errors when git refuses."""

import shutil
from pathlib import Path

import git
import pytest

from nerlab.errors import UserError
from nerlab.gitops import RunBranch, parse_experiment
from nerlab.provenance import choose_config, tag_config


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


def test_trailers_carry_the_experiment_and_are_read_back(repo):
    root = Path(repo.working_tree_dir)
    (root / "configs").mkdir()
    (root / "configs" / "smoke.yaml").write_text("lr: 1\n")
    run = RunBranch(root, "t")
    sha = run.experiment_commit(4, root / "configs" / "smoke.yaml", "lr: 2\n", "lr 2\nRole: x",
                                run.tip().hexsha, "experiment")  # fmt: skip
    info = parse_experiment(repo.commit(sha).message)
    assert (info.n, info.description, info.role, info.config, info.tag, info.ran_as) == (
        4, "lr 2 Role: x", "experiment", "configs/smoke.yaml", "t", None)  # fmt: skip
    assert tag_config(run) == ("configs/smoke.yaml", "the Config: trailer of experiment 4")
    assert parse_experiment("project\n\nExperiment: 3\n") is None  # not an experiment commit


def legacy_experiment(repo: git.Repo, n: int, subject: str, files: dict[str, str]) -> None:
    """An experiment commit as the loop made them before trailers: subject only."""
    root = Path(repo.working_tree_dir)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
        repo.index.add([name])
    tree = repo.index.write_tree()
    sha = repo.git.commit_tree(tree.hexsha, "-p", "HEAD", "-m", f"autoresearch: [{n}] {subject}")
    repo.git.update_ref(f"refs/autoresearch/old/{n}", sha)


def test_a_tag_without_trailers_is_read_from_its_diffs(repo):
    legacy_experiment(repo, 1, "baseline", {})
    legacy_experiment(repo, 2, "lr up", {"configs/smoke.yaml": "lr: 3\n"})
    run = RunBranch(Path(repo.working_tree_dir), "old")
    config, how = tag_config(run)
    assert config == "configs/smoke.yaml" and "experiment 2 changed" in how
    notes = []
    chosen = choose_config(run, None, Path(repo.working_tree_dir), notes.append)
    assert chosen == Path(repo.working_tree_dir) / "configs" / "smoke.yaml" and notes
    assert [run.info(c).role for c in run.experiments().values()] == ["baseline", "experiment"]
