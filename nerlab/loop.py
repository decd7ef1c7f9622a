"""The research loop: propose -> check -> commit -> train (N at a time) -> record -> keep or not.

This process (the driver) alone owns git and results.tsv; runs only train a config text they
are given (nerlab.pool). Invariants, whatever happens (crash, timeout, Ctrl-C, SIGKILL of the
driver, a full disk):
- every experiment started is a commit held by `refs/autoresearch/<tag>/<n>` and gets exactly
  one row, written before anything else changes; a restart gives the rowless ones theirs:
  their result when the log holds a finished run, else `crash` (interrupted);
- the branch holds only kept experiments and its tip is the best (nerlab.ledger); the working
  tree always holds the best's config: experiments never touch it;
- decisions are made in completion order against the best of that moment.
"""

from __future__ import annotations

import contextlib
import functools
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from git import GitCommandError

from nerlab import signals, stats
from nerlab.agents import Context, Proposal, ProposalError, Proposer, ProposerUnavailable
from nerlab.config import ExperimentConfig, dump_config, load_config, parse_config_text
from nerlab.errors import UserError
from nerlab.gitops import RunBranch
from nerlab.ledger import Best, Ledger
from nerlab.pool import Pool, make_pool
from nerlab.proposals import ProposalCheck, config_diff
from nerlab.results import repair
from nerlab.runner import RunOutcome, RunSpec, outcome_of

MAX_PROPOSAL_TRIES = 3
STARTUP_ALLOWANCE = 300.0  # seconds for imports, data, model download, evaluation
STEPS_MODE_TIMEOUT = 1800.0  # a steps budget has no wall-clock bound of its own
SAME_CRASH_LIMIT = 3  # this many crashes in a row for one reason: no config can avoid it


@dataclass
class LoopOptions:
    tag: str
    config: Path = Path("configs/current.yaml")
    results: Path = Path("results.tsv")
    max_experiments: int | None = None  # the tag's total, restarts included
    max_hours: float | None = None  # of this invocation
    confirm_repeats: int = 3
    noise_margin: float = stats.NOISE_MARGIN
    timeout: float | None = None  # default: 2x the budget + startup allowance
    workers: int = 1
    ray_address: str | None = None
    gpus_per_run: float = 1.0


@dataclass
class Experiment:
    n: int
    commit: str  # short hash of the commit that runs
    description: str
    config_text: str
    cfg: ExperimentConfig
    proposal: Proposal | None = None  # None for the baseline and for recovered experiments
    f1s: list[float] = field(default_factory=list)  # seeds measured so far
    first: RunOutcome | None = None  # the first run (its summary fills the row)

    @property
    def baseline(self) -> bool:
        return self.description == "baseline"


