"""Offline proposer: Optuna TPE over curricula and hyperparameters. No API key needed.

The space is relative to the starting config: which sources (0-2, never two overlapping views
of one corpus) precede the target, whether two sources run one after the other or mixed, the
share of the budget they get, an LR scale, the batch size (half, same, double) and the head.
The study lives in SQLite under runs/<tag>/, so a restarted loop continues the same search.
Each trial carries its experiment's number, so a result whose `tell` was lost (a full disk, a
kill between the row and the tell) is told on the next start from that experiment's row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy.exc
import yaml

from nerlab.agents import Context, Proposal, ProposerUnavailable
from nerlab.config import ExperimentConfig, dump_config, head_key, parse_config
from nerlab.gitops import RunBranch
from nerlab.head_kinds import HEAD_KINDS
from nerlab.ledger import Ledger
from nerlab.results import repair

NONE = "none"
EXPERIMENT = "experiment"  # the trial's user attribute: the loop's experiment number


class OptunaProposer:
    name = "optuna"
    slow = False  # milliseconds: the page is rewritten once the next run has started

    def __init__(self, base: ExperimentConfig, sources: list[str], storage: Path, seed: int = 0,
                 finished: dict[int, float | None] | None = None):  # fmt: skip
        """`finished`: the tag's recorded experiments by number, mean dev F1 or None (crash)."""
        self.base = base
        target = base.views()[0]
        views = {s: base.store().view(s) for s in sources}
        self.views = {s: v for s, v in views.items() if head_key(v) != head_key(target)}
        self.sources = list(self.views)
        self.storage = storage
        storage.parent.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with self._writing("open"):
            self.study = optuna.create_study(
                study_name="autoresearch",
                storage=f"sqlite:///{storage}",
                direction="maximize",
                load_if_exists=True,
            )
            # Seeded by the trials so far: a restarted search goes on instead of replaying its
            # first proposals; the constant liar keeps trials in flight from being proposed twice.
            self.study.sampler = optuna.samplers.TPESampler(
                seed=seed + len(self.study.trials), constant_liar=True
            )
            self._settle(finished or {})

    def _settle(self, finished: dict[int, float | None]) -> None:
        """Trials left running by the last loop: their experiment's recorded result, else FAIL
        (killed mid-run, or a proposal refused before a later one took its number)."""
        running = self.study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        last = {t.user_attrs.get(EXPERIMENT): t.number for t in running}
        for t in running:
            n = t.user_attrs.get(EXPERIMENT)
            f1 = finished.get(n) if last[n] == t.number else None
            if f1 is None:
                self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(t.number, f1)

    def propose(self, ctx: Context, error: str | None = None) -> Proposal:
        with self._writing("update"):
            trial = self.study.ask()
            trial.set_user_attr(EXPERIMENT, ctx.experiment)
            raw, description = self._config(trial)
        return Proposal(yaml.safe_dump(raw, sort_keys=False), description, ref=trial)

    def observe(self, proposal: Proposal, f1: float | None) -> None:
        with self._writing("update"):
            if f1 is None:
                self.study.tell(proposal.ref, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(proposal.ref, f1)

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """A storage failure (a full disk: `database or disk is full`) is one line that stops
        the loop; the rows and the branch are consistent, and the next start resumes."""
        try:
            yield
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as e:
            raise ProposerUnavailable(
                f"{self.storage}: cannot {what} the Optuna study ({_root_cause(e)}); free disk "
                "space if it is full, then rerun the same command to resume"
            ) from None

    def _config(self, trial: optuna.Trial) -> tuple[dict, str]:
        base = self.base
        raw = yaml.safe_load(dump_config(base))
        picked: list[str] = []
        if self.sources:
            for i in range(2):
                name = trial.suggest_categorical(f"source_{i}", [NONE, *self.sources])
                if name == NONE:
                    break
                if not any(self._overlap(name, other) for other in picked):
                    picked.append(name)
        stages, text = [], "target only"
        if picked:
            share = round(trial.suggest_float("source_share", 0.1, 0.7), 3)
            mixed = len(picked) == 2 and trial.suggest_categorical("mixed", [False, True])
            if mixed:
                stages.append({"corpora": picked, "fraction": share})
                text = f"mix({'+'.join(picked)}) {share:.0%} -> target"
            else:
                stages += [{"corpora": [p], "fraction": round(share / len(picked), 3)}
                           for p in picked]  # fmt: skip
                text = f"{' -> '.join(picked)} {share:.0%} -> target"
        stages.append(
            {"corpora": [base.target], "fraction": round(1 - sum(s["fraction"] for s in stages), 6)}
        )
        raw["curriculum"] = stages
        lr_scale = trial.suggest_float("lr_scale", 0.25, 4, log=True)
        raw["optim"]["lr"] = float(f"{base.optim.lr * lr_scale:.3g}")
        half = max(1, base.optim.batch_size // 2)
        raw["optim"]["batch_size"] = trial.suggest_categorical(
            "batch_size", sorted({half, base.optim.batch_size, base.optim.batch_size * 2})
        )
        raw["head"]["kind"] = trial.suggest_categorical("head", list(HEAD_KINDS))
        parse_config(raw)  # the space only yields valid configs; fail loudly if not
        # No trial number: the loop numbers experiments ([n]) and two numberings would clash.
        description = (
            f"{text} | lr {raw['optim']['lr']:.2g} | "
            f"bs {raw['optim']['batch_size']} | {raw['head']['kind']}"
        )
        return raw, description

    def _overlap(self, a: str, b: str) -> bool:
        """Two views of one corpus that share a type (bc5cdr and bc5cdr_chem) would train on
        the same mentions twice: a source set holds at most one of them."""
        va, vb = self.views[a], self.views[b]
        return va.corpus == vb.corpus and bool(set(va.types) & set(vb.types))


def recorded_results(root: Path, tag: str, results: Path) -> dict[int, float | None]:
    """The tag's experiments that have a row: number -> mean dev F1, None for a crash."""
    git = RunBranch(root, tag)
    repair(root / results)  # a row torn by a kill is set aside, as the loop's start does
    rows = Ledger(root / results, git, "").tag_rows()
    last = {
        c: (status, f1) for c, status, f1 in zip(rows["commit"], rows["status"], rows["dev_f1"])
    }
    return {n: None if last[c][0] == "crash" else float(last[c][1])
            for n, c in git.experiments().items() if c in last}  # fmt: skip


def _root_cause(e: BaseException) -> str:
    while e.__cause__ is not None or getattr(e, "orig", None) is not None:
        e = getattr(e, "orig", None) or e.__cause__
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
