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
This module schedules; the next experiment comes from nerlab.next_experiment, a finished one is
decided, recorded and landed by nerlab.judge; restart recovery is nerlab.recovery; the run
policy (timeouts, seeds, noise margin), nerlab.policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nerlab import policy, signals
from nerlab.agents import Proposer
from nerlab.config import ExperimentConfig, load_config
from nerlab.errors import UserError
from nerlab.experiment import Experiment, RunLogs
from nerlab.gitops import RunBranch
from nerlab.judge import Judge
from nerlab.ledger import Best, Ledger, refuse_records_elsewhere
from nerlab.live import TICK_S, LivePage
from nerlab.next_experiment import NextExperiment
from nerlab.pool import Pool, make_pool
from nerlab.proposals import ProposalCheck
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
        self.in_flight: dict[int, Experiment] = {}
        self.page = LivePage(self) if opts.live_page else None
        # from start(), once the branch and results.tsv are checked
        self.ledger: Ledger | None = None
        self.check: ProposalCheck | None = None
        self.judge: Judge | None = None
        self.next: NextExperiment | None = None

    @property
    def best(self) -> Best | None:
        return self.judge.best if self.judge else None

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
        restore_cut_reset(self.git, self.config_path, self.say)
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
        self.judge = Judge(self.git, self.ledger, self.check, self.config_path, self.logs,
                           self.proposer, self.opts.noise_margin, self.opts.confirm_repeats,
                           self.say)  # fmt: skip
        self.next = NextExperiment(self.git, self.config_path, self.proposer, self.check,
                                   self.logs, self.judge, self.in_flight, self.say)  # fmt: skip
        recover(self.judge)
        self.judge.best = self.ledger.best()
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
                self.judge.record(exp, RunOutcome("crash", reason=reason))
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
                exp = self.next.baseline() if self.best is None else self.next.proposed()
                if exp is not None:
                    self._submit(pool, exp, exp.cfg.repeats)
                stop = self._stop_reason(started)
            if not self.in_flight:
                self.say(f"stopping: {stop}")
                return stop
            n, outcome = self._wait(pool)
            self._finished(pool, self.in_flight[n], outcome)
            if self.page and self.proposer.slow:  # the result shows while a model thinks
                self.page.update()

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
        if limit is not None and self.next.number() - 1 >= limit:
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

    # -- running and finishing experiments -------------------------------------------------

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

    def _finished(self, pool: Pool, exp: Experiment, outcome: RunOutcome) -> None:
        """A run came back: a crash row, more seeds for a close win, or the decision."""
        del self.in_flight[exp.n]
        if not outcome.ok:
            self.judge.record(exp, outcome)
            self.say(f"[{exp.n}] crash: {visible(outcome.reason)}")
            self.judge.count_crash(outcome.reason, outcome.summary.get("cause", ""))
            return
        self.judge.crash_reasons.clear()
        first = exp.first is None
        exp.first = exp.first or outcome
        exp.f1s += outcome.f1s
        decision = self.judge.decide(exp)
        if decision.action == "confirm" and first:
            self.say(f"[{exp.n}] {decision.reason}")
            extra = self.opts.confirm_repeats - len(exp.f1s)
            seed = exp.cfg.seed + len(exp.f1s)  # new seeds, never one already measured
            sets = (f"seed={seed}", f"repeats={extra}")
            self._submit(pool, exp, extra, sets, suffix=".confirm")
            return
        self.judge.conclude(exp, decision)
