"""final.py: a tag's baseline and best, K seeds each, dev and test scores, a resumable record,
crashes reported, and the export of the winner with its card. Real train.py runs on the tiny
model (20 steps), in a throwaway repository whose tag is built with the loop's own git calls."""

from __future__ import annotations

import json

import git
import pytest
import yaml

import final
from nerlab.errors import UserError
from nerlab.final import FinalEvaluation, FinalOptions, markdown
from nerlab.gitops import RunBranch
from nerlab.results import append_row
from tests.conftest import ROOT
from tests.test_loop import make_repo

BASE = {
    "target": "ncbi_disease",
    "model": "tiny",
    "data": "synthetic",
    "budget": {"steps": 20},
    "max_length": 48,
    "curriculum": [{"corpora": ["ncbi_disease"], "fraction": 1.0}],
    "optim": {"lr": 0.005, "batch_size": 32},
}
CRASHING_TRAIN = f"""
import os, runpy, sys
if os.environ.get("CRASH_SEED") and f"seed={{os.environ['CRASH_SEED']}}" in sys.argv \\
        and "lr: 0.01" in open(sys.argv[sys.argv.index("--config") + 1]).read():
    print("---\\nstatus: crash\\nreason: injected crash")
    sys.exit(1)
sys.argv[0] = {str(ROOT / "train.py")!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def make_tag(repo, tag: str, experiments: list[tuple[str, float | None, str, float]]) -> None:
    """Experiments (description, lr or None for the base config, status, dev F1) as the loop
    records them: commits held by refs, rows in results.tsv, kept ones landed on the branch."""
    git = RunBranch(repo, tag)
    git.checkout()
    path = repo / "configs" / "current.yaml"
    for n, (description, lr, status, f1) in enumerate(experiments, 1):
        raw = BASE if lr is None else {**BASE, "optim": {**BASE["optim"], "lr": lr}}
        text = yaml.safe_dump(raw)
        commit = git.experiment_commit(n, path, text, description, git.tip().hexsha)
        append_row(
            repo / "results.tsv",
            {
                "commit": commit,
                "target": "ncbi_disease",
                "dev_f1": f"{f1:.6f}",
                "status": status,
                "description": description,
            },
        )
        if status == "keep":
            git.land(n, commit, path, text, description)
    git.repo.git.checkout("main")


@pytest.fixture
def repo(tmp_path, synthetic_home, monkeypatch):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    path = make_repo(tmp_path / "proj", fake_train=False)
    (path / "train.py").write_text(CRASHING_TRAIN)  # committed: the loop's resets keep it
    git.Repo(path).git.commit("-am", "train.py that crashes on demand")
    monkeypatch.chdir(path)
    return path


def test_final_crash_resume_and_export(repo, monkeypatch, capsys):
    make_tag(
        repo,
        "t",
        [
            ("baseline", None, "keep", 0.5),
            ("lr 0.01", 0.01, "keep", 0.6),
            ("lr 0.02", 0.02, "discard", 0.4),
        ],
    )
    monkeypatch.setenv("CRASH_SEED", "1")
    assert final.main(["--tag", "t", "--seeds", "2"]) == 0
    report = json.loads((repo / "runs" / "t" / "final.json").read_text())
    base, best = report["baseline"], report["best"]
    assert (base["n"], best["n"], best["description"]) == (1, 2, "lr 0.01")
    assert (base["finished"], best["finished"], best["crashed"]) == (2, 1, 1)
    assert best["seeds"][1] == {**best["seeds"][1], "status": "crash", "reason": "injected crash"}
    assert report["difference"]["half_width"] is None  # one seed on a side: no CI
    for arm in (base, best):
        assert arm["dev_checks_failed"] == []  # the saved model rescored = the run's own dev F1
        assert 0 < arm["test"]["f1"] <= 1 and set(arm["test"]["per_type"]) == {"Disease"}
    text = capsys.readouterr().out
    assert "test split is used here and nowhere else" in text and "injected crash" in text
    done = repo / "runs" / "t" / "final" / base["commit"] / "seed0" / "scores.json"
    stamp = done.stat().st_mtime_ns

    monkeypatch.delenv("CRASH_SEED")
    out = repo / "hf"
    assert final.main(["--tag", "t", "--seeds", "2", "--export", str(out)]) == 0
    assert "final: 1 runs to train" in capsys.readouterr().out  # only the crashed seed
    assert done.stat().st_mtime_ns == stamp
    report = json.loads((repo / "runs" / "t" / "final.json").read_text())
    assert report["best"]["finished"] == 2 and report["difference"]["half_width"] is not None
    assert "Test F1, best − baseline: " in (repo / "runs" / "t" / "final.md").read_text()
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["model-index"][0]["results"][0]["metrics"][0]["value"] == round(
        report["best"]["test"]["f1"], 4
    )
    assert {"license", "language", "tags", "pipeline_tag"} <= set(front)
    assert f"git checkout {report['best']['commit']}" in card and "## Limitations" in card
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["ModernBertForTokenClassification"]

    with pytest.raises(UserError, match="already exists"):  # before any training
        final.main(["--tag", "t", "--seeds", "3", "--export", str(out)])


def test_best_is_the_baseline(repo):
    make_tag(repo, "b", [("baseline", None, "keep", 0.5), ("lr 0.02", 0.02, "discard", 0.4)])
    evaluation = FinalEvaluation(FinalOptions("b", repo, seeds=2))
    assert [a.role for a in evaluation.arms] == ["baseline"]  # one config to train, not two
    report = evaluation.report()
    assert report["best_is_baseline"] and "best" not in report and report["difference"] is None
    assert "The best is the baseline: no experiment beat it" in markdown(report)


def test_tags_without_a_result_are_clear_errors(repo):
    with pytest.raises(UserError, match="tag 'none' has no experiments"):
        final.main(["--tag", "none"])
    make_tag(repo, "c", [("baseline", None, "crash", 0.0)])
    with pytest.raises(UserError, match="tag 'c' has no kept experiment yet"):
        final.main(["--tag", "c"])
