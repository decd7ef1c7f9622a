"""Proposers: given the state of the research, return the next experiment config.

`claude` asks Claude through the Anthropic API and `openai` any OpenAI-compatible server (both
with tool use and one prompt: prompt.py); `optuna` searches offline (TPE). All return a
`Proposal`; the loop validates it, so a proposer's output only ever becomes a config file that
passed the schema. `factory.make_proposer` builds the one `agent_loop.py --agent` names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from nerlab.errors import UserError

PATIENCE_S = 6 * 3600  # how long an LLM proposer waits out rate limits and outages in all
DEFAULT_REQUEST_TIMEOUT = 600.0  # one reply: a slow local model on a small GPU takes minutes


@dataclass
class Context:
    """What a proposer sees before each experiment."""

    experiment: int  # number of the experiment about to run
    config_yaml: str  # the current best config
    schema: str  # the config's JSON schema
    corpora: str  # corpora, views and which splits are prepared
    results: str  # compact table of every experiment so far
    best_f1: float | None
    best_description: str
    running: str = ""  # experiments in flight now: number, description, diff against the best
    log_tail: Callable[[int, int], str] = field(repr=False, default=lambda n, lines: "")


@dataclass
class Proposal:
    config_yaml: str
    description: str
    ref: object = None  # proposer's own handle (e.g. an Optuna trial)


class Proposer(Protocol):
    name: str
    slow: bool  # a reply may take minutes (a model): the live page shows a result before asking

    def propose(self, ctx: Context, error: str | None = None) -> Proposal:
        """A new proposal; `error` says why the previous one for this experiment was rejected."""

    def observe(self, proposal: Proposal, f1: float | None) -> None:
        """The outcome: mean dev F1, or None for a crash or a rejected proposal."""


class ProposerUnavailable(UserError):
    """The proposer cannot work (bad key, no credit, API down too long): stop the loop, do not
    keep asking and filling results.tsv with failed proposals."""


class ProposalError(Exception):
    """The proposer's reply could not be read as a proposal (sent back to it as an error)."""