class ResearchLoop:
    def __init__(self, root: Path, opts: LoopOptions, proposer: Proposer, say=print):
        self.opts, self.proposer, self.say = opts, proposer, say
        self.git = RunBranch(root, opts.tag)
        self.root = self.git.root
        self.config_path = self.root / opts.config
        self.runs_dir = self.root / "runs" / opts.tag
        self.ledger: Ledger | None = None
        self.best: Best | None = None
        self.check: ProposalCheck | None = None
        self.in_flight: dict[int, Experiment] = {}
        self.crash_reasons: list[str] = []

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
        self._restore_cut_reset()
        self.git.ensure_clean()
        resumed = self.git.checkout()
        self.say(f"{'resuming' if resumed else 'created'} branch {self.git.branch}")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        start_cfg = load_config(self.config_path)
        self.ledger = Ledger(self.root / self.opts.results, self.git, start_cfg.target)
        if self.ledger.path.exists():
            repair(self.ledger.path)  # a row torn by a kill is set aside, not lost
        self.check = ProposalCheck(start_cfg)
        self._recover()
        self.best = self.ledger.best()
        if self.best:
            self.say(f"best so far: {self.best.f1:.4f} at {self.best.commit}")

    def _restore_cut_reset(self) -> None:
        """A kill inside `git reset --hard` leaves the branch moved but the config file old:
        ours to restore, but only when the file holds a config this branch already had."""
        if self.git.repo.head.is_detached or self.git.repo.active_branch.name != self.git.branch:
            return
        dirty = self.git.dirty_files()
        rel = self.config_path.relative_to(self.root).as_posix()
        if dirty != [rel] or not self.config_path.exists():
            return
        text = self.config_path.read_text()
        known = set()
        for commit in self._branch_commits(20):
            with contextlib.suppress(GitCommandError):  # the file may be new
                known.add(self.git.show(commit, self.config_path).strip())
        if text.strip() in known:
            self.say(f"recovering: {rel} restored to the best commit (a reset was cut short)")
            self.git.reset_to("HEAD")

    def _branch_commits(self, n: int) -> list[str]:
        return [c.hexsha for c in self.git.repo.iter_commits(self.git.branch, max_count=n)]

    def _recover(self) -> None:
        """Give every experiment without a row its row; land a keep that was not landed."""
        statuses = self.ledger.statuses()
        experiments = self.git.experiments()
        rows = self.ledger.tag_rows()
        kept = rows.loc[rows["status"] == "keep", "commit"].tolist()  # in decision order
        if kept and kept[-1] not in self.git.on_branch():
            n = next(n for n, c in experiments.items() if c == kept[-1])
            self.say(f"recovering: [{n}] {kept[-1]} was kept but not on the branch: landing it")
            self._land(self._rebuild(n, kept[-1]))
        for n, commit in sorted(experiments.items()):
            if commit in statuses:
                exp = self._rebuild(n, commit)
                if statuses[commit] in ("keep", "discard"):
                    self.check.remember(exp.cfg, f"experiment {n} ({statuses[commit]})")
                continue
            self._recover_one(self._rebuild(n, commit))

    def _rebuild(self, n: int, commit: str) -> Experiment:
        text = self.git.show(commit, self.config_path)
        subject = self.git.repo.commit(commit).message.splitlines()[0]
        description = subject.split("] ", 1)[-1]
        return Experiment(n, commit, description, text, parse_config_text(text))

    def _recover_one(self, exp: Experiment) -> None:
        """A run the last loop did not record: its result if its log holds one, else a crash."""
        first = self._logged(exp.n, "")
        if first is None or not first.ok:
            self.say(f"recovering: [{exp.n}] {exp.commit} ({exp.description}) has no row: "
                     "interrupted")  # fmt: skip
            self._record(exp, RunOutcome("crash", reason="interrupted"))
            return
        self.say(f"recovering: [{exp.n}] {exp.commit} finished before the loop stopped")
        self.best = self.ledger.best()
        exp.first, exp.f1s = first, first.f1s
        confirm = self._logged(exp.n, ".confirm")
        if confirm is not None and confirm.ok:
            exp.f1s = first.f1s + confirm.f1s
        decision = self._decide(exp)
        if decision.action == "confirm":  # its confirmation was cut short
            self._record(exp, RunOutcome("crash", reason="interrupted during confirmation"))
        else:
            self._conclude(exp, decision)

    def _logged(self, n: int, suffix: str) -> RunOutcome | None:
        log = self._log(n, suffix)
        if not log.exists():
            return None
        text = log.read_text(encoding="utf-8", errors="replace")
        return outcome_of(text, 0) if "\nstatus:" in text else None

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        self.start()
        pool = None
        try:
            pool = make_pool(self.opts.workers, self.opts.ray_address, self.opts.gpus_per_run,
                             self.say)  # fmt: skip
            self._shared_gpu_note(pool)
            self._drive(pool)
        except KeyboardInterrupt as e:  # SIGINT, SIGTERM, SIGHUP: nerlab.signals
            self.git.reopen()
            if pool is not None:
                pool.close()
                pool = None
            reason = f"interrupted ({signals.name_of(e)})"
            for exp in list(self.in_flight.values()):
                self._record(exp, RunOutcome("crash", reason=reason))
            done = ", ".join(f"[{n}]" for n in sorted(self.in_flight))
            self.in_flight.clear()
            raise signals.told(e, f"{done} recorded as crash" if done else "") from None
        finally:
            if pool is not None:
                pool.close()  # rows of runs still in flight are written by the next start
            self.git.reopen()  # a Ctrl-C may have killed a git process under us
            if self.best:
                self.git.reset_to(self.git.tip().hexsha)
            self.git.unlock()

    def _drive(self, pool: Pool) -> None:
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
                if stop:
                    self.say(f"stopping: {stop}")
                return
            n, outcome = pool.wait()
            self._finished(pool, self.in_flight[n], outcome)

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
        n = self._next_number()
        text = self.config_path.read_text()
        commit = self.git.experiment_commit(n, self.config_path, text, "baseline",
                                            self.git.tip().hexsha)  # fmt: skip
        exp = Experiment(n, commit, "baseline", text, parse_config_text(text))
        self.say(f"[{n}] baseline: {exp.cfg.target}, config as committed")
        return exp

    def _next_experiment(self) -> Experiment | None:
        n = self._next_number()
        found = self._proposal(n)
        if found is None:
            return None
        proposal, cfg = found
        text = f"# agent_loop.py ({self.proposer.name}) experiment {n}: {proposal.description}\n"
        text += dump_config(cfg)
        commit = self.git.experiment_commit(n, self.config_path, text, proposal.description,
                                            self.git.tip().hexsha)  # fmt: skip
        self.say(f"[{n}] {commit} {proposal.description}")
        return Experiment(n, commit, proposal.description, text, cfg, proposal)

    def _proposal(self, n: int) -> tuple[Proposal, ExperimentConfig] | None:
        """Ask until a proposal passes the checks (each refusal goes back to the proposer)."""
        ctx = self._context(n)
        error = None
        for _ in range(MAX_PROPOSAL_TRIES):
            proposal = None
            try:
                proposal = self.proposer.propose(ctx, error)
                return proposal, self.check.check(proposal)
            except ProposerUnavailable:
                raise
            except (UserError, ProposalError) as e:
                error = str(e)
            self.say(f"[{n}] proposal rejected: {error}")
            if proposal is not None:
                self.proposer.observe(proposal, None)
        reason = f"invalid proposal: {error}"
        self._log(n).write_text(f"no valid proposal after {MAX_PROPOSAL_TRIES} tries: {error}\n")
        self.ledger.record("-", RunOutcome("crash", reason=reason), "no valid proposal")
        self._count_crash(reason)
        return None

    def _context(self, n: int) -> Context:
        rows = self.ledger.tag_rows()
        table = "\n".join(
            f"{r.commit}\t{r.dev_f1:.4f}\t{r.status}\t{r.description}"
            for r in rows.tail(60).itertuples()
        )
        best_text = self.config_path.read_text()
        running = "\n".join(
            f"- [{e.n}] {e.description}\n" + _indent(config_diff(best_text, e.config_text))
            for e in self.in_flight.values()
        )
        return Context(
            experiment=n,
            config_yaml=best_text,
            schema=_schema(),
            corpora=self._corpora_text,
            results=("commit\tdev_f1\tstatus\tdescription\n" + table) if table else "",
            best_f1=self.best.f1 if self.best else None,
            best_description=self.best.description if self.best else "",
            log_tail=self._log_tail,
            running=running,
        )

    @functools.cached_property
    def _corpora_text(self) -> str:
        from nerlab.corpora import ALIASES, CORPORA

        cfg = load_config(self.config_path)
        lines = []
        for name, entry in sorted(cfg.store().manifest().items()):
            types = CORPORA[name].types if name in CORPORA else entry["types"]
            splits = ", ".join(f"{s} {v['sentences']} sents" for s, v in entry["splits"].items())
            lines.append(f"- {name} ({', '.join(types)}): {splits}")
        views = ", ".join(f"{a} = {v}" for a, v in ALIASES.items())
        return "\n".join(lines) + f"\nViews: {views}; any `name:Type` narrows a corpus."

    def _submit(self, pool: Pool, exp: Experiment, repeats: int, sets=(), suffix="") -> None:
        self.in_flight[exp.n] = exp
        self.check.remember(exp.cfg, f"experiment {exp.n} (running now)")
        spec = RunSpec(exp.config_text, tuple(sets), self._timeout(exp.cfg, repeats),
                       str(self.root / "train.py"))  # fmt: skip
        pool.submit(exp.n, spec, self._log(exp.n, suffix))

    def _timeout(self, cfg: ExperimentConfig, repeats: int) -> float:
        if self.opts.timeout:
            return self.opts.timeout * repeats / cfg.repeats
        if cfg.budget.seconds is None:
            return STEPS_MODE_TIMEOUT * repeats
        return 2 * cfg.budget.seconds * repeats + STARTUP_ALLOWANCE

    # -- finishing experiments ---------------------------------------------------------

    def _finished(self, pool: Pool, exp: Experiment, outcome: RunOutcome) -> None:
        del self.in_flight[exp.n]
        if not outcome.ok:
            self._record(exp, outcome)
            self.say(f"[{exp.n}] crash: {outcome.reason}")
            self._count_crash(outcome.reason)
            return
        self.crash_reasons.clear()
        first = exp.first is None
        exp.first = exp.first or outcome
        exp.f1s += outcome.f1s
        decision = self._decide(exp)
        if decision.action == "confirm" and first:
            self.say(f"[{exp.n}] {decision.reason}")
            extra = self.opts.confirm_repeats - len(exp.f1s)
            seed = exp.cfg.seed + len(exp.f1s)  # new seeds, never one already measured
            sets = (f"seed={seed}", f"repeats={extra}")
            self._submit(pool, exp, extra, sets, suffix=".confirm")
            return
        self._conclude(exp, decision)

    def _decide(self, exp: Experiment) -> stats.Decision:
        best = self.best.f1 if self.best else None
        return stats.decide(exp.f1s, best, self.opts.noise_margin, self.opts.confirm_repeats)

    def _conclude(self, exp: Experiment, decision: stats.Decision) -> None:
        status = "keep" if decision.action == "keep" else "discard"
        self._record(exp, exp.first, status, decision.reason, exp.f1s)
        self.say(f"[{exp.n}] {status}: {decision.reason}")
        self.check.remember(exp.cfg, f"experiment {exp.n} ({status})")
        if exp.proposal is not None:
            self.proposer.observe(exp.proposal, statistics.fmean(exp.f1s))
        if status == "keep":
            self._land(exp)
            self.best = Best(exp.commit, statistics.fmean(exp.f1s), exp.description)

    def _land(self, exp: Experiment) -> None:
        self.git.land(exp.n, exp.commit, self.config_path, exp.config_text, exp.description)

    def _record(self, exp: Experiment, outcome: RunOutcome, status: str = "crash",
                note: str = "", f1s: list[float] | None = None) -> None:  # fmt: skip
        self.ledger.record(exp.commit, outcome, exp.description, status, note, f1s)
        if status == "crash":
            self.check.forget(exp.cfg)  # nothing was measured: it may be tried again
            if exp.proposal is not None:
                self.proposer.observe(exp.proposal, None)
            if exp.baseline and "interrupted" not in outcome.reason:
                raise UserError(f"the baseline crashed ({outcome.reason}); see {self._log(exp.n)}")

    def _count_crash(self, reason: str) -> None:
        """Stop when crashes repeat one reason: no config can avoid it (data gone, GPU lost)."""
        self.crash_reasons.append(reason)
        last = self.crash_reasons[-SAME_CRASH_LIMIT:]
        if len(last) == SAME_CRASH_LIMIT and len(set(last)) == 1:
            raise UserError(
                f"stopping: {SAME_CRASH_LIMIT} crashes in a row for the same reason, which no "
                f"config can avoid: {reason}"
            )

    # -- files -----------------------------------------------------------------------------

    def _log(self, n: int, suffix: str = "") -> Path:
        return self.runs_dir / f"{n}{suffix}.log"

    def _log_tail(self, n: int, lines: int) -> str:
        path = self._log(n)
        if not path.exists():
            return f"no log for experiment {n}"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _next_number(self) -> int:
        logs = [int(p.stem) for p in self.runs_dir.glob("*.log") if p.stem.isdigit()]
        return max([*logs, *self.git.experiments(), *self.in_flight], default=0) + 1


@functools.cache
def _schema() -> str:
    return json.dumps(ExperimentConfig.model_json_schema(), separators=(",", ":"))


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
