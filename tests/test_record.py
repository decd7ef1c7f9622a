"""record.py: a train.py log -> one results.tsv row, agent_loop.py's decision, the next command.

Logs are written with nerlab.summary.format_summary (what train.py prints) or by
tests/fake_train.py; the repository is a temporary git checkout with the config committed."""

import os
import shutil
import statistics
import subprocess
from pathlib import Path

import git
import pytest
import yaml

from nerlab.config import config_hash, parse_config
from nerlab.errors import UserError
from nerlab.record import record, run_timeout
from nerlab.results import COLUMNS, read_results
from nerlab.summary import format_summary
from tests.helpers import ROOT, init_repo, run_script

CONFIG = {
    "target": "ncbi_disease", "model": "tiny", "data": "synthetic", "budget": {"seconds": 60},
    "seed": 0, "repeats": 1, "max_length": 48,
    "curriculum": [{"corpora": ["ncbi_disease"], "fraction": 1.0}],
    "optim": {"lr": 0.05, "batch_size": 16},
}  # fmt: skip


@pytest.fixture
def repo(tmp_path) -> Path:
    """A checkout on its run branch with the baseline commit at HEAD."""
    root = tmp_path / "proj"
    (root / "configs").mkdir(parents=True)
    shutil.copy(ROOT / ".gitignore", root / ".gitignore")
    (root / "configs" / "current.yaml").write_text(yaml.safe_dump(CONFIG))
    init_repo(root, "autoresearch/t").git.commit("--allow-empty", "-m", "baseline")
    return root


def write_log(root: Path, f1s: list[float], name: str = "run.log", **extra) -> Path:
    summary = {
        "dev_f1": statistics.fmean(f1s) if f1s else 0.0,
        "f1_seeds": ",".join(f"{f:.6f}" for f in f1s),
        "repeats": len(f1s),
        "train_seconds": 61.234,
        "peak_memory_gb": 1.23456,
        "status": "ok",
        **extra,
    }
    path = root / name
    path.write_text("target ncbi_disease (dev) | model tiny\n" + format_summary(summary) + "\n")
    return Path(name)


def commit(root: Path, subject: str, **config) -> str:
    (root / "configs" / "current.yaml").write_text(yaml.safe_dump({**CONFIG, **config}))
    r = git.Repo(root)
    r.git.commit("--allow-empty", "-am", subject)
    return r.head.commit.hexsha[:7]


def rows(root: Path):
    return read_results(root / "results.tsv")


def baseline(root: Path, f1: float = 0.80) -> str:
    write_log(root, [f1])
    return record(root, Path("run.log")).commit


def test_baseline_is_kept_with_every_column(repo):
    r = record(repo, write_log(repo, [0.80]))
    assert (r.action, r.best) == ("keep", None)
    assert r.next == ["edit configs/current.yaml with the next idea, then: "
                      "git commit -am '<one-line description>'"]  # fmt: skip
    lines = (repo / "results.tsv").read_text().splitlines()
    assert lines[0].split("\t") == COLUMNS
    row = dict(zip(COLUMNS, lines[1].split("\t")))
    assert row["timestamp"][:2] == "20" and "T" in row["timestamp"]
    assert row["commit"] == git.Repo(repo).head.commit.hexsha[:7]
    assert (row["target"], row["dev_f1"], row["dev_f1_std"], row["repeats"]) == (
        "ncbi_disease", "0.800000", "0.000000", "1")  # fmt: skip
    assert (row["memory_gb"], row["train_s"], row["status"]) == ("1.23", "61.2", "keep")
    assert (row["role"], row["description"], row["tag"]) == ("baseline", "baseline", "t")
    assert row["reason"].startswith("first result") and row["config"] == "configs/current.yaml"


def test_clear_win_is_kept_and_becomes_the_best(repo):
    base = baseline(repo)
    c = commit(repo, "lr up", optim={"lr": 0.1, "batch_size": 16})
    r = record(repo, write_log(repo, [0.85]))
    assert (r.action, r.best.commit, r.best.f1) == ("keep", base, 0.80)
    assert r.next[0].startswith("edit configs/current.yaml")
    commit(repo, "lr up more", optim={"lr": 0.2, "batch_size": 16})
    assert record(repo, write_log(repo, [0.86])).best.commit == c  # the kept one is the best now
    row = rows(repo).iloc[1]
    assert (row["description"], row["role"]) == ("lr up", "experiment")
    assert row["reason"] == "+0.0500 over best 0.8000, beyond the noise margin"


def test_clear_loss_is_discarded_with_the_reset_to_the_best(repo):
    base = baseline(repo)
    c = commit(repo, "lr down", optim={"lr": 0.01, "batch_size": 16})
    r = record(repo, write_log(repo, [0.70]))
    assert (r.action, r.next) == ("discard", [f"git reset --hard {base}"])
    assert rows(repo)[["commit", "status"]].values.tolist()[-1] == [c, "discard"]
    git.Repo(repo).git.reset("--hard", base)
    commit(repo, "another idea", head={"kind": "crf"})
    assert record(repo, write_log(repo, [0.75])).best.commit == base


