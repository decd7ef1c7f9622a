"""Helpers shared by the tests: a throwaway project repository, a scripted proposer, the loop
run in-process or as the script, and what is left running."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import git
import yaml

from nerlab.agents import Proposal
from nerlab.gitops import parse_experiment
from nerlab.loop import LoopOptions, ResearchLoop
from nerlab.results import append_row

ROOT = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 1800  # catches a hung script, never a slow machine: budgets are in steps


def run_script(*args: str, home: Path | None = None, timeout: float = HANG_GUARD_S,
               cwd: Path = ROOT):  # fmt: skip
    """Run a top-level script as a user would (its path relative to `cwd`; `home` is
    NER_AR_HOME, else the test's own); returns the CompletedProcess."""
    env = {**os.environ, **({"NER_AR_HOME": str(home)} if home else {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def analyze_py(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """analyze.py from `cwd`, asserted to succeed."""
    r = run_script(str(ROOT / "analyze.py"), *args, cwd=cwd)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


BASE = {
    "target": "ncbi_disease", "model": "tiny", "data": "synthetic", "budget": {"steps": 40},
    "max_length": 48, "curriculum": [{"corpora": ["ncbi_disease"], "fraction": 1.0}],
    "optim": {"lr": 0.05, "batch_size": 16},
}  # fmt: skip


# final.py's and the report's tests: real train.py runs on the tiny model, 20 steps
FINAL_BASE = {
    "target": "ncbi_disease",
    "model": "tiny",
    "data": "synthetic",
    "budget": {"steps": 20},
    "max_length": 48,
    "curriculum": [{"corpora": ["ncbi_disease"], "fraction": 1.0}],
    "optim": {"lr": 0.005, "batch_size": 32},
}


def make_repo(path: Path, fake_train: bool) -> Path:
    """A project checkout in a temporary git repository, optionally with the fake trainer."""
    path.mkdir()
    shutil.copy(ROOT / ("tests/fake_train.py" if fake_train else "train.py"), path / "train.py")
    shutil.copytree(ROOT / "configs", path / "configs")
    shutil.copy(ROOT / ".gitignore", path / ".gitignore")
    shutil.copy(ROOT / "program.md", path / "program.md")
    (path / "configs" / "current.yaml").write_text(yaml.safe_dump(BASE))
    init_repo(path)
    return path


def init_repo(path: Path, branch: str = "main") -> git.Repo:
    """`path`'s files as the first commit of a new repository on `branch`."""
    repo = git.Repo.init(path, initial_branch=branch)
    with repo.config_writer() as c:
        c.set_value("user", "name", "test").set_value("user", "email", "test@example.com")
    repo.git.add(A=True)
    repo.index.commit("project")
    return repo


class Scripted:
    """A proposer that returns prepared configs (lr values) in order; `actions[i]` runs first
    in the i-th call (what a user does while the loop runs)."""

    name = "scripted"
    slow = False

    def __init__(self, proposals: list, actions: dict | None = None):
        self.proposals = list(proposals)
        self.actions = actions or {}
        self.observed: list = []
        self.errors: list = []

    def propose(self, ctx, error=None):
        self.errors.append(error)
        if len(self.errors) - 1 in self.actions:
            self.actions[len(self.errors) - 1]()
        item = self.proposals.pop(0)
        if isinstance(item, str):  # raw YAML
            return Proposal(item, "raw yaml")
        raw = {**BASE, "optim": {**BASE["optim"], "lr": item}}
        return Proposal(yaml.safe_dump(raw), f"lr {item}")

    def observe(self, proposal, f1):
        self.observed.append((proposal.description, f1))


def run_loop(repo: Path, proposals: list, actions: dict | None = None, said: list | None = None,
             **opts) -> tuple[ResearchLoop, Scripted]:  # fmt: skip
    proposer = Scripted(proposals, actions)
    say = said.append if said is not None else lambda *a: None
    loop = ResearchLoop(repo, LoopOptions(tag="t", **opts), proposer, say=say)
    loop.run()
    return loop, proposer


def branch_state(repo: Path):
    r = git.Repo(repo)
    infos = [parse_experiment(c.message) for c in r.iter_commits("autoresearch/t")]
    return r, [i.description for i in infos if i]


def agent_loop(repo: Path, *args: str, env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "agent_loop.py"), "--tag", "t", "--agent", "optuna", *args],
        cwd=repo, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, **kw,
    )  # fmt: skip


def wait_for(path: Path, proc: subprocess.Popen, limit: float = HANG_GUARD_S) -> None:
    deadline = time.time() + limit
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert path.exists(), proc.communicate()[0] if proc.poll() is not None else "timed out"


def trainers_of(repo: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if f"{repo}/train.py" in line]


REASONS = ["loss is nan at step 12 (stage 1, ncbi_disease, lr 0.01)", "out of memory: CUDA"]


def write_loop_log(path, n: int = 24, seed: int = 0) -> list[dict]:
    """An agent-loop history: random F1s, kept when they beat the best so far, some crashes
    (described as train.py records them), one hand run, and an earlier run of another target.
    Returns the target's rows as written."""
    rng = random.Random(seed)
    append_row(path, {"commit": "old", "target": "linnaeus", "dev_f1": "0.9", "status": "ok"})
    rows, best = [], -1.0
    for i in range(n):
        f1 = 0.6 + 0.2 * rng.random() + 0.004 * i
        if i % 6 == 4:
            row = {"dev_f1": "0.000000", "status": "crash", "description": f"try {i}",
                   "reason": REASONS[i % 2], "role": "experiment"}  # fmt: skip
        elif i == 0:  # a tag's first run, as the loop and record.py record it
            row = {"dev_f1": f"{f1:.6f}", "status": "keep", "description": "baseline",
                   "reason": f"first result ({f1:.4f})", "role": "baseline"}  # fmt: skip
        elif i == 9:
            row = {"dev_f1": f"{f1:.6f}", "status": "ok", "description": f"hand run {i}"}
        else:
            status = "keep" if f1 > best else "discard"
            row = {"dev_f1": f"{f1:.6f}", "status": status, "description": f"idea {i}",
                   "role": "experiment"}  # fmt: skip
        cells = append_row(path, {"commit": f"c{i}", "target": "ncbi_disease", **row})
        if cells["status"] in ("keep", "ok"):
            best = max(best, float(cells["dev_f1"]))
        rows.append(cells)
    return rows
