"""final.py: a tag's baseline and best, K seeds each, dev and test scores, a resumable record,
crashes reported, and the export of the winner with its card. Real train.py runs on the tiny
model (20 steps), in a throwaway repository whose tag is built with the loop's own git calls."""

from __future__ import annotations

import json
import statistics

import git
import pytest
import yaml

from nerlab.config import config_hash
from nerlab.final import FinalEvaluation, FinalOptions, SeedResult, markdown
from nerlab.gitops import RunBranch
from nerlab.results import append_row
from nerlab.stats import diff_ci
from tests.helpers import FINAL_BASE as BASE
from tests.helpers import ROOT, make_repo, run_script

CRASHING_TRAIN = f"""
import os, runpy, sys
if os.environ.get("CRASH_SEED") and f"seed={{os.environ['CRASH_SEED']}}" in sys.argv:
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
        role = "baseline" if n == 1 else "experiment"
        commit = git.experiment_commit(n, path, text, description, git.tip().hexsha, role)
        append_row(
            repo / "results.tsv",
            {
                "commit": commit,
                "target": "ncbi_disease",
                "dev_f1": f"{f1:.6f}",
                "status": status,
                "description": description,
                "tag": tag,
                "n": n,
                "role": role,
            },
        )
        if status == "keep":
            git.land(n, commit, path, text, description, role)
    git.repo.git.checkout("main")


HYBRID_TRAIN = f"""
import runpy, sys
real = "--save-model" in sys.argv  # final.py's runs train the tiny model; the loop's are faked
sys.argv[0] = {str(ROOT / "train.py")!r} if real else {str(ROOT / "tests" / "fake_train.py")!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def final_py(*args: str, cwd):
    """final.py as a user runs it, from `cwd` (NER_AR_HOME and CRASH_SEED from the test's
    environment)."""
    return run_script(str(ROOT / "final.py"), *args, cwd=cwd)


@pytest.fixture
def repo(tmp_path, synthetic_home, monkeypatch):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    path = make_repo(tmp_path / "proj", fake_train=False)
    (path / "train.py").write_text(CRASHING_TRAIN)  # committed: the loop's resets keep it
    git.Repo(path).git.commit("-am", "train.py that crashes on demand")
    monkeypatch.chdir(path)
    return path


def test_final_crash_resume_and_export(repo, monkeypatch):
    make_tag(repo, "t", [("baseline", None, "keep", 0.5), ("lr 0.02", 0.02, "discard", 0.4)])
    monkeypatch.setenv("CRASH_SEED", "1")
    r = final_py("--tag", "t", "--seeds", "2", cwd=repo)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]  # written, but incomplete
    report = json.loads((repo / "runs" / "t" / "final.json").read_text())
    base = report["baseline"]
    assert report["best_is_baseline"] and "best" not in report and report["difference"] is None
    assert (base["n"], base["finished"], base["crashed"]) == (1, 1, 1)
    assert base["seeds"][1] == {**base["seeds"][1], "status": "crash", "reason": "injected crash"}
    assert base["dev_checks_failed"] == []  # the saved model rescored = the run's own dev F1
    assert 0 < base["test"]["f1"] <= 1 and set(base["test"]["per_type"]) == {"Disease"}
    text = r.stdout
    assert "test split is used here and nowhere else" in text and "injected crash" in text
    assert r.stderr.startswith("error: incomplete: baseline seed 1 did not finish")
    assert "The best is the baseline: no experiment beat it" in text
    done = repo / "runs" / "t" / "final" / base["commit"] / "seed0" / "scores.json"
    stamp = done.stat().st_mtime_ns

    monkeypatch.delenv("CRASH_SEED")
    out = repo / "hf"
    r = final_py("--tag", "t", "--seeds", "2", "--export", str(out), cwd=repo)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "final: 1 runs to train" in r.stdout  # only the crashed seed
    assert done.stat().st_mtime_ns == stamp
    base = json.loads((repo / "runs" / "t" / "final.json").read_text())["baseline"]
    assert base["finished"] == 2
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert "model-index" not in front  # synthetic data claims no benchmark (tests/test_card.py)
    assert "Software: torch " in card  # the exported seed's versions, from its summary block
    assert {"license", "language", "tags", "pipeline_tag"} <= set(front)
    assert f"git checkout {base['commit']}" in card and "## Limitations" in card
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["ModernBertForTokenClassification"]
    assert (repo / "runs" / "t" / "report.html").exists()

    r = final_py("--tag", "t", "--seeds", "3", "--export", str(out), cwd=repo)
    assert r.returncode == 1 and "already exists" in r.stderr  # before any training
    assert "training" not in r.stdout and len(r.stderr.splitlines()) == 1


def test_final_from_a_subdirectory_uses_the_repository_and_a_torn_score_is_redone(repo):
    """Run from docs/: train.py and runs/ are the repository's, --export is where the user
    stands; a scores.json torn by a kill (older versions wrote it in place) is trained again."""
    make_tag(repo, "t", [("baseline", None, "keep", 0.5)])
    (repo / "docs").mkdir()
    r = final_py("--tag", "t", "--seeds", "1", "--export", "model", cwd=repo / "docs")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert not (repo / "docs" / "runs").exists() and (repo / "runs" / "t" / "final.json").exists()
    assert (repo / "docs" / "model" / "config.json").exists()
    commit = json.loads((repo / "runs" / "t" / "final.json").read_text())["baseline"]["commit"]
    scores = repo / "runs" / "t" / "final" / commit / "seed0" / "scores.json"
    scores.write_text(scores.read_text()[:40])  # torn
    r = final_py("--tag", "t", "--seeds", "1", cwd=repo / "docs")
    out = r.stdout
    assert r.returncode == 0, out[-2000:] + r.stderr[-2000:]
    assert "is damaged: that seed is trained again" in out and "final: 1 runs to train" in out
    assert json.loads(scores.read_text())["status"] == "ok"


