"""The run policy, in one place: how long a run may take, how many seeds a close win needs,
what counts as noise, when crashes end a night. The loop, record.py, final.py and the sweep
read it from here, so a hand run and a loop run are held to the same rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nerlab.config import Budget

NOISE_MARGIN = 0.01  # F1: a single-run win below this is confirmed with more seeds first
MIN_SEEDS = 3  # seeds behind a win within the noise margin
STARTUP_ALLOWANCE = 300.0  # seconds for imports, data, model download, evaluation
STEPS_TIMEOUT_PER_SEED = 1800.0  # a steps budget has no wall-clock bound of its own
SAME_CRASH_LIMIT = 3  # this many crashes in a row for one cause: no config can avoid it
MAX_PROPOSAL_TRIES = 3  # refusals sent back to the proposer before the number is spent


def run_timeout(budget: Budget, repeats: int = 1) -> float:
    """Seconds before a run of `repeats` seeds counts as hung: twice a seconds budget per seed
    plus start-up, or a fixed allowance per seed for a steps budget."""
    if budget.seconds is None:
        return STEPS_TIMEOUT_PER_SEED * repeats
    return 2 * budget.seconds * repeats + STARTUP_ALLOWANCE
