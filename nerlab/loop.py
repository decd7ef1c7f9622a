"""The research loop: propose -> validate -> commit -> train -> record -> keep or revert.

Invariants, whatever happens (crash, timeout, Ctrl-C, SIGKILL of this process):
- every experiment that started gets exactly one row in results.tsv (git-ignored, so a revert
  never loses it); the row is written before git is reset;
- the branch holds only kept experiments: after each experiment HEAD is the best commit;
- a restart with the same tag finds an experiment commit without a row (killed mid-run),
  records it as `crash` (interrupted) and reverts it, then goes on.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from nerlab import stats
from nerlab.agents import Context, Proposal, ProposalError, Proposer, ProposerUnavailable
from nerlab.config import ExperimentConfig, dump_config, load_config, parse_config
from nerlab.errors import UserError
from nerlab.gitops import RunBranch
from nerlab.results import append_row, read_results, repair
from nerlab.summary import parse_summary

MAX_PROPOSAL_TRIES = 3
MAX_CONFIG_CHARS = 8000  # a config is a few hundred characters; refuse anything absurd
STARTUP_ALLOWANCE = 300.0  # seconds for imports, data, model download, evaluation
STEPS_MODE_TIMEOUT = 1800.0  # a steps budget has no wall-clock bound of its own
SEED_LINE = re.compile(r"^seed (\d+): \w+_f1 ([0-9.]+)", re.MULTILINE)


@dataclass
class LoopOptions:
    tag: str
    config: Path = Path("configs/current.yaml")
    results: Path = Path("results.tsv")
    max_experiments: int | None = None
    max_hours: float | None = None
    confirm_repeats: int = 3
    noise_margin: float = stats.NOISE_MARGIN
    timeout: float | None = None  # default: 2x the budget + startup allowance


@dataclass
class Outcome:
    status: str  # ok | crash
    f1s: list[float] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    reason: str = ""


class ResearchLoop:
    def __init__(self, root: Path, opts: LoopOptions, proposer: Proposer, say=print):
        self.opts = opts
        self.proposer = proposer
        self.say = say
        self.git = RunBranch(root, opts.tag)
        self.root = self.git.root
        self.config_path = self.root / opts.config
        self.results_path = self.root / opts.results
        self.runs_dir = self.root / "runs" / opts.tag
        self.best_f1: float | None = None
        self.best_commit = ""
        self.best_description = ""
        self.child: subprocess.Popen | None = None
        self.interrupted = False  # Ctrl-C during a run: finish its row, then stop
        self.best_path = self.runs_dir / "best.json"
        self.fixed: dict = {}

    # -- setup and recovery -----------------------------------------------------------

    def start(self) -> None:
        self.git.ensure_clean()
        resumed = self.git.checkout()
        self.say(f"{'resuming' if resumed else 'created'} branch {self.git.branch}")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        if self.results_path.exists():
            repair(self.results_path)  # a row torn by a kill is set aside, not lost
        self._recover()
        # The best is this tag's own record: a new tag branched from another run's commit
        # must run its own baseline, not inherit that run's score.
        best = json.loads(self.best_path.read_text()) if self.best_path.exists() else None
        if best and best["commit"] == self.git.head():
            self.best_f1, self.best_commit = best["dev_f1"], best["commit"]
            self.best_description = best["description"]
            self.say(f"best so far: {self.best_f1:.4f} at {self.best_commit}")
        self.fixed = self._fixed_fields(load_config(self.config_path))

    def _rows(self):
        if not self.results_path.exists():
            return pd.DataFrame(columns=["commit", "status", "dev_f1", "description"])
        return read_results(self.results_path)

    def _recover(self) -> None:
        """Undo what a killed loop left: experiment commits at HEAD that are not kept."""
        while self.git.head_is_experiment():
            rows = self._rows()
            mine = rows[rows["commit"] == self.git.head()]
            if len(mine) and mine["status"].iloc[-1] == "keep":
                return
            if not len(mine):
                desc = self.git.head_description()
                self.say(f"recovering: {self.git.head()} ({desc}) has no row: interrupted")
                self._append(self.git.head(), Outcome("crash", reason="interrupted"), desc)
            self.git.reset_to_parent()

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        self.start()
        started = time.monotonic()
        done = 0
        try:
            while True:
                if self.opts.max_experiments is not None and done >= self.opts.max_experiments:
                    self.say(f"stopping: {done} experiments done (--max-experiments)")
                    break
                hours = (time.monotonic() - started) / 3600
                if self.opts.max_hours is not None and hours >= self.opts.max_hours:
                    self.say(f"stopping: {hours:.2f} h elapsed (--max-hours)")
                    break
                if self.best_f1 is None:
                    self.baseline()
                else:
                    self.experiment()
                done += 1
                if self.interrupted:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            self.say("interrupted: rows are written and git is at the best commit")
        finally:
            self._recover()  # an experiment commit made just before the interrupt
            if self.best_commit:  # also undoes a config written but not yet committed
                self.git.reset_to(self.best_commit)

    def baseline(self) -> None:
        """The first experiment: the config as it is, at the branch's starting commit."""
        n = self._next_number()
        cfg = load_config(self.config_path)
        self.say(f"[{n}] baseline: {cfg.target}, config as committed")
        outcome = self._train(n, cfg)
        desc = "baseline"
        if outcome.status == "ok":
            self._append(self.git.head(), outcome, desc, "keep")
            self._set_best(statistics.fmean(outcome.f1s), self.git.head(), desc)
            self.say(f"[{n}] keep: baseline {self.best_f1:.4f}")
        else:
            self._append(self.git.head(), outcome, desc)
            raise UserError(f"the baseline crashed ({outcome.reason}); see {self._log(n)}")

    def experiment(self) -> None:
        n = self._next_number()
        found = self._proposal(n)
        if found is None:
            return
        proposal, cfg = found
        self.config_path.write_text(
            f"# agent_loop.py ({self.proposer.name}) experiment {n}: {proposal.description}\n"
            + dump_config(cfg)
        )
        commit = self.git.commit_file(self.config_path, proposal.description)
        self.say(f"[{n}] {commit} {proposal.description}")
        outcome = self._train(n, cfg)
        status, note = "crash", outcome.reason
        if outcome.status == "ok":
            margin, seeds = self.opts.noise_margin, self.opts.confirm_repeats
            decision = stats.decide(outcome.f1s, self.best_f1, margin, seeds)
            if decision.action == "confirm":
                self.say(f"[{n}] {decision.reason}")
                outcome = self._confirm(n, cfg, outcome)
                if outcome.status == "ok":
                    decision = stats.decide(outcome.f1s, self.best_f1, margin, seeds)
            if outcome.status == "ok":
                status, note = decision.action, decision.reason
            else:
                note = outcome.reason
        self._append(commit, outcome, proposal.description, status, note)
        self.say(f"[{n}] {status}: {note}")
        mean = statistics.fmean(outcome.f1s) if outcome.status == "ok" else None
        self.proposer.observe(proposal, mean)
        if status == "keep":
            self._set_best(mean, commit, proposal.description)
        else:
            self.git.reset_to(self.best_commit)

    def _set_best(self, f1: float, commit: str, description: str) -> None:
        self.best_f1, self.best_commit, self.best_description = f1, commit, description
        record = {"dev_f1": f1, "commit": commit, "description": description}
        tmp = self.best_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self.best_path)

    # What an experiment may not change: otherwise F1s stop being comparable (another target,
    # data root or budget) or the night goes to downloading another model.
    FIXED = ("target", "data", "model", "budget")

    def _fixed_fields(self, cfg: ExperimentConfig) -> dict:
        return {f: getattr(cfg, f) for f in self.FIXED}

    def _check_fixed(self, cfg: ExperimentConfig) -> None:
        for field_name, value in self.fixed.items():
            if getattr(cfg, field_name) != value:
                shown = (
                    value.model_dump(exclude_none=True) if hasattr(value, "model_dump") else value
                )
                raise UserError(f"{field_name} is fixed for this run at {shown!r}; keep it")

    # -- pieces --------------------------------------------------------------------------

    def _proposal(self, n: int) -> tuple[Proposal, ExperimentConfig] | None:
        """Ask until a proposal validates (schema errors go back to the proposer)."""
        ctx = self._context(n)
        error = None
        for _ in range(MAX_PROPOSAL_TRIES):
            proposal = None
            try:
                proposal = self.proposer.propose(ctx, error)
                if len(proposal.config_yaml) > MAX_CONFIG_CHARS:
                    raise UserError(f"config_yaml is over {MAX_CONFIG_CHARS} characters")
                raw = yaml.safe_load(proposal.config_yaml)
                if not isinstance(raw, dict):
                    raise UserError("config_yaml is not a mapping of config fields")
                cfg = parse_config(raw, source="config")
                self._check_fixed(cfg)
                return proposal, cfg
            except ProposerUnavailable:
                raise
            except yaml.YAMLError as e:
                error = f"config_yaml is not valid YAML: {e}"
            except (UserError, ProposalError) as e:
                error = str(e)
            self.say(f"[{n}] proposal rejected: {error}")
            if proposal is not None:
                self.proposer.observe(proposal, None)
        self._append(
            "-", Outcome("crash", reason=f"invalid proposal: {error}"), "no valid proposal"
        )
        return None

    def _context(self, n: int) -> Context:
        rows = self._rows()
        table = "\n".join(
            f"{r.commit}\t{r.dev_f1:.4f}\t{r.status}\t{r.description}"
            for r in rows.tail(60).itertuples()
        )
        return Context(
            experiment=n,
            config_yaml=self.config_path.read_text(),
            schema=json.dumps(ExperimentConfig.model_json_schema(), separators=(",", ":")),
            corpora=self._corpora_text(),
            results=("commit\tdev_f1\tstatus\tdescription\n" + table) if table else "",
            best_f1=self.best_f1,
            best_description=self.best_description,
            log_tail=self._log_tail,
        )

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

    def _log(self, n: int, suffix: str = "") -> Path:
        return self.runs_dir / f"{n}{suffix}.log"

    def _log_tail(self, n: int, lines: int) -> str:
        path = self._log(n)
        if not path.exists():
            return f"no log for experiment {n}"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _next_number(self) -> int:
        numbers = [int(p.stem) for p in self.runs_dir.glob("*.log") if p.stem.isdigit()]
        return max(numbers, default=0) + 1

    def _timeout(self, cfg: ExperimentConfig, repeats: int) -> float:
        if self.opts.timeout:
            return self.opts.timeout * repeats / cfg.repeats
        if cfg.budget.seconds is None:
            return STEPS_MODE_TIMEOUT * repeats
        return 2 * cfg.budget.seconds * repeats + STARTUP_ALLOWANCE

    def _train(self, n: int, cfg: ExperimentConfig, sets=(), suffix="", repeats=None) -> Outcome:
        """Run train.py on the config file in a subprocess with a hard timeout."""
        cmd = [sys.executable, "train.py", "--config", str(self.opts.config), *sets]
        timeout = self._timeout(cfg, repeats or cfg.repeats)
        log = self._log(n, suffix)
        with open(log, "w") as out:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            self.child = subprocess.Popen(
                cmd, cwd=self.root, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
            try:
                code = self.child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill(self.child)
                return Outcome("crash", reason=f"timeout: killed after {timeout:.0f} s")
            except KeyboardInterrupt:
                _kill(self.child)
                self.interrupted = True
                return Outcome("crash", reason="interrupted (Ctrl-C)")
            finally:
                self.child = None
        text = log.read_text(errors="replace")
        summary = parse_summary(text)
        if summary is None:
            tail = " | ".join(text.strip().splitlines()[-3:])
            return Outcome("crash", reason=f"no summary (exit code {code}): {tail[-300:]}")
        if summary["status"] != "ok" or code != 0:
            return Outcome("crash", summary=summary, reason=summary.get("reason", f"exit {code}"))
        f1s = [float(f) for _, f in SEED_LINE.findall(text)]
        try:
            dev = float(summary["dev_f1"])
        except ValueError:
            return Outcome("crash", summary=summary, reason="dev_f1 is not a number")
        return Outcome("ok", f1s or [dev], summary)

    def _confirm(self, n: int, cfg: ExperimentConfig, first: Outcome) -> Outcome:
        """Rerun with new seeds so the decision rests on the mean, not one lucky run."""
        extra = self.opts.confirm_repeats - len(first.f1s)
        seed = cfg.seed + len(first.f1s)
        sets = ["--set", f"seed={seed}", "--set", f"repeats={extra}"]
        more = self._train(n, cfg, sets, suffix=".confirm", repeats=extra)
        if more.status != "ok":
            return more
        return Outcome("ok", first.f1s + more.f1s, first.summary)

    def _append(self, commit: str, outcome: Outcome, description: str, status: str = "crash",
                note: str = "") -> None:  # fmt: skip
        f1s = outcome.f1s if outcome.status == "ok" else []
        s = outcome.summary
        note = note or outcome.reason
        cfg_target = self._target()
        append_row(self.results_path, {
            "commit": commit,
            "target": cfg_target,
            "dev_f1": f"{statistics.fmean(f1s):.6f}" if f1s else "0.000000",
            "dev_f1_std": f"{statistics.stdev(f1s):.6f}" if len(f1s) > 1 else "0.000000",
            "repeats": len(f1s) or 1,
            "memory_gb": f"{_number(s.get('peak_memory_gb')):.2f}",
            "train_s": f"{_number(s.get('train_seconds')):.1f}",
            "status": status,
            "description": description + (f" [{status}: {note}]" if note else ""),
        })  # fmt: skip

    def _target(self) -> str:
        try:
            return load_config(self.config_path).target
        except UserError:
            return ""


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def _die_with_parent() -> None:
    """Linux: the training process gets SIGKILL if the loop dies, so no orphan holds the GPU."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
