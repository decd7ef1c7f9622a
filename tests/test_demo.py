"""`make demo`: a short Optuna night in a scratch clone, its report page, the way on; the
user's checkout, branch and refs stay as they were."""

from __future__ import annotations

import sys

import git
import pytest

from nerlab.demo import next_steps
from tests.helpers import make_repo, run_script


def state(repo: git.Repo) -> tuple:
    return (repo.head.commit.hexsha, repo.active_branch.name, repo.git.status("--porcelain"),
            repo.git.for_each_ref(), repo.git.worktree("list"))  # fmt: skip


@pytest.mark.slow
def test_the_demo_runs_a_night_beside_the_checkout_and_shows_its_page(tmp_path, synthetic_home):
    path = make_repo(tmp_path / "proj", fake_train=False)
    repo = git.Repo(path)
    before = state(repo)
    args = ("-m", "nerlab.demo", "--experiments", "2", "--steps", "4")
    r = run_script(*args, home=synthetic_home, cwd=path)
    assert r.returncode == 0, r.stdout + r.stderr
    page = path / "runs" / "demo-night" / "runs" / "demo" / "report.html"
    assert page.as_uri() in r.stdout and "final.py --tag demo" in r.stdout
    assert "agent_loop.py --tag night1" in r.stdout and "train.py --config" in r.stdout
    text = page.read_text()
    assert "The loop stopped" in text and "2 experiments in tag demo" in text
    assert "<h2>Findings</h2>" in text and "http-equiv" not in text
    assert state(repo) == before  # nothing of the night in the user's repository
    again = run_script(*args, home=synthetic_home, cwd=path)  # a second demo starts afresh
    assert again.returncode == 0, again.stdout + again.stderr
    assert state(repo) == before


def test_the_way_on_calls_the_checkouts_python_from_where_each_command_runs(tmp_path, monkeypatch):
    venv_python = tmp_path / ".venv" / "bin" / "python"
    monkeypatch.setattr(sys, "executable", str(venv_python))
    monkeypatch.chdir(tmp_path)
    text = next_steps(tmp_path, tmp_path / "runs" / "demo-night" / "runs" / "demo" / "report.html")
    assert "cd runs/demo-night && ../../.venv/bin/python final.py --tag demo" in text
    assert "\n  .venv/bin/python agent_loop.py --tag night1" in text
    scratch = tmp_path / "runs" / "demo-night"
    assert (scratch / "../../.venv/bin/python").resolve() == venv_python.resolve()
