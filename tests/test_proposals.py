"""What a proposal must pass: the run's fixed fields, and no config measured twice."""

import pytest
import yaml

from nerlab.agents import Proposal
from nerlab.config import parse_config
from nerlab.errors import UserError
from nerlab.proposals import ProposalCheck

BASE = {
    "target": "ncbi_disease", "model": "tiny", "data": "synthetic", "budget": {"steps": 40},
    "curriculum": [{"corpora": ["ncbi_disease"], "fraction": 1.0}], "optim": {"lr": 0.05},
}  # fmt: skip


@pytest.fixture
def check(synthetic_home, monkeypatch) -> ProposalCheck:
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    check = ProposalCheck(parse_config(BASE))
    check.remember(parse_config(BASE), "experiment 1 (keep)")
    return check


def proposal(**changes) -> Proposal:
    return Proposal(yaml.safe_dump({**BASE, **changes}), "a change")


def test_the_seed_is_fixed(check):
    """Another seed of the best config once scored +0.0237 and was kept: that is luck."""
    with pytest.raises(UserError, match="^seed is fixed for this run at 0; keep it$"):
        check.check(proposal(seed=7))


def test_more_repeats_of_a_measured_config_is_no_new_config(check):
    with pytest.raises(UserError, match="^this exact config is experiment 1 \\(keep\\)"):
        check.check(proposal(repeats=3))
    cfg = check.check(proposal(repeats=3, optim={"lr": 0.04}))  # a new idea, with more seeds
    assert cfg.repeats == 3 and cfg.optim.lr == 0.04
