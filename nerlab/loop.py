"""The research loop: propose -> check -> commit -> train (N at a time) -> record -> keep or not.

This process (the driver) alone owns git and results.tsv; runs only train a config text they
are given (nerlab.pool). Invariants, whatever happens (crash, timeout, Ctrl-C, SIGKILL of the
driver, a full disk):
- every experiment started is a commit held by `refs/autoresearch/<tag>/<n>` and gets exactly
  one row, written before anything else changes; a restart gives the rowless ones theirs:
  their result when the log holds a finished run, else `crash` (interrupted);
- the branch holds only kept experiments and its tip is the best (nerlab.ledger); it is moved
  by ref, and the working tree only while it is the loop's (nerlab.gitops): experiments never
  touch it;
- decisions are made in completion order against the best of that moment;
- the config file a tag edits is fixed by its first experiment (the commits' `Config:` trailer):
  a resumed loop takes it from there, and refuses a --config that says otherwise.
Restart recovery is nerlab.recovery; what the proposer is shown, nerlab.context; the run policy
(timeouts, seeds, noise margin), nerlab.policy.
"""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from nerlab import policy, signals, stats
from nerlab.agents import Context, Proposal, Proposer
from nerlab.config import ExperimentConfig, dump_config, load_config, parse_config_text
from nerlab.context import corpora_text, proposer_context
from nerlab.errors import UserError
from nerlab.experiment import Experiment, RunLogs
from nerlab.gitops import RunBranch
from nerlab.ledger import Best, Ledger, refuse_records_elsewhere
from nerlab.live import TICK_S, LivePage
from nerlab.pool import Pool, make_pool
from nerlab.proposals import NoValidProposal, ProposalCheck, ask
from nerlab.provenance import choose_config
from nerlab.recovery import recover, restore_cut_reset
from nerlab.results import repair
from nerlab.runner import RunOutcome, RunSpec
from nerlab.text import visible


@dataclass
class LoopOptions:
    tag: str
    config: Path | None = None  # relative to the root given; default: the tag's, else current
    results: Path = Path("results.tsv")
    max_experiments: int | None = None  # the tag's total, restarts included
    max_hours: float | None = None  # of this invocation
    confirm_repeats: int = policy.MIN_SEEDS
    noise_margin: float = policy.NOISE_MARGIN
    timeout: float | None = None  # default: nerlab.policy.run_timeout
    workers: int = 1
    ray_address: str | None = None
    gpus_per_run: float = 1.0
    live_page: bool = False  # runs/<tag>/report.html rewritten as the loop goes (nerlab.live)


