import math

import pytest
from scipy import stats as sps

from nerlab.stats import decide, diff_ci, mean_ci


def test_mean_ci_matches_scipy():
    xs = [0.81, 0.84, 0.83, 0.86]
    iv = mean_ci(xs)
    low, high = sps.t.interval(0.95, len(xs) - 1, loc=sum(xs) / 4, scale=sps.sem(xs))
    assert (iv.low, iv.high) == pytest.approx((low, high))
    assert math.isnan(mean_ci([0.5]).half_width) and not mean_ci([0.5]).excludes_zero


def test_diff_ci_is_welch():
    a, b = [0.9, 0.92, 0.91], [0.8, 0.85, 0.83]
    iv = diff_ci(a, b)
    t = sps.ttest_ind(a, b, equal_var=False)
    low, high = t.confidence_interval(0.95)
    assert (iv.low, iv.high) == pytest.approx((low, high))
    assert iv.excludes_zero is True


@pytest.mark.parametrize(
    "candidate, best, action",
    [
        ([0.80], None, "keep"),  # first result
        ([0.79], 0.80, "discard"),
        ([0.80], 0.80, "discard"),  # a tie is not a win
        ([0.82], 0.80, "keep"),  # +0.02 > margin
        ([0.805], 0.80, "confirm"),  # +0.005: one seed is not enough
        ([0.805, 0.806], 0.80, "confirm"),  # two seeds still short of min_seeds=3
        ([0.805, 0.806, 0.801], 0.80, "keep"),  # mean of 3 seeds beats the best
        ([0.805, 0.79, 0.79], 0.80, "discard"),  # the lucky first seed does not survive
    ],
)
def test_decision_rule(candidate, best, action):
    assert decide(candidate, best, margin=0.01, min_seeds=3).action == action


def test_min_seeds_one_means_no_confirmation():
    assert decide([0.805], 0.80, margin=0.01, min_seeds=1).action == "keep"
