"""Concluding experiments: a finished one is decided against the best of that moment
(nerlab.stats.decide), recorded as its one row, and landed on the branch when kept; crashes that
repeat one cause end the night. The loop and restart recovery (nerlab.recovery) both conclude
through here, so a recovered experiment ends exactly as a live one.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from nerlab import policy, stats
from nerlab.agents import Proposer
from nerlab.errors import UserError
from nerlab.experiment import Experiment, RunLogs
from nerlab.gitops import RunBranch
from nerlab.ledger import Best, Ledger
from nerlab.proposals import ProposalCheck
from nerlab.runner import RunOutcome


class Judge:
    def __init__(self, git: RunBranch, ledger: Ledger, check: ProposalCheck, config_path: Path,
                 logs: RunLogs, proposer: Proposer, noise_margin: float, confirm_repeats: int,
                 say: Callable[[str], None]):  # fmt: skip
        self.git, self.ledger, self.check, self.logs = git, ledger, check, logs
        self.config_path = config_path
        self.proposer, self.say = proposer, say
        self.noise_margin, self.confirm_repeats = noise_margin, confirm_repeats
        self.best: Best | None = None
        self.crash_reasons: list[str] = []  # since the last run that finished

    def decide(self, exp: Experiment) -> stats.Decision:
        best = self.best.f1 if self.best else None
        return stats.decide(exp.f1s, best, self.noise_margin, self.confirm_repeats)

    def conclude(self, exp: Experiment, decision: stats.Decision) -> None:
        status = "keep" if decision.action == "keep" else "discard"
        self.record(exp, exp.first, status, decision.reason, exp.f1s)
        self.say(f"[{exp.n}] {status}: {decision.reason}")
        self.check.remember(exp.cfg, f"experiment {exp.n} ({status})")
        if exp.proposal is not None:
            self.proposer.observe(exp.proposal, statistics.fmean(exp.f1s))
        if status == "keep":
            self.land(exp)
            self.best = Best(exp.commit, statistics.fmean(exp.f1s), exp.description)

    def land(self, exp: Experiment) -> None:
        note = self.git.land(exp.n, exp.commit, self.config_path, exp.config_text,
                             exp.description, exp.role)  # fmt: skip
        if note:
            self.say(note)

    def record(self, exp: Experiment, outcome: RunOutcome, status: str = "crash",
               reason: str = "", f1s: list[float] | None = None) -> None:  # fmt: skip
        self.ledger.record(exp.n, exp.commit, exp.role, exp.description, outcome, status, reason,
                           f1s)  # fmt: skip
        if status == "crash":
            self.check.forget(exp.cfg)  # nothing was measured: it may be tried again
            if exp.proposal is not None:
                self.proposer.observe(exp.proposal, None)
            if exp.baseline and "interrupted" not in outcome.reason:
                raise UserError(
                    f"the baseline crashed ({outcome.reason}); see {self.logs.path(exp.n)}"
                )

    def count_crash(self, reason: str, cause: str = "") -> None:
        """Stop when crashes repeat one cause: no config can avoid it (data gone, GPU lost).
        The cause is the summary's `cause:` where the reason's text varies with the config."""
        self.crash_reasons.append(cause or reason)
        limit = policy.SAME_CRASH_LIMIT
        last = self.crash_reasons[-limit:]
        if len(last) == limit and len(set(last)) == 1:
            raise UserError(
                f"stopping: {limit} crashes in a row for the same reason, which no config can "
                f"avoid: {reason}"
            )