class ResearchLoop:
    def __init__(self, root: Path, opts: LoopOptions, proposer: Proposer, say=print):
        """`root`: where the user stands (paths given are relative to it)."""
        self.opts, self.proposer, self.say = opts, proposer, say
        self.git = RunBranch(root, opts.tag)
        self.root = self.git.root
        self.config_path = choose_config(self.git, opts.config, root, say)
        if not self.config_path.is_file():  # before a branch or a commit is made
            raise UserError(f"{self.config_path}: config file not found")
        self.logs = RunLogs(self.root / "runs" / opts.tag)
        self.ledger: Ledger | None = None
        self.best: Best | None = None
        self.check: ProposalCheck | None = None
        self.in_flight: dict[int, Experiment] = {}
        self.crash_reasons: list[str] = []
        self.page = LivePage(self) if opts.live_page else None

    # -- start: lock, clean tree, branch, recovery ---------------------------------------

    def start(self) -> None:
        self.git.lock()
        try:
            self._start()
        except BaseException:
            self.git.unlock()
            raise

    def _start(self) -> None:
        if self.git.clear_stale_index_lock():
            self.say("recovering: removed a stale .git/index.lock left by a killed loop")
        restore_cut_reset(self)
        self.git.ensure_clean()
        refuse_records_elsewhere(self.git, self.root / self.opts.results, self.logs.dir)
        resumed = self.git.checkout()
        rel = self.config_path.relative_to(self.root).as_posix()
        self.say(f"{'resuming' if resumed else 'created'} branch {self.git.branch} ({rel})")
        self.logs.dir.mkdir(parents=True, exist_ok=True)
        start_cfg = load_config(self.config_path)
        start_cfg.views()  # its corpora are prepared: else the baseline would only crash
        self.ledger = Ledger(self.root / self.opts.results, self.git, start_cfg.target, rel)
        if self.ledger.path.exists():
            repair(self.ledger.path)  # a row torn by a kill is set aside, not lost
        self.check = ProposalCheck(start_cfg)
        recover(self)
        self.best = self.ledger.best()
        if self.best:
            self.say(f"best so far: {self.best.f1:.4f} at {self.best.commit}")

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        self.start()
        pool = None
        why = "stopped by an error"  # what the live page says: replaced below when known
        try:
            pool = make_pool(self.opts.workers, self.opts.ray_address, self.opts.gpus_per_run,
                             self.say)  # fmt: skip
            self._shared_gpu_note(pool)
            why = self._drive(pool)
        except KeyboardInterrupt as e:  # SIGINT, SIGTERM, SIGHUP: nerlab.signals
            self.git.reopen()
            if pool is not None:
                pool.close()
                pool = None
            reason = why = f"interrupted ({signals.name_of(e)})"
            for exp in list(self.in_flight.values()):
                self.record(exp, RunOutcome("crash", reason=reason))
            done = ", ".join(f"[{n}]" for n in sorted(self.in_flight))
            self.in_flight.clear()
            raise signals.told(e, f"{done} recorded as crash" if done else "") from None
        except Exception as e:  # a UserError (the same crash again and again, ...) or a bug
            why = visible(e)
            raise
        finally:
            if pool is not None:
                pool.close()  # rows of runs still in flight are written by the next start
            self.git.reopen()  # a Ctrl-C may have killed a git process under us
            if self.best:
                self.git.sync_tree(self.config_path)  # never a reset: the tree may be the user's
            self.git.unlock()
            if self.page:
                self.page.update(stopped=why)

    def _drive(self, pool: Pool) -> str:
        """Run experiments until a stop reason holds and none is in flight; returns it."""
        started = time.monotonic()
        while True:
            stop = self._stop_reason(started)
            while stop is None and len(self.in_flight) < pool.workers:
                if self.best is None and self.in_flight:
                    break  # everything else waits for the baseline's score
                exp = self._baseline() if self.best is None else self._next_experiment()
                if exp is not None:
                    self._submit(pool, exp, exp.cfg.repeats)
                stop = self._stop_reason(started)
            if not self.in_flight:
                self.say(f"stopping: {stop}")
                return stop
            n, outcome = self._wait(pool)
            self._finished(pool, self.in_flight[n], outcome)

    def _wait(self, pool: Pool):
        """The next run to finish; meanwhile the live page is rewritten: at once (what was
        decided and started since the last wait) and every live.TICK_S."""
        if self.page is None:
            return pool.wait()
        self.page.update()
        while (done := pool.wait(TICK_S)) is None:
            self.page.update()
        return done

    def _stop_reason(self, started: float) -> str | None:
        limit = self.opts.max_experiments  # numbers used: experiments and failed proposals
        if limit is not None and self._next_number() - 1 >= limit:
            return f"{limit} experiments in tag {self.opts.tag} (--max-experiments)"
        hours = (time.monotonic() - started) / 3600
        if self.opts.max_hours is not None and hours >= self.opts.max_hours:
            return f"{hours:.2f} h elapsed (--max-hours)"
        return None

    def _shared_gpu_note(self, pool: Pool) -> None:
        if getattr(pool, "gpu", False) and self.opts.gpus_per_run < 1:
            budget = load_config(self.config_path).budget
            if budget.seconds is not None:
                self.say(
                    f"note: {self.opts.gpus_per_run:g} GPU per run: runs sharing a GPU slow each "
                    "other, so a seconds budget buys each fewer steps than alone"
                )

    # -- starting experiments --------------------------------------------------------------

    def _baseline(self) -> Experiment:
        """The first experiment: the config as it is, as an experiment commit of its own, so
        this tag's score is never another tag's."""
        text = self.config_path.read_text()
        exp = self._commit("baseline", "baseline", text, parse_config_text(text))
        self.say(f"[{exp.n}] baseline: {exp.cfg.target}, config as committed")
        return exp

    def _next_experiment(self) -> Experiment | None:
        n = self._next_number()
        found = self._proposal(n)
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

    def _commit(self, role: str, description: str, text: str, cfg: ExperimentConfig,
                proposal: Proposal | None = None) -> Experiment:  # fmt: skip
        n = self._next_number()
        commit = self.git.experiment_commit(n, self.config_path, text, description,
                                            self.git.tip().hexsha, role)  # fmt: skip
        return Experiment(n, commit, role, description, text, cfg, proposal)

    def _proposal(self, n: int) -> tuple[Proposal, ExperimentConfig] | None:
        """A checked proposal, or, when the tries are spent, a crash row for number n."""
        try:
            return ask(
                self.proposer, self._context(n), self.check, lambda m: self.say(f"[{n}] {m}")
            )
        except NoValidProposal as e:
            reason = str(e)
        self.logs.path(n).write_text(reason + "\n")
        self.ledger.record(n, "-", "experiment", "", RunOutcome("crash", reason=reason))
        self._count_crash(reason)
        return None

    def _context(self, n: int) -> Context:
        best_text = self.git.show(self.git.tip().hexsha, self.config_path)  # HEAD may be elsewhere
        return proposer_context(n, self.ledger.tag_rows(), best_text, self.best,
                                self.in_flight.values(), self._corpora_text,
                                self.logs.tail)  # fmt: skip

    @functools.cached_property
    def _corpora_text(self) -> str:
        return corpora_text(load_config(self.config_path))

    def _submit(self, pool: Pool, exp: Experiment, repeats: int, sets=(), suffix="") -> None:
        self.in_flight[exp.n] = exp
        self.check.remember(exp.cfg, f"experiment {exp.n} (running now)")
        spec = RunSpec(exp.config_text, tuple(sets), self._timeout(exp.cfg, repeats),
                       str(self.root / "train.py"))  # fmt: skip
        pool.submit(exp.n, spec, self.logs.path(exp.n, suffix))

    def _timeout(self, cfg: ExperimentConfig, repeats: int) -> float:
        if self.opts.timeout:
            return self.opts.timeout * repeats / cfg.repeats
        return policy.run_timeout(cfg.budget, repeats)

    # -- finishing experiments ---------------------------------------------------------

    def _finished(self, pool: Pool, exp: Experiment, outcome: RunOutcome) -> None:
        del self.in_flight[exp.n]
        if not outcome.ok:
            self.record(exp, outcome)
            self.say(f"[{exp.n}] crash: {visible(outcome.reason)}")
            self._count_crash(outcome.reason, outcome.summary.get("cause", ""))
            return
        self.crash_reasons.clear()
        first = exp.first is None
        exp.first = exp.first or outcome
        exp.f1s += outcome.f1s
        decision = self.decide(exp)
        if decision.action == "confirm" and first:
            self.say(f"[{exp.n}] {decision.reason}")
            extra = self.opts.confirm_repeats - len(exp.f1s)
            seed = exp.cfg.seed + len(exp.f1s)  # new seeds, never one already measured
            sets = (f"seed={seed}", f"repeats={extra}")
            self._submit(pool, exp, extra, sets, suffix=".confirm")
            return
        self.conclude(exp, decision)

    def decide(self, exp: Experiment) -> stats.Decision:
        best = self.best.f1 if self.best else None
        return stats.decide(exp.f1s, best, self.opts.noise_margin, self.opts.confirm_repeats)

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

    def _count_crash(self, reason: str, cause: str = "") -> None:
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

    def _next_number(self) -> int:
        used = [*self.logs.numbers(), *self.git.experiments(), *self.in_flight]
        return max(used, default=0) + 1
