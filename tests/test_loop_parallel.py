"""The loop with several experiments in flight on Ray (tests/fake_train.py as the trainer):
out-of-order completion, a later win landing on a moved tip, crash, hang, a worker killed from
outside, and a kill -9 of the driver with runs in flight."""

import os
import signal
import tempfile
import time
from pathlib import Path

import git
import pytest
import yaml

from nerlab.agents import Proposal
from nerlab.gitops import parse_experiment
from nerlab.loop import LoopOptions, ResearchLoop
from nerlab.results import read_results
from tests.helpers import (
    BASE,
    HANG_GUARD_S,
    Scripted,
    agent_loop,
    branch_state,
    make_repo,
    trainers_of,
    wait_for,
)
from tests.ray_nodes import descendants, wait_gone

pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")


@pytest.fixture
def repo(tmp_path, synthetic_home, monkeypatch):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    return make_repo(tmp_path / "proj", fake_train=True)


class Watching(Scripted):
    """Scripted proposals (an lr, or a dict of optim fields); records what was in flight."""

    def __init__(self, proposals):
        super().__init__(proposals)
        self.running: list[str] = []

    def propose(self, ctx, error=None):
        self.running.append(ctx.running)
        item = self.proposals[0]
        if isinstance(item, dict):
            self.proposals.pop(0)
            raw = {**BASE, "optim": {**BASE["optim"], **item}}
            return Proposal(yaml.safe_dump(raw), f"lr {item['lr']}")
        return super().propose(ctx, error)


@pytest.mark.slow
def test_three_workers_out_of_order_crash_hang_and_a_killed_worker(repo):
    slow_win = {"lr": 0.095, "weight_decay": 0.08}  # 0.95 after 8 s
    proposals = [slow_win, 0.09, 5.0, 0.0123, 0.0321]  # 0.9 fast; nan; hang; kills its worker
    proposer = Watching(proposals)
    opts = LoopOptions(tag="t", max_experiments=6, workers=3, timeout=60)
    loop = ResearchLoop(repo, opts, proposer, say=print)
    loop.run()
    by_lr = read_results(repo / "results.tsv").set_index("description")
    assert by_lr.loc["lr 0.09", "status"] == "keep"  # proposed later, finished first, won
    assert by_lr.loc["lr 0.095", "status"] == "keep"  # then beat it: landed on the moved tip
    assert by_lr.loc["lr 5.0", "status"] == "crash"
    assert "loss is nan" in by_lr.loc["lr 5.0", "reason"]
    hang = by_lr.loc["lr 0.0123"]
    assert hang["status"] == "crash" and "timeout: killed after 60 s" in hang["reason"]
    killed = by_lr.loc["lr 0.0321"]
    assert killed["status"] == "crash" and "task failed" in killed["reason"]
    assert len(by_lr) == 6
    r, experiments = branch_state(repo)
    assert experiments == ["lr 0.095", "lr 0.09", "baseline"]
    landed = r.head.commit
    assert parse_experiment(landed.message).ran_as == by_lr.loc["lr 0.095", "commit"]
    assert landed.hexsha[:7] != by_lr.loc["lr 0.095", "commit"]  # a new commit on the new tip
    assert not r.is_dirty() and "lr: 0.095" in (repo / "configs/current.yaml").read_text()
    assert loop.ledger.best().f1 == pytest.approx(0.95)
    assert any("[2] lr 0.095" in running for running in proposer.running)  # shown in flight
    assert not trainers_of(repo)


@pytest.mark.slow
def test_kill_9_of_the_driver_with_runs_in_flight_then_restart(repo, synthetic_home):
    env = {"NER_AR_HOME": str(synthetic_home), "FAKE_TRAIN_SLEEP": "120"}
    proc = agent_loop(repo, "--max-experiments", "6", "--workers", "3", env=env)
    wait_for(repo / "runs" / "t" / "4.log", proc)
    time.sleep(3.0)
    started = descendants(proc.pid)  # its Ray instance, the Ray workers, their train.py
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Ray's processes notice their driver died; its two agents take a minute more (Ray
    # reports the death to the dead head node with a 60 s timeout): 300 s is a hang guard
    assert not wait_gone(started, 300)  # nothing of Ray, no train.py survived
    assert not trainers_of(repo)
    env.pop("FAKE_TRAIN_SLEEP")
    out, _ = agent_loop(repo, "--max-experiments", "6", "--workers", "3",
                        env=env).communicate(timeout=HANG_GUARD_S)  # fmt: skip
    left = [p for p in Path(tempfile.gettempdir()).glob("ner-*-p*-*")
            if int(p.name.split("-")[2][1:]) in started]  # fmt: skip
    assert not left  # the killed runs' temporary directories were removed by the next runs
    rows = read_results(repo / "results.tsv")
    assert len(rows) == 6, out
    assert rows["status"].tolist()[:4] == ["keep", "crash", "crash", "crash"], out
    assert rows["reason"].iloc[1:4].tolist() == ["interrupted"] * 3
    r, experiments = branch_state(repo)
    assert not r.is_dirty()
    kept = rows.loc[rows["status"] == "keep", "commit"].tolist()
    assert len(experiments) == len(kept)
    numbers = sorted(int(ref.name.rsplit("/", 1)[1]) for ref in r.refs if "autoresearch/t/" in
                     ref.path and ref.path.startswith("refs/autoresearch"))  # fmt: skip
    assert numbers == [1, 2, 3, 4, 5, 6]
    head = git.Repo(repo).head.commit
    assert head.hexsha[:7] in kept or parse_experiment(head.message).ran_as in kept


def test_ray_tasks_get_the_users_settings_but_never_the_api_key(monkeypatch):
    from nerlab.pool import task_env

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("HF_HOME", "/data/hf")
    monkeypatch.setenv("MY_SETTING", "1")
    local, cluster = task_env(local=True), task_env(local=False)
    assert "ANTHROPIC_API_KEY" not in local and "ANTHROPIC_API_KEY" not in cluster
    assert local["HF_HOME"] == cluster["HF_HOME"] == "/data/hf"
    assert local["MY_SETTING"] == "1" and "MY_SETTING" not in cluster


def test_ray_tasks_never_get_any_secret(monkeypatch):
    from nerlab.pool import task_env

    secrets = ("OPENAI_API_KEY", "HF_TOKEN", "GITHUB_TOKEN", "MY_SERVICE_SECRET", "openai_api_key")
    for name in secrets:
        monkeypatch.setenv(name, "s3cr3t-value")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    for env in (task_env(local=True), task_env(local=False)):
        assert not set(secrets) & set(env)
    assert task_env(local=True)["OPENAI_BASE_URL"] == "http://localhost:11434/v1"
