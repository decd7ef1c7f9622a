"""What a proposal must pass before it becomes an experiment, and what a proposer is shown.

A proposal is untrusted text (a model's output): it is size-capped, parsed with the config's
safe YAML loader, validated against the schema, held to the run's fixed fields, and refused
when it is an exact duplicate of a config already measured or running. Every refusal is one
line that goes back to the proposer.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable

from nerlab.agents import Context, Proposal, ProposalError, Proposer, ProposerUnavailable
from nerlab.config import ExperimentConfig, parse_config_text
from nerlab.errors import UserError
from nerlab.policy import MAX_PROPOSAL_TRIES
from nerlab.text import visible

MAX_CONFIG_CHARS = 8000  # a config is a few hundred characters; refuse anything absurd
# What an experiment may not change: otherwise F1s stop being comparable (another target,
# data root or budget) or the night goes to downloading another model.
FIXED = ("target", "data", "model", "budget")


def config_key(cfg: ExperimentConfig) -> str:
    """Identity of a config for duplicate checks: every field, comments and order aside."""
    return json.dumps(cfg.model_dump(mode="json"), sort_keys=True)


class ProposalCheck:
    """The run's fixed fields and the configs already measured or in flight."""

    def __init__(self, start: ExperimentConfig):
        self.fixed = {f: getattr(start, f) for f in FIXED}
        self.seen: dict[str, str] = {}  # config key -> "experiment N (what became of it)"

    def remember(self, cfg: ExperimentConfig, what: str) -> None:
        self.seen[config_key(cfg)] = what

    def forget(self, cfg: ExperimentConfig) -> None:
        """An interrupted or crashed run measured nothing: the config may be tried again."""
        self.seen.pop(config_key(cfg), None)

    def check(self, proposal: Proposal) -> ExperimentConfig:
        """The validated config, or a UserError saying in one line what to fix."""
        if len(proposal.config_yaml) > MAX_CONFIG_CHARS:
            raise UserError(f"config_yaml is over {MAX_CONFIG_CHARS} characters")
        cfg = parse_config_text(proposal.config_yaml, source="config_yaml")
        cfg.views()  # its corpora and types exist in the prepared store
        for name, value in self.fixed.items():
            if getattr(cfg, name) != value:
                shown = (
                    value.model_dump(exclude_none=True) if hasattr(value, "model_dump") else value
                )
                raise UserError(f"{name} is fixed for this run at {shown!r}; keep it")
        earlier = self.seen.get(config_key(cfg))
        if earlier:
            raise UserError(
                f"this exact config is {earlier}; propose a different one (a new idea, or "
                "the same idea with another share of the budget, LR or seed)"
            )
        return cfg


class NoValidProposal(Exception):
    """The proposer's tries are spent: the message says why the last one was refused."""


def ask(proposer: Proposer, ctx: Context, check: ProposalCheck,
        say: Callable[[str], None]) -> tuple[Proposal, ExperimentConfig]:  # fmt: skip
    """Ask until a proposal passes the checks, each refusal going back to the proposer (as the
    next call's error, and as an unmeasured observation)."""
    error = None
    for _ in range(MAX_PROPOSAL_TRIES):
        proposal = None
        try:
            proposal = proposer.propose(ctx, error)
            return proposal, check.check(proposal)
        except ProposerUnavailable:
            raise
        except (UserError, ProposalError) as e:
            error = str(e)
        say(f"proposal rejected: {visible(error)}")
        if proposal is not None:
            proposer.observe(proposal, None)
    raise NoValidProposal(f"no valid proposal after {MAX_PROPOSAL_TRIES} tries: {error}")


def config_diff(best_text: str, text: str) -> str:
    """A unified diff of a config against the best one (for the proposer's view)."""
    lines = difflib.unified_diff(
        best_text.splitlines(), text.splitlines(), "best", "this", lineterm="", n=0
    )
    return "\n".join(line for line in lines if not line.startswith(("---", "+++")))
