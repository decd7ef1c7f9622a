import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from nerlab.budget import UNTIMED_STEPS, Progress, allocate, lr_factor
from nerlab.config import Budget, parse_config
from nerlab.errors import UserError
from nerlab.summary import parse_summary
from tests.helpers import HANG_GUARD_S, ROOT


def test_allocate_steps_largest_remainder_sums_to_total():
    assert allocate(Budget(steps=10), [0.25, 0.15, 0.6]) == [3, 1, 6]
    assert sum(allocate(Budget(steps=997), [1 / 3, 1 / 3, 1 / 3])) == 997
    assert allocate(Budget(seconds=300), [0.25, 0.75]) == [75, 225]
    with pytest.raises(UserError, match="leave a stage with none"):
        allocate(Budget(steps=3), [0.05, 0.95])


def test_lr_schedules():
    assert lr_factor(0.0, "cosine", 0.1) == 0
    assert lr_factor(0.05, "linear", 0.1) == pytest.approx(0.5)
    assert lr_factor(0.1, "cosine", 0.1) == pytest.approx(1)
    assert lr_factor(0.55, "cosine", 0.1) == pytest.approx(0.5)
    assert lr_factor(1.0, "cosine", 0.1) == pytest.approx(0)
    assert lr_factor(1.0, "linear", 0.0) == pytest.approx(0)
    assert lr_factor(0.9, "constant_with_warmup", 0.1) == 1
    assert lr_factor(0.3, "linear", 0.0) == pytest.approx(0.7)


def _cfg(budget, scope="stage"):
    stages = [{"corpora": ["ncbi_disease"], "fraction": f} for f in (0.2, 0.8)]
    return parse_config(
        {"target": "ncbi_disease", "model": "tiny", "budget": budget, "curriculum": stages,
         "schedule_scope": scope}
    )  # fmt: skip


def run_stages(progress: Progress) -> list[int]:
    counts = []
    for i in range(len(progress.allocations)):
        progress.start_stage(i)
        n = 0
        while not progress.stage_done():
            progress.step_start()
            progress.step_end()
            n += 1
        counts.append(n)
    return counts


def test_steps_mode_counts_steps_per_stage():
    p = Progress(_cfg({"steps": 50}))
    assert run_stages(p) == [10, 40] and p.steps == 50


def test_seconds_mode_excludes_the_first_steps(monkeypatch):
    clock = iter(range(10_000))
    monkeypatch.setattr("nerlab.budget.time.perf_counter", lambda: next(clock))
    p = Progress(_cfg({"seconds": 10}))
    counts = run_stages(p)  # every step takes 1 fake second
    assert counts == [2 + UNTIMED_STEPS, 8] and math.isclose(p.train_seconds, 10)


def test_schedule_scope():
    p = Progress(_cfg({"steps": 50}, scope="run"))
    p.start_stage(1)
    p.run_used, p.stage_used = 30, 20
    assert p.fraction() == pytest.approx(0.6)
    p.scope = "stage"
    assert p.fraction() == pytest.approx(0.5)


def test_a_pause_is_left_out_of_the_budget(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("nerlab.budget.time.perf_counter", lambda: now[0])
    p = Progress(_cfg({"seconds": 10}))
    counts, paused = [], []
    for stage in range(2):
        p.start_stage(stage)
        counts.append(0)
        while not p.stage_done():
            p.step_start()
            now[0] += {6: 60.0, 8: 1.9}.get(p.steps, 1.0)  # step 7 suspended for a minute
            paused.append(p.step_end())
            counts[-1] += 1
    assert counts == [2 + UNTIMED_STEPS, 8]  # stage 2 still got its 8 s
    assert paused[6] == 59.0 and sum(paused) == 59.0  # a step of 1.9 s is no pause
    assert p.paused_seconds == 59.0 and math.isclose(p.train_seconds, 10.9)


PAUSE_S = 25.0  # above 10 recent steps even on a loaded machine (PAUSE_FACTOR)


@pytest.mark.slow
def test_train_py_suspended_mid_run_still_trains_its_budget(synthetic_home):
    """SIGSTOP then SIGCONT of a real run (Ctrl-Z, a frozen container): the pause is said,
    reported as paused_seconds, and the budget's seconds go to training, stage 2 included."""
    budget = 12
    proc = subprocess.Popen(
        [sys.executable, "train.py", "--config", "configs/smoke.yaml",
         "--set", f"budget={{seconds: {budget}}}"],
        cwd=ROOT, env={**os.environ, "NER_AR_HOME": str(synthetic_home)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    for line in proc.stdout:  # step 10's status line: steady training, recent steps known
        lines.append(line)
        if re.match(r"stage \d \| step (\d\d+) ", line):
            break
    time.sleep(1.0)  # into a step: a stop between two steps costs the budget nothing
    proc.send_signal(signal.SIGSTOP)
    time.sleep(PAUSE_S)
    proc.send_signal(signal.SIGCONT)
    out = "".join(lines) + proc.communicate(timeout=HANG_GUARD_S)[0]
    assert proc.returncode == 0, out[-3000:]
    s = parse_summary(out)
    assert float(s["paused_seconds"]) >= PAUSE_S - 1.0 and "paused: step" in out, out
    assert float(s["train_seconds"]) < PAUSE_S  # the pause is not training
    after = out[out.index("paused: step") :]
    assert re.search(r"stage 2 \| step \d+ .* [1-9]\d* s left", after)  # trained on after it
