"""Repeats and noise: mean, spread, confidence intervals, and the keep/revert rule.

Single runs lie: ModernBERT fine-tuning moves ~1 F1 point between seeds. The rule the loop
applies (and program.md asks a coding agent to apply):

1. candidate <= best                      -> discard
2. candidate >  best + margin             -> keep (a win larger than the noise)
3. best < candidate <= best + margin      -> confirm: rerun until the candidate has `min_seeds`
                                             seeds (default 3), then keep only if the mean over
                                             all of its seeds still beats the best
The margin and `min_seeds` are nerlab.policy's (one F1 point, 3 seeds). `best` is the kept
experiment's mean F1.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats as sps

from nerlab.policy import MIN_SEEDS, NOISE_MARGIN

FIRST_RESULT = "first result"  # why a tag's baseline is kept: there is nothing to beat yet


@dataclass(frozen=True)
class Interval:
    mean: float
    half_width: float  # nan with a single value: no spread to estimate
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def excludes_zero(self) -> bool:
        return bool(not math.isnan(self.half_width) and (self.low > 0 or self.high < 0))


def mean_ci(values: list[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t confidence half-width (small samples: t, not normal)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci of no values")
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(mean, math.nan, 1)
    sem = statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, sps.t.ppf((1 + confidence) / 2, n - 1) * sem, n)


def diff_ci(a: list[float], b: list[float], confidence: float = 0.95) -> Interval:
    """Mean of a minus mean of b with a Welch (unequal variance) t interval."""
    mean = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Interval(mean, math.nan, min(len(a), len(b)))
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(mean, 0.0, min(len(a), len(b)))
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return Interval(mean, sps.t.ppf((1 + confidence) / 2, dof) * se, min(len(a), len(b)))


@dataclass(frozen=True)
class Decision:
    action: str  # keep | discard | confirm
    reason: str


def decide(candidate: list[float], best: float | None, margin: float = NOISE_MARGIN,
           min_seeds: int = MIN_SEEDS) -> Decision:  # fmt: skip
    """Apply the rule above to a candidate's F1s (one per seed run so far)."""
    mean = statistics.fmean(candidate)
    if best is None:
        return Decision("keep", f"{FIRST_RESULT} ({mean:.4f})")
    delta = mean - best
    if delta <= 0:
        return Decision("discard", f"{mean:.4f} <= best {best:.4f}")
    if delta > margin:
        return Decision("keep", f"+{delta:.4f} over best {best:.4f}, beyond the noise margin")
    if len(candidate) >= min_seeds:
        return Decision("keep", f"mean of {len(candidate)} seeds {mean:.4f} > best {best:.4f}")
    return Decision("confirm", f"+{delta:.4f} is within the noise margin {margin:g}: rerun seeds")
