"""Chaos: agent_loop.py (optuna, the fake trainer) SIGKILLed at 30 seeded random moments and
restarted each time, then allowed to finish; afterwards every invariant of the loop holds."""

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time

import git
import pytest

from nerlab.gitops import parse_experiment
from nerlab.results import read_results
from tests.conftest import HANG_GUARD_S, ROOT
from tests.helpers import make_repo, trainers_of

KILLS = 30
TOTAL = 100  # experiments in the tag at the end: more than the kills leave done on a fast machine


def _read(proc: subprocess.Popen, lines: list[str], working: threading.Event) -> None:
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("["):
            working.set()


def region(output: str) -> str:
    """Where the loop was when killed, from the last line it printed (unbuffered)."""
    lines = [line for line in output.splitlines() if line.strip() and "WARNING" not in line]
    last = lines[-1] if lines else ""
    if not last or last.startswith(("agent:", "resuming", "created", "recovering", "best so")):
        return "startup and recovery"
    if "] keep:" in last or "] discard:" in last or "] crash:" in last:
        return "after a decision (recording, landing, proposing)"
    if "within the noise margin" in last:
        return "confirmation run"
    if last.startswith("[") and "baseline" in last:
        return "baseline run"
    if last.startswith("["):
        return "experiment run (commit made, training)"
    return "other"


@pytest.mark.slow
def test_thirty_random_kills_then_every_invariant_holds(tmp_path, synthetic_home):
    repo = make_repo(tmp_path / "proj", fake_train=True)
    start = git.Repo(repo).head.commit.hexsha
    env = {**os.environ, "NER_AR_HOME": str(synthetic_home), "FAKE_TRAIN_SLEEP": "0.3",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    cmd = [sys.executable, str(ROOT / "agent_loop.py"), "--tag", "t", "--agent", "optuna",
           "--max-experiments", str(TOTAL)]  # fmt: skip
    rng = random.Random(1234)
    hits = collections.Counter()
    for i in range(KILLS):
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        lines: list[str] = []
        working = threading.Event()  # set once the loop runs experiments (start-up is slow)
        reader = threading.Thread(target=_read, args=(proc, lines, working), daemon=True)
        reader.start()
        if i % 5:  # 4 kills in 5 while experiments run, 1 in 5 during start-up and recovery
            deadline = time.time() + HANG_GUARD_S
            while not working.wait(0.2) and proc.poll() is None and time.time() < deadline:
                pass
            time.sleep(rng.uniform(0.0, 2.5))
        else:
            time.sleep(rng.uniform(0.5, 4.0))
        assert proc.poll() is None, "".join(lines)  # the loop must still be running: a kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join(timeout=10)
        out = "".join(lines)
        hits[region(out)] += 1
        assert "Traceback" not in out, out
        deadline = time.time() + 60  # the kernel reaps a killed process group
        while trainers_of(repo) and time.time() < deadline:
            time.sleep(0.2)
        assert not trainers_of(repo)  # the training child died with its loop
    final = subprocess.run(
        cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert final.returncode == 0, final.stdout + final.stderr
    print(f"\n{KILLS} kills, by region: {dict(hits)}")

    rows = read_results(repo / "results.tsv")  # parses
    r = git.Repo(repo)
    refs = {
        int(ref.path.rsplit("/", 1)[1]): ref.commit.hexsha[:7]
        for ref in r.refs
        if ref.path.startswith("refs/autoresearch/t/")
    }
    assert set(refs) <= set(range(1, TOTAL + 1))
    assert len(rows) == TOTAL  # every number: an experiment's row or a failed proposal's
    per_commit = rows.groupby("commit").size()
    for commit in refs.values():  # one row per started experiment
        assert per_commit.get(commit, 0) == 1, commit
    keeps = rows[rows["status"] == "keep"]
    branch = [c for c in r.iter_commits("autoresearch/t") if c.hexsha != start]
    infos = [(c, parse_experiment(c.message)) for c in branch]
    ran = [i.ran_as or c.hexsha[:7] for c, i in infos if i]
    assert set(ran) == set(keeps["commit"])  # kept experiments, and only those, on the branch
    assert ran[0] == keeps.loc[keeps["dev_f1"].idxmax(), "commit"]  # HEAD is the best
    assert keeps["dev_f1"].is_monotonic_increasing  # each keep beat the best of its moment
    assert not r.is_dirty()
    assert not trainers_of(repo)
    assert sum(hits.values()) == KILLS