def seed(s: int, dev: float, test: float) -> SeedResult:
    scores = {"precision": test, "recall": test, "per_type": {"Disease": test}}
    return SeedResult(s, "ok", "", {**scores, "f1": dev}, {**scores, "f1": test}, "ok")


def test_baseline_against_best_with_a_confidence_interval(repo):
    make_tag(repo, "t", [("baseline", None, "keep", 0.5), ("lr 0.01", 0.01, "keep", 0.6),
                         ("lr 0.02", 0.02, "discard", 0.4)])  # fmt: skip
    evaluation = FinalEvaluation(FinalOptions("t", repo, seeds=3))
    base, best = evaluation.arms
    assert (base.n, best.n, best.description, best.loop_dev_f1) == (1, 2, "lr 0.01", 0.6)
    evaluation.results[base.commit] = {s: seed(s, 0.5, f) for s, f in enumerate([0.5, 0.52, 0.51])}
    evaluation.results[best.commit] = {0: seed(0, 0.61, 0.60), 1: seed(1, 0.63, 0.58),
                                       2: SeedResult(2, "crash", "loss is nan")}  # fmt: skip
    report = evaluation.report()
    expected = diff_ci([0.60, 0.58], [0.5, 0.52, 0.51])
    assert report["difference"]["mean"] == pytest.approx(expected.mean)
    assert report["difference"]["half_width"] == pytest.approx(expected.half_width)
    assert report["best"]["test"]["f1_std"] == pytest.approx(statistics.stdev([0.60, 0.58]))
    assert (report["best"]["finished"], report["best"]["crashed"]) == (2, 1)
    text = markdown(report)
    assert "| best | 2 | " in text and "| 2/3 | 62.00 ± 1.41 | 59.00 ± 1.41 |" in text
    assert "Test F1, best − baseline: +8.00 [95% CI" in text and "loss is nan" in text
    assert evaluation.best_seed_dir().name == "seed1"  # chosen by dev F1, never by test


def test_best_is_the_baseline(repo):
    make_tag(repo, "b", [("baseline", None, "keep", 0.5), ("lr 0.02", 0.02, "discard", 0.4)])
    evaluation = FinalEvaluation(FinalOptions("b", repo, seeds=2))
    assert [a.role for a in evaluation.arms] == ["baseline"]  # one config to train, not two
    report = evaluation.report()
    assert report["best_is_baseline"] and "best" not in report and report["difference"] is None
    assert "The best is the baseline: no experiment beat it" in markdown(report)


def test_tags_without_a_result_are_clear_errors(repo):
    r = final_py("--tag", "none", cwd=repo)
    assert r.returncode == 1 and r.stderr.startswith("error: tag 'none' has no experiments")
    make_tag(repo, "c", [("baseline", None, "crash", 0.0)])
    r = final_py("--tag", "c", cwd=repo)
    assert r.returncode == 1 and r.stderr.startswith("error: tag 'c' has no kept experiment yet")
    assert len(r.stderr.splitlines()) == 1


def test_the_readme_loop_then_final_as_written_trains_the_tags_config(
    tmp_path, synthetic_home, monkeypatch
):
    """README: `agent_loop.py --tag demo --agent optuna --config configs/smoke.yaml ...`, then
    `final.py --tag demo` without --config: final trains the smoke config, never current.yaml."""
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    repo = make_repo(tmp_path / "demo", fake_train=True)
    (repo / "train.py").write_text(HYBRID_TRAIN)
    smoke = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    (repo / "configs" / "smoke.yaml").write_text(yaml.safe_dump({**smoke, "budget": {"steps": 20}}))
    git.Repo(repo).git.commit("-am", "a short smoke budget and a trainer for the test")
    loop = run_script(
        str(ROOT / "agent_loop.py"), "--tag", "demo", "--agent", "optuna",
        "--config", "configs/smoke.yaml", "--max-experiments", "3", home=synthetic_home, cwd=repo,
    )  # fmt: skip
    assert loop.returncode == 0, loop.stdout[-2000:] + loop.stderr[-2000:]
    r = final_py("--tag", "demo", "--seeds", "1", cwd=repo)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads((repo / "runs" / "demo" / "final.json").read_text())
    assert report["config_path"] == "configs/smoke.yaml"  # the model card's Reproduce names it
    arms = [report[k] for k in ("baseline", "best") if k in report]
    shown = git.Repo(repo).git.show
    for arm in arms:
        assert arm["finished"] == 1, arm  # trained and scored: the tiny smoke config ran
        log = (repo / "runs" / "demo" / "final" / arm["commit"] / "seed0.log").read_text()
        smoke_text = shown(f"{arm['commit']}:configs/smoke.yaml")
        assert f"# config sha256: {config_hash(smoke_text)}" in log