def test_small_win_prints_the_confirmation_then_one_row_of_all_seeds(repo):
    base = baseline(repo)
    c = commit(repo, "mlp head", head={"kind": "mlp"})
    r = record(repo, write_log(repo, [0.805]))
    assert (r.action, r.row) == ("confirm", None)
    assert len(rows(repo)) == 1  # nothing recorded until the confirmation
    assert r.next[0].endswith("train.py --set seed=1 --set repeats=2 > run.confirm.log 2>&1")
    assert r.next[0].startswith(f"timeout {2 * 60 * 2 + 300} ")
    assert r.next[1].endswith("record.py run.confirm.log --confirms run.log")
    done = record(repo, write_log(repo, [0.806, 0.807], "run.confirm.log"),
                  confirms=Path("run.log"))  # fmt: skip
    assert (done.action, done.best.commit) == ("keep", base)
    row = rows(repo).iloc[-1]
    seeds = [0.805, 0.806, 0.807]
    assert (row["commit"], row["status"], row["repeats"]) == (c, "keep", 3)
    assert row["dev_f1"] == pytest.approx(statistics.fmean(seeds), abs=1e-6)
    assert row["dev_f1_std"] == pytest.approx(statistics.stdev(seeds), abs=1e-6)  # sample std


def test_confirmation_seeds_follow_the_configs_own(repo):
    baseline(repo)
    commit(repo, "two seeds from 5", seed=5, repeats=2)
    r = record(repo, write_log(repo, [0.805, 0.806]))
    assert "--set seed=7 --set repeats=1 " in r.next[0]


def test_confirmation_that_fails_is_discarded(repo):
    base = baseline(repo)
    commit(repo, "mlp head", head={"kind": "mlp"})
    record(repo, write_log(repo, [0.805]))
    done = record(repo, write_log(repo, [0.79, 0.78], "run.confirm.log"), confirms=Path("run.log"))
    assert (done.action, done.next) == ("discard", [f"git reset --hard {base}"])
    assert rows(repo)["repeats"].tolist() == [1, 3]


def test_confirmation_with_too_few_seeds_is_refused(repo):
    baseline(repo)
    commit(repo, "mlp head", head={"kind": "mlp"})
    record(repo, write_log(repo, [0.805]))
    with pytest.raises(UserError, match="2 seeds, 3 are needed"):
        record(repo, write_log(repo, [0.806], "run.confirm.log"), confirms=Path("run.log"))


def test_crash_log_is_a_crash_row_with_its_reason(repo):
    base = baseline(repo)
    commit(repo, "huge lr", optim={"lr": 5.0, "batch_size": 16})
    r = record(repo, write_log(repo, [], status="crash", reason="loss is nan at step 3"))
    assert (r.action, r.next) == ("crash", [f"git reset --hard {base}"])
    row = rows(repo).iloc[-1]
    assert (row["status"], row["dev_f1"], row["memory_gb"]) == ("crash", 0.0, 1.23)
    assert (row["description"], row["reason"]) == ("huge lr", "loss is nan at step 3")


def test_log_without_a_summary_block_is_a_crash(repo):
    base = baseline(repo)
    commit(repo, "killed")
    (repo / "run.log").write_text("target ncbi_disease\nstage 1 | step 10 | loss 0.5\n")
    r = record(repo, Path("run.log"))
    assert (r.action, r.next) == ("crash", [f"git reset --hard {base}"])
    assert "no summary block (killed or timed out): target ncbi_disease | stage 1" in r.reason
    assert rows(repo)["status"].tolist() == ["keep", "crash"]


def test_a_baseline_crash_says_to_fix_and_rerun(repo):
    r = record(repo, write_log(repo, [], status="crash", reason="data missing"))
    assert r.action == "crash" and "run the baseline again" in r.next[0]


def test_refusals_name_the_fix(repo):
    commit(repo, "idea before any baseline row")
    write_log(repo, [0.8])
    with pytest.raises(UserError, match="baseline .* has no keep row"):
        record(repo, Path("run.log"))
    (repo / "configs" / "current.yaml").write_text(yaml.safe_dump({**CONFIG, "seed": 3}))
    with pytest.raises(UserError, match="uncommitted changes: commit the experiment"):
        record(repo, Path("run.log"))


def test_no_baseline_commit_and_second_record_are_refused(repo):
    r = git.Repo(repo)
    r.git.commit("--amend", "--allow-empty", "-m", "not a baseline")
    with pytest.raises(UserError, match="no `baseline` commit on this branch"):
        record(repo, write_log(repo, [0.8]))
    r.git.commit("--amend", "--allow-empty", "-m", "baseline")
    record(repo, Path("run.log"))
    with pytest.raises(UserError, match="already has a keep row"):
        record(repo, Path("run.log"))


