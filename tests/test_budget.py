import math

import pytest

from nerlab.budget import UNTIMED_STEPS, Progress, allocate, lr_factor
from nerlab.config import Budget, parse_config
from nerlab.errors import UserError


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
