"""Chaos: agent_loop.py (optuna, the fake trainer) stopped at 30 seeded random moments by a
seeded signal (SIGKILL, SIGTERM, SIGHUP or SIGINT), the last few with two workers on Ray,
some proposals' descriptions hostile (`$`, `<script>`, `|`, a control character), restarted
each time, then allowed to finish; afterwards every invariant of the loop holds, every kill
region was hit, and the report and final.py (real tiny training) work on the result."""

import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import git
import pytest
import yaml

from nerlab.gitops import parse_experiment
from nerlab.results import read_results
from tests.helpers import HANG_GUARD_S, ROOT, make_repo, trainers_of

KILLS = 30
RAY_KILLS = 4  # the last ones, with --workers 2 (a Ray instance starts each time: slow)
TOTAL = 100  # experiments in the tag at the end: more than the kills leave done on a fast machine
SIGNALS = [signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT]
HOSTILE = "lr $x^ 50% <script>alert(1)</script> | \x07 "  # prefixed to every 7th description
# agent_loop.py as it is, its optuna proposer's descriptions made hostile (no hook in the code)
DRIVER = f"""
import dataclasses, runpy, sys
from nerlab.agents import optuna_search
_propose = optuna_search.OptunaProposer.propose
def propose(self, ctx, error=None):
    proposal = _propose(self, ctx, error)
    if ctx.experiment % 7 == 0:
        proposal = dataclasses.replace(proposal, description={HOSTILE!r} + proposal.description)
    return proposal
optuna_search.OptunaProposer.propose = propose
sys.argv[0] = {str(ROOT / "agent_loop.py")!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""
REGIONS = {
    "startup and recovery",
    "experiment run (commit made, training)",
    "after a decision (recording, landing, proposing)",
}


def _read(proc: subprocess.Popen, lines: list[str], working: threading.Event,
          decided: threading.Event) -> None:  # fmt: skip
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("["):
            working.set()
        if "] keep:" in line or "] discard:" in line:
            decided.set()


def region(output: str) -> str:
    """Where the loop was when killed, from the last line it printed (unbuffered)."""
    noise = ("WARNING", " INFO ", "ray:", "interrupted (")  # Ray's, and the signal's own line
    lines = [x for x in output.splitlines() if x.strip() and not any(n in x for n in noise)]
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
    (tmp_path / "driver.py").write_text(DRIVER)
    cmd = [sys.executable, str(tmp_path / "driver.py"), "--tag", "t", "--agent", "optuna",
           "--max-experiments", str(TOTAL)]  # fmt: skip
    rng = random.Random(1234)
    hits, sent = collections.Counter(), collections.Counter()
    for i in range(KILLS):
        workers = ["--workers", "2"] if i >= KILLS - RAY_KILLS else []
        proc = subprocess.Popen(
            cmd + workers, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        lines: list[str] = []
        working = threading.Event()  # set once the loop runs experiments (start-up is slow)
        decided = threading.Event()  # and once it has made a decision
        reader = threading.Thread(target=_read, args=(proc, lines, working, decided), daemon=True)
        reader.start()
        if i % 5 == 0:  # 1 kill in 5 during start-up and recovery
            time.sleep(rng.uniform(0.5, 4.0))
        else:  # 1 in 5 right after a decision (recording, landing, proposing), 3 while training
            event = decided if i % 5 == 1 else working
            deadline = time.time() + HANG_GUARD_S
            while not event.wait(0.2) and proc.poll() is None and time.time() < deadline:
                pass
            time.sleep(rng.uniform(0.0, 0.1) if i % 5 == 1 else rng.uniform(0.0, 2.5))
        assert proc.poll() is None, "".join(lines)  # the loop must still be running: a kill
        # (not SIGINT at start-up: during the imports, before any handler, Python prints a
        # KeyboardInterrupt traceback; nothing has started then)
        signum = rng.choice(SIGNALS if i % 5 else SIGNALS[:-1])
        if signum in (signal.SIGINT, signal.SIGHUP):  # a terminal's: the whole process group
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        code = proc.wait(timeout=HANG_GUARD_S)
        reader.join(timeout=10)
        out = "".join(lines)
        hits[region(out)] += 1
        sent[signal.Signals(signum).name] += 1
        assert "Traceback" not in out, out
        if signum != signal.SIGKILL:  # handled, or (during the imports) not yet: killed by it
            assert code in (128 + signum, -signum), out
        deadline = time.time() + 300  # the kernel reaps a killed process group; Ray its tasks
        while trainers_of(repo) and time.time() < deadline:
            time.sleep(0.2)
        assert not trainers_of(repo)  # the training child died with its loop
    final = subprocess.run(
        cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert final.returncode == 0, final.stdout + final.stderr
    print(f"\n{KILLS} kills, by region: {dict(hits)}; by signal: {dict(sent)}")
    assert set(hits) >= REGIONS, hits  # each kill region was hit
    assert set(sent) == {"SIGKILL", "SIGTERM", "SIGHUP", "SIGINT"}, sent

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
    assert rows["description"].str.contains("<script>", regex=False).any()  # hostile ones ran
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

    report = subprocess.run([sys.executable, str(ROOT / "analyze.py"), "report", "--tag", "t"],
                            cwd=repo, env=env, capture_output=True, text=True,
                            timeout=HANG_GUARD_S)  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    assert (repo / "runs" / "t" / "report.html").exists()
    # final.py trains for real (the fake trainer saves no model to score); an mlp head has no
    # standard export and is refused before any training
    best_head = yaml.safe_load((repo / "configs" / "current.yaml").read_text())["head"]["kind"]
    shutil.copy(ROOT / "train.py", repo / "train.py")
    final_py = subprocess.run(
        [sys.executable, str(ROOT / "final.py"), "--tag", "t", "--seeds", "1", "--export",
         str(tmp_path / "export")],
        cwd=repo, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    said = final_py.stdout[-3000:] + final_py.stderr[-3000:]
    if best_head == "mlp":
        assert final_py.returncode == 1 and "Traceback" not in said, said
    else:
        assert final_py.returncode == 0, said
        assert (tmp_path / "export" / "README.md").exists()