def test_a_log_of_another_commits_config_is_refused(repo):
    baseline(repo)
    other = commit(repo, "lr 0.000637", optim={"lr": 0.000637, "batch_size": 16})
    ran = config_hash((repo / "configs" / "current.yaml").read_text())
    r = git.Repo(repo)
    r.git.reset("--hard", "HEAD~1")
    commit(repo, "lr 0.08", optim={"lr": 0.08, "batch_size": 16})  # HEAD: another config
    write_log(repo, [0.83], config_sha256=ran)  # the copied log of `other`'s run
    with pytest.raises(UserError, match="another config .* not of configs/current.yaml at"):
        record(repo, Path("run.log"))
    assert len(rows(repo)) == 1 and other not in rows(repo)["commit"].tolist()
    here = config_hash((repo / "configs" / "current.yaml").read_text())
    write_log(repo, [0.83], config_sha256=here)  # its own run is recorded
    assert record(repo, Path("run.log")).action == "keep"


def test_a_log_cut_inside_status_is_a_truncated_log_crash(repo):
    baseline(repo)
    commit(repo, "cut short")
    text = format_summary({"dev_f1": 0.8, "f1_seeds": "0.8", "status": "ok"})
    (repo / "run.log").write_text(text[: text.index("status:") + len("status:  o")])
    r = record(repo, Path("run.log"))
    assert r.action == "crash" and r.reason.startswith("truncated log")


def test_a_crash_is_recorded_once(repo):
    baseline(repo)
    commit(repo, "huge lr", optim={"lr": 5.0, "batch_size": 16})
    record(repo, write_log(repo, [], status="crash", reason="loss is nan at step 3"))
    with pytest.raises(UserError, match="already has a crash row"):
        record(repo, Path("run.log"))
    assert rows(repo)["status"].tolist() == ["keep", "crash"]


def test_a_config_other_than_the_commits_is_refused(repo):
    (repo / "configs" / "smoke2.yaml").write_text(yaml.safe_dump({**CONFIG, "seed": 1}))
    git.Repo(repo).git.add(A=True)
    git.Repo(repo).git.commit("-m", "baseline")  # a baseline that changed smoke2.yaml alone
    with pytest.raises(UserError, match="edit configs/smoke2.yaml"):
        record(repo, write_log(repo, [0.8]), config=Path("configs/current.yaml"))
    assert record(repo, Path("run.log")).row["config"] == "configs/smoke2.yaml"


def test_timeout_for_seconds_and_steps_budgets():
    cfg = parse_config(CONFIG)
    assert run_timeout(cfg) == 2 * 60 + 300
    assert run_timeout(cfg, 3) == 2 * 60 * 3 + 300
    steps = parse_config({**CONFIG, "budget": {"steps": 100}, "repeats": 2})
    assert run_timeout(steps) == 2 * 1800


def test_cli_runs_the_printed_confirmation_with_the_fake_trainer(repo, tmp_path):
    """The whole hand loop through the scripts: the printed commands run as printed."""
    shutil.copy(ROOT / "tests" / "fake_train.py", repo / "train.py")
    shutil.copy(ROOT / "record.py", repo / "record.py")  # next to train.py, as in a checkout
    home = tmp_path / "home"

    def sh(command: str) -> str:
        env_path = f"PYTHONPATH={ROOT}"
        done = subprocess.run(f"{env_path} {command}", shell=True, cwd=repo, text=True,
                              capture_output=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    limit = run_script(str(ROOT / "record.py"), "--timeout", home=home, cwd=repo)
    assert limit.stdout.strip() == str(2 * 60 + 300)
    python = run_script("-c", "from nerlab.record import python; print(python())", home=home)
    sh(f"{python.stdout.strip()} train.py > run.log 2>&1")  # fake F1 = 10 * lr + seed / 1000
    assert sh(f"{python.stdout.strip()} record.py run.log").startswith("keep: first result")
    commit(repo, "lr 0.0505", optim={"lr": 0.0505, "batch_size": 16})
    sh(f"{python.stdout.strip()} train.py > run.log 2>&1")
    out = sh(f"{python.stdout.strip()} record.py run.log").splitlines()
    assert out[0].startswith("confirm: +0.0050")
    for line in [x.removeprefix("next: ") for x in out if x.startswith("next: ")]:
        last = sh(line)
    assert last.startswith("keep: mean of 3 seeds 0.5060 > best 0.5000")
    assert rows(repo)["dev_f1"].tolist() == [0.5, pytest.approx(0.506)]  # seeds 0, 1, 2


def test_a_log_older_than_the_commit_is_refused(repo):
    write_log(repo, [0.8])
    os.utime(repo / "run.log", (1_000_000, 1_000_000))  # written long before the commit
    with pytest.raises(UserError, match="run.log is older than commit .*: it is an earlier"):
        record(repo, Path("run.log"))
    assert not (repo / "results.tsv").exists()
