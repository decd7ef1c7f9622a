"""The night's next experiment: first the baseline (the config as committed, as an experiment
commit of its own, so this tag's score is never another tag's), then each checked proposal,
committed on the best of the moment (nerlab.gitops). A number whose proposal never passed the
checks is spent as a crash row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from nerlab.agents import Context, Proposal, Proposer
from nerlab.config import ExperimentConfig, dump_config, load_config, parse_config_text
from nerlab.context import corpora_text, proposer_context
from nerlab.experiment import Experiment, RunLogs
from nerlab.gitops import RunBranch
from nerlab.judge import Judge
from nerlab.proposals import NoValidProposal, ProposalCheck, ask
from nerlab.runner import RunOutcome
from nerlab.text import visible


class NextExperiment:
    def __init__(self, git: RunBranch, config_path: Path, proposer: Proposer,
                 check: ProposalCheck, logs: RunLogs, judge: Judge,
                 in_flight: dict[int, Experiment], say: Callable[[str], None]):  # fmt: skip
        self.git, self.config_path, self.proposer, self.check = git, config_path, proposer, check
        self.logs, self.judge, self.in_flight, self.say = logs, judge, in_flight, say

    def number(self) -> int:
        """The next free number: after every log, experiment commit and run in flight."""
        used = [*self.logs.numbers(), *self.git.experiments(), *self.in_flight]
        return max(used, default=0) + 1

    def baseline(self) -> Experiment:
        text = self.config_path.read_text()
        exp = self._commit("baseline", "baseline", text, parse_config_text(text))
        self.say(f"[{exp.n}] baseline: {exp.cfg.target}, config as committed")
        return exp

    def proposed(self) -> Experiment | None:
        n = self.number()
        found = self.proposal(n)
        if found is None:
            return None
        proposal, cfg = found
        # one comment line whatever the description holds (a line break would inject YAML, a
        # control character makes the file unreadable YAML)
        note = visible(proposal.description)
        text = f"# agent_loop.py ({self.proposer.name}) experiment {n}: {note}\n"
        exp = self._commit("experiment", proposal.description, text + dump_config(cfg), cfg,
                           proposal)  # fmt: skip
        self.say(f"[{n}] {exp.commit} {visible(proposal.description)}")
        return exp

    def proposal(self, n: int) -> tuple[Proposal, ExperimentConfig] | None:
        """A checked proposal, or, when the tries are spent, a crash row for number n."""
        try:
            return ask(
                self.proposer, self._context(n), self.check, lambda m: self.say(f"[{n}] {m}")
            )
        except NoValidProposal as e:
            reason = str(e)
        self.logs.path(n).write_text(reason + "\n")
        self.judge.ledger.record(n, "-", "experiment", "", RunOutcome("crash", reason=reason))
        self.judge.count_crash(reason)
        return None

    def _commit(self, role: str, description: str, text: str, cfg: ExperimentConfig,
                proposal: Proposal | None = None) -> Experiment:  # fmt: skip
        n = self.number()
        commit = self.git.experiment_commit(n, self.config_path, text, description,
                                            self.git.tip().hexsha, role)  # fmt: skip
        return Experiment(n, commit, role, description, text, cfg, proposal)

    def _context(self, n: int) -> Context:
        best_text = self.git.show(self.git.tip().hexsha, self.config_path)  # HEAD may be elsewhere
        return proposer_context(n, self.judge.ledger.tag_rows(), best_text, self.judge.best,
                                self.in_flight.values(), self._corpora_text,
                                self.logs.tail)  # fmt: skip

    @functools.cached_property
    def _corpora_text(self) -> str:
        return corpora_text(load_config(self.config_path))
