"""The budget: how much of it each stage gets, when a stage is over, and the LR schedule.

Only training steps count. In `seconds` mode the clock runs during steps and the first
`UNTIMED_STEPS` steps of the run are not counted (allocation, compilation, cache warm-up, as in
autoresearch); in `steps` mode the same logic counts steps, so runs are reproducible.

A step far longer than the recent ones is a pause (Ctrl-Z, a frozen container, a stalled VM):
only its typical time counts, the rest is `paused_seconds`, so a run suspended for a minute
still trains for its whole budget instead of being scored after a few steps.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque

from nerlab.config import Budget, ExperimentConfig
from nerlab.errors import UserError

UNTIMED_STEPS = 3
RECENT_STEPS = 20  # the steps a step is compared with
PAUSE_FACTOR = 10.0  # a step this many times the recent median, and
PAUSE_MIN_SECONDS = 2.0  # at least this long, is a pause, not training


def allocate(budget: Budget, fractions: list[float]) -> list[float]:
    """Each stage's share: seconds, or whole steps (largest remainder, summing to the total)."""
    if budget.seconds is not None:
        return [f * budget.seconds for f in fractions]
    exact = [f * budget.steps for f in fractions]
    steps = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - steps[i], reverse=True)
    for i in by_remainder[: budget.steps - sum(steps)]:
        steps[i] += 1
    if min(steps) == 0:
        raise UserError(
            f"budget.steps: {budget.steps} steps leave a stage with none; "
            f"raise it or the smallest fraction ({min(fractions):g})"
        )
    return [float(s) for s in steps]


def lr_factor(progress: float, schedule: str, warmup: float) -> float:
    """Multiplier of the peak LR at `progress` in [0, 1] of the schedule's span."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return progress / warmup
    p = (progress - warmup) / (1 - warmup)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * p))
    if schedule == "linear":
        return 1 - p
    return 1.0  # constant_with_warmup


class Progress:
    """Counts a stage's use of its allocation, and of the whole run's, in seconds or steps."""

    def __init__(self, cfg: ExperimentConfig):
        self.by_steps = cfg.budget.steps is not None
        self.allocations = allocate(cfg.budget, [s.fraction for s in cfg.curriculum])
        self.total = sum(self.allocations)
        self.scope = cfg.schedule_scope
        self.steps = 0  # whole run
        self.train_seconds = 0.0  # timed steps only, pauses left out
        self.paused_seconds = 0.0
        self._recent: deque[float] = deque(maxlen=RECENT_STEPS)  # timed steps' durations
        self.stage = 0
        self.stage_used = 0.0
        self.run_used = 0.0
        self._t0 = 0.0

    def start_stage(self, i: int) -> None:
        self.stage, self.stage_used = i, 0.0

    def stage_done(self) -> bool:
        return self.stage_used >= self.allocations[self.stage]

    def fraction(self) -> float:
        """Progress driving the LR schedule: of this stage, or of the run."""
        if self.scope == "run":
            return self.run_used / self.total
        return self.stage_used / self.allocations[self.stage]

    def step_start(self) -> None:
        self._t0 = time.perf_counter()

    def step_end(self, synchronize=lambda: None) -> float:
        """Call after a step; `synchronize` waits for the device so the time is real. Returns
        the seconds of the step that were a pause (0.0 for a normal step)."""
        synchronize()
        dt = time.perf_counter() - self._t0
        self.steps += 1
        timed = self.steps > UNTIMED_STEPS
        paused = 0.0
        if timed:  # the untimed steps (warm-up, compilation) are no reference either
            paused = self._pause(dt)
            dt -= paused
            self._recent.append(dt)
            self.train_seconds += dt
        used = 1.0 if self.by_steps else (dt if timed else 0.0)
        self.stage_used += used
        self.run_used += used
        return paused

    def _pause(self, dt: float) -> float:
        """The part of a step's `dt` beyond the recent median, when the step is a pause."""
        if not self._recent:
            return 0.0
        typical = statistics.median(self._recent)
        if dt < max(PAUSE_MIN_SECONDS, PAUSE_FACTOR * typical):
            return 0.0
        self.paused_seconds += dt - typical
        return dt - typical

    def remaining(self) -> float:
        return max(self.total - self.run_used, 0.0)
