"""What a night learned about each factor it varied: the effect on the target's dev F1 of each
source corpus trained before the target, the budget share of the sources, mixed vs sequential
sources, the number of stages, the head, the learning rate, the batch size, any other config
field that changed, each with a 95% interval and the experiments behind it.

Factors are read from each experiment's config (parsed through the schema), never from its
description. One weighted least-squares fit of mean dev F1 on every varied factor at once
(weights: the seeds behind each mean) gives each effect net of the others that changed with it,
with Student-t intervals from the fit (numpy, scipy). A factor that too few experiments vary,
or that the night always changed together with others, gets no number: it is reported as such,
never ranked. Crashed experiments are counted, not fitted. The search chose its configs after
seeing results, so these are what this night's experiments show, not a controlled trial.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats as sps

from nerlab.config import ExperimentConfig

MIN_SIDE = 4  # experiments needed on each side of a factor (with / without, or off the usual)
MIN_DF = 4  # residual degrees of freedom the fit keeps, so the noise estimate means something
CONFIDENCE = 0.95
SHARE_STEP = 0.1  # the share effect is per +10% of the budget
LOG2_FIELDS = ("optim.lr", "optim.batch_size")  # multiplicative knobs: effect per doubling
NOT_FACTORS = {"target", "seed", "repeats", "curriculum"}  # the metric, noise, n, read apart
TARGET_ONLY = "(target only)"
SEVERAL = "(several sources)"

EFFECT = "effect"  # the 95% interval excludes 0
NO_EFFECT = "no clear effect"  # the interval includes 0
TOO_FEW = "too few"
ALIASED = "not separable"  # always changed together with other factors


@dataclass(frozen=True)
class Record:
    """One experiment of a night, as the findings need it."""

    n: int  # the loop's experiment number
    config: ExperimentConfig | None  # None: its config could not be read (see `problem`)
    f1: float | None  # mean dev F1 over its seeds
    seeds: int
    status: str  # keep / discard / crash / ok
    problem: str = ""


@dataclass(frozen=True)
class Effect:
    factor: str  # config feature: source:<name>, share, mixed, stages, head.kind, optim.lr, ...
    label: str  # what the number measures, e.g. "bc2gm before the target", "head.kind mlp"
    unit: str  # "" for a switch; "per doubling", "per +10% of the budget", "from 0.01 to 0.1"
    verdict: str  # EFFECT, NO_EFFECT, TOO_FEW or ALIASED
    n_with: int  # experiments with the level; for a number, above its median
    n_without: int  # those compared with; for a number, below (at: the smaller side)
    estimate: float | None = None  # change in dev F1 (a fraction; markdown shows points)
    low: float | None = None
    high: float | None = None
    note: str = ""  # why there is no number


@dataclass(frozen=True)
class SharePoint:
    """One experiment for the figure "F1 against pretraining share per source": its source (or
    TARGET_ONLY at share 0, or SEVERAL) and the share of the budget its sources had."""

    source: str
    share: float
    f1: float
    n: int


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str


@dataclass
class Findings:
    target: str | None
    experiments: int  # every recorded experiment
    fitted: int  # those in the fit
    crashed: int
    no_entity: list[int]  # experiments that scored F1 0 (found no entity): left out too
    unreadable: list[str]  # "#n: why" for configs that could not be read
    other_target: int  # experiments on another target, left out
    residual_df: int | None  # of the fit; None when there was none
    effects: list[Effect]
    answers: list[Answer]
    share_points: list[SharePoint]
    importances: dict[str, float] | None = None  # Optuna's, per search parameter (supplementary)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


# -----------------------------------------------------------------------------
# config -> factor values


def sources(cfg: ExperimentConfig) -> dict[str, float]:
    """Each corpus trained in a stage, other than the target -> the share of the budget of the
    stages it is in (a mixed stage's whole share)."""
    out: dict[str, float] = {}
    for stage in cfg.curriculum:
        for name in stage.corpora:
            if name != cfg.target:
                out[name] = out.get(name, 0.0) + stage.fraction
    return out


def factor_values(cfg: ExperimentConfig) -> dict[str, object]:
    """The config as factors: the curriculum's (sources, their share, mixed, stages) and every
    other scalar field by its dotted path (optim.lr, head.kind, budget.steps, model, ...)."""
    src = sources(cfg)
    values: dict[str, object] = {f"source:{name}": True for name in src}
    values["share"] = sum(s.fraction for s in cfg.curriculum if cfg.target not in s.corpora)
    values["mixed"] = any(len([c for c in s.corpora if c != cfg.target]) > 1
                          for s in cfg.curriculum)  # fmt: skip
    values["stages"] = len(cfg.curriculum)
    values.update(_flatten(cfg.model_dump(exclude=NOT_FACTORS)))
    return values


def _flatten(node: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# -----------------------------------------------------------------------------
# factors -> columns of the fit


@dataclass
class _Term:
    factor: str
    label: str
    unit: str
    column: np.ndarray
    n_with: int
    n_without: int


def _terms(values: list[dict[str, object]]) -> list[_Term]:
    """The columns of every factor that varies: a switch (a source, mixed) is 0/1; a categorical
    field one 0/1 column per level against the usual level; a number as itself, log2 for
    LOG2_FIELDS, per SHARE_STEP for the share, else scaled to its observed range."""
    names = list(dict.fromkeys(k for v in values for k in v))
    names.sort(key=_order)
    terms = []
    for name in names:
        column = [v.get(name, _absent(name)) for v in values]
        if len({repr(x) for x in column}) > 1:
            terms += _factor_terms(name, column, values)
    return terms


def _order(name: str) -> tuple[int, str]:
    """The order in which factors are listed: the curriculum first, then the rest by name."""
    first = ["source:", "share", "mixed", "stages"]
    for i, p in enumerate(first):
        if name.startswith(p):
            return i, name
    return len(first), name


def _absent(name: str) -> object:
    return False if name.startswith("source:") else None


def _factor_terms(name: str, column: list, values: list[dict]) -> list[_Term]:
    if name.startswith("source:"):
        x = np.array(column, dtype=float)
        return [_switch(name, f"{name[7:]} before the target", x)]
    if name == "mixed":  # only experiments with two or more sources can be one or the other
        x = np.array(column, dtype=float)
        multi = np.array([sum(k.startswith("source:") for k in v) > 1 for v in values])
        term = _switch(name, "sources mixed in one stage (vs one after the other)", x)
        term.n_without = int((multi & (x == 0)).sum())
        return [term]
    if name == "share":  # with the sources in the fit, the slope comes from their shares
        x = np.array(column, dtype=float)
        if len(np.unique(x[x > 0])) < 2:
            return []  # one share for all: "any source at all", which the sources already say
        unit = f"per +{SHARE_STEP:.0%} of the budget"
        return [_Term(name, "budget share of the sources", unit, x / SHARE_STEP,
                      *_halves(x[x > 0]))]  # fmt: skip
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column):
        return [_number(name, np.array(column, dtype=float))]
    return _categorical(name, column)


def _switch(name: str, label: str, x: np.ndarray) -> _Term:
    on = int((x == 1).sum())
    return _Term(name, label, "", x, on, len(x) - on)


def _number(name: str, x: np.ndarray) -> _Term:
    if name == "stages":
        return _Term(name, "number of stages", "per extra stage", x, *_halves(x))
    if name in LOG2_FIELDS:
        return _Term(name, name, "per doubling", np.log2(x), *_halves(x))
    lo, hi = float(x.min()), float(x.max())
    return _Term(name, name, f"from {lo:g} to {hi:g}", (x - lo) / (hi - lo), *_halves(x))


def _halves(x: np.ndarray) -> tuple[int, int]:
    """A number's two sides: above and below its median, the values at the median joining the
    smaller side (17 runs at the usual lr and 3 at another are 3 against 17)."""
    m = np.median(x)
    above, below, at = int((x > m).sum()), int((x < m).sum()), int((x == m).sum())
    return (above + at, below) if above < below else (above, below + at)


def _categorical(name: str, column: list) -> list[_Term]:
    levels = Counter(str(v) for v in column)
    usual = levels.most_common(1)[0][0]  # ties: the first seen (the baseline's)
    text = np.array([str(v) for v in column])
    others = [level for level in levels if level != usual]
    return [_Term(name, f"{name} {level} (vs {usual})", "", (text == level).astype(float),
                  levels[level], levels[usual]) for level in others]  # fmt: skip


# -----------------------------------------------------------------------------
# the fit


@dataclass
class _Fit:
    beta: np.ndarray
    cov: np.ndarray
    df: int

    def interval(self, i: int) -> tuple[float, float, float]:
        se = math.sqrt(max(self.cov[i, i], 0.0))
        half = float(sps.t.ppf((1 + CONFIDENCE) / 2, self.df)) * se
        return float(self.beta[i]), float(self.beta[i] - half), float(self.beta[i] + half)


def _wls(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> _Fit:
    """Weighted least squares with the classical covariance: a mean of k seeds weighs k."""
    s = np.sqrt(w)
    Xw, yw = X * s[:, None], y * s
    beta, *_ = np.linalg.lstsq(Xw, yw, rcond=None)
    df = len(y) - X.shape[1]
    sigma2 = float(((yw - Xw @ beta) ** 2).sum()) / df
    return _Fit(beta, sigma2 * np.linalg.pinv(Xw.T @ Xw), df)


def _select(terms: list[_Term], rows: int) -> tuple[list[_Term], dict[str, str]]:
    """The terms the fit can hold: the best-supported first; a term that adds no new direction
    to the ones taken is ALIASED with them, one that would leave fewer than MIN_DF residual
    degrees of freedom is TOO_FEW. Returns the terms taken and the reasons of the others."""
    taken: list[_Term] = []
    why: dict[str, str] = {}
    X = np.ones((rows, 1))
    # the stage count follows from the sources and mixing: the others take precedence
    for t in sorted(terms, key=lambda t: (t.factor == "stages", -min(t.n_with, t.n_without))):
        candidate = np.column_stack([X, t.column])
        if np.linalg.matrix_rank(candidate) < candidate.shape[1]:
            why[t.label] = f"{ALIASED}: always changed together with {_partners(X, t, taken)}"
        elif rows - candidate.shape[1] < MIN_DF:
            why[t.label] = (f"{TOO_FEW}: {rows} experiments cannot separate it from the "
                            f"{len(taken)} factors varied more often")  # fmt: skip
        else:
            taken.append(t)
            X = candidate
    return taken, why


def _partners(X: np.ndarray, t: _Term, taken: list[_Term]) -> str:
    coef, *_ = np.linalg.lstsq(X, t.column, rcond=None)
    names = [taken[i - 1].label for i in range(1, len(coef)) if abs(coef[i]) > 1e-8]
    return ", ".join(names) or "the intercept"


def _effects(terms: list[_Term], X_terms: list[_Term], fit: _Fit,
             why: dict[str, str]) -> list[Effect]:  # fmt: skip
    index = {t.label: i + 1 for i, t in enumerate(X_terms)}
    out = []
    for t in terms:
        base = dict(factor=t.factor, label=t.label, unit=t.unit, n_with=t.n_with,
                    n_without=t.n_without)  # fmt: skip
        side = min(t.n_with, t.n_without)
        if side < MIN_SIDE:  # the first reason: whatever the fit, one side is too thin
            note = f"{side} experiment{'' if side == 1 else 's'} on one side; {MIN_SIDE} needed"
            out.append(Effect(**base, verdict=TOO_FEW, note=note))
        elif t.label in why:
            verdict, _, note = why[t.label].partition(": ")
            out.append(Effect(**base, verdict=verdict, note=note))
        else:
            est, low, high = fit.interval(index[t.label])
            verdict = EFFECT if low > 0 or high < 0 else NO_EFFECT
            out.append(Effect(**base, verdict=verdict, estimate=est, low=low, high=high))
    return out


# -----------------------------------------------------------------------------
# records -> findings


def findings(records: list[Record]) -> Findings:
    """The findings of a night's experiments (pure: no files, no git)."""
    crashed = [r for r in records if r.status == "crash"]
    unreadable = [f"#{r.n}: {r.problem}" for r in records
                  if r.status != "crash" and r.config is None]  # fmt: skip
    scored = [r for r in records if r.status != "crash" and r.config is not None]
    targets = Counter(r.config.target for r in scored)
    target = targets.most_common(1)[0][0] if targets else None
    # F1 0: training failed to find any entity. Measured, but a failure like a crash rather
    # than a size of effect: one such row would set the noise of every interval.
    none = [r.n for r in scored if r.config.target == target and r.f1 == 0]
    rows = [r for r in scored if r.config.target == target and r.f1 != 0]
    out = Findings(target, len(records), len(rows), len(crashed), none, unreadable,
                   len(scored) - len(rows) - len(none), None, [], [],
                   share_points(rows))  # fmt: skip
    if len(rows) < MIN_DF + 2:
        many = "s" if len(rows) != 1 else ""
        out.notes.append(f"{len(rows)} scored experiment{many}: too few for any estimate")
        return out
    terms = _terms([factor_values(r.config) for r in rows])
    taken, why = _select(terms, len(rows))
    X = np.column_stack([np.ones(len(rows))] + [t.column for t in taken])
    y = np.array([r.f1 for r in rows], dtype=float)
    fit = _wls(X, y, np.array([max(r.seeds, 1) for r in rows], dtype=float))
    out.residual_df = fit.df
    out.effects = _effects(terms, taken, fit, why)
    out.answers = _answers(out, taken, fit)
    return out


def share_points(rows: list[Record]) -> list[SharePoint]:
    points = []
    for r in rows:
        src = sources(r.config)
        if len(src) <= 1:
            name, share = next(iter(src.items()), (TARGET_ONLY, 0.0))
        else:
            name = SEVERAL
            share = sum(s.fraction for s in r.config.curriculum if r.config.target not in s.corpora)
        points.append(SharePoint(name, share, float(r.f1), r.n))
    return points


def _answers(f: Findings, taken: list[_Term], fit: _Fit) -> list[Answer]:
    """The seed study's questions, where the night's configs reach them."""
    by = {e.factor: e for e in f.effects}
    out = []
    src = [e for e in f.effects if e.factor.startswith("source:")]
    if src:
        out.append(Answer(f"Which source helps {f.target} most?", _best_source(src, taken, fit)))
    if "share" in by:
        out.append(Answer("F1 against the sources' share of the budget?", _say(by["share"])))
    if "mixed" in by:
        out.append(Answer("Sequential or mixed sources?", _say(by["mixed"])))
    return out


def _best_source(src: list[Effect], taken: list[_Term], fit: _Fit) -> str:
    helps = sorted((e for e in src if e.verdict == EFFECT and e.estimate > 0),
                   key=lambda e: -e.estimate)  # fmt: skip
    hurts = [e.label.removesuffix(" before the target") for e in src
             if e.verdict == EFFECT and e.estimate < 0]  # fmt: skip
    measured = [e.label.removesuffix(" before the target") for e in src
                if e.verdict in (EFFECT, NO_EFFECT)]  # fmt: skip
    tail = f" Hurts: {', '.join(hurts)}." if hurts else ""
    if not measured:
        return f"not enough to tell: {len(src)} sources tried, none often enough.{tail}"
    if not helps:
        return (f"none distinguishably from noise (measured: {', '.join(measured)}; "
                f"{len(src) - len(measured)} other sources too rarely tried).{tail}")  # fmt: skip
    best = helps[0]
    text = f"{best.label.removesuffix(' before the target')}: {_number_text(best)}."
    if len(helps) > 1:
        second = helps[1]
        index = {t.factor: i + 1 for i, t in enumerate(taken)}
        c = np.zeros(len(fit.beta))
        c[index[best.factor]], c[index[second.factor]] = 1, -1
        diff, se = float(c @ fit.beta), math.sqrt(max(float(c @ fit.cov @ c), 0.0))
        half = float(sps.t.ppf((1 + CONFIDENCE) / 2, fit.df)) * se
        name = second.label.removesuffix(" before the target")
        if diff - half > 0:
            text += (
                f" More than {name} by {points(diff)} [{points(diff - half)}, "
                f"{points(diff + half)}]."
            )
        else:
            text += (
                f" {name} helps too ({_number_text(second)}); the night cannot tell which "
                "helps more."
            )
    return text + tail


def _say(e: Effect) -> str:
    if e.verdict == EFFECT:
        return f"{_number_text(e)}."
    if e.verdict == NO_EFFECT:
        return f"no effect distinguishable from noise ({_number_text(e)})."
    return f"not enough to tell: {e.note}."


def _number_text(e: Effect) -> str:
    unit = f" {e.unit}" if e.unit else ""
    return (f"{points(e.estimate)} F1 points{unit}, 95% interval [{points(e.low)}, "
            f"{points(e.high)}], n = {e.n_with} vs {e.n_without}")  # fmt: skip


def points(x: float) -> str:
    return f"{100 * x:+.1f}"


# -----------------------------------------------------------------------------
# markdown


def findings_markdown(f: Findings, title: str = "") -> str:
    head = f"# Findings{': ' + title if title else ''} (target {f.target or 'n/a'})"
    lines = [head, "", accounting(f), ""]
    lines += [f"Note: {n}" for n in f.notes]
    found = sorted((e for e in f.effects if e.verdict == EFFECT), key=lambda e: -abs(e.estimate))
    if found:
        lines += ["## Effects found (95% interval excludes 0)", "", *_table(found), ""]
    flat = [e for e in f.effects if e.verdict == NO_EFFECT]  # in factor order: no ranking
    if flat:
        lines += ["## No effect distinguishable from noise", "", *_table(flat), ""]
    thin = [e for e in f.effects if e.verdict in (TOO_FEW, ALIASED)]
    if thin:
        lines += ["## Not enough to tell", ""]
        lines += [f"- {e.label}: {e.verdict}: {e.note} (n = {e.n_with} vs {e.n_without})"
                  for e in thin]  # fmt: skip
        lines.append("")
    if f.answers:
        lines += ["## The seed study's questions", ""]
        lines += [f"- **{a.question}** {a.answer}" for a in f.answers]
        lines.append("")
    if f.importances:
        lines += ["## Optuna's parameter importance (supplementary)", "",
                  "fANOVA share of the explained variance per search parameter that every "
                  "trial had; no interval, no direction: read the effects above first.",
                  ""]  # fmt: skip
        lines += [f"- {k}: {v:.2f}" for k, v in f.importances.items()]
        lines.append("")
    if caveat(f):
        lines.append(caveat(f))
    return "\n".join(lines).rstrip() + "\n"


def caveat(f: Findings) -> str:
    """How to read the estimates ("" when there are none)."""
    measured = sum(e.verdict in (EFFECT, NO_EFFECT) for e in f.effects)
    if not measured:
        return ""
    return (
        f"Read with care: of {measured} estimates, about {0.05 * measured:.1f} would exclude "
        "0 by chance alone; the search picked its configs after seeing results, so these "
        "are associations in this night's experiments, not a controlled trial."
    )


def accounting(f: Findings) -> str:
    """Which experiments the findings rest on, and how they were fitted (plain text)."""
    fitted = "in the fit" if f.residual_df is not None else "scored"
    many = "s" if f.experiments != 1 else ""
    parts = [f"{f.experiments} experiment{many}: {f.fitted} {fitted}"]
    if f.crashed:
        parts.append(f"{f.crashed} crashed (left out)")
    if f.no_entity:
        numbers = ", ".join(f"#{n}" for n in f.no_entity)
        parts.append(f"{len(f.no_entity)} scored F1 0, finding no entity ({numbers}; left out "
                     "like a crash)")  # fmt: skip
    if f.unreadable:
        parts.append(f"{len(f.unreadable)} with a config that could not be read "
                     f"({'; '.join(f.unreadable)})")  # fmt: skip
    if f.other_target:
        parts.append(f"{f.other_target} on another target (left out)")
    text = ", ".join(parts) + "."
    if f.residual_df is not None:
        text += (" One weighted least-squares fit of dev F1 on every factor the night varied "
                 f"(weights: seeds per experiment; {f.residual_df} residual degrees of freedom)."
                 " Effects in F1 points with 95% intervals; n: experiments with the level vs "
                 "without (for a number: above vs below its median).")  # fmt: skip
    return text


def _table(effects: list[Effect]) -> list[str]:
    lines = ["| factor | effect (F1 points) | 95% interval | n |", "|---|---:|---|---:|"]
    for e in effects:
        label = (f"{e.label} ({e.unit})" if e.unit else e.label).replace("|", "\\|")
        lines.append(f"| {label} | {points(e.estimate)} | [{points(e.low)}, {points(e.high)}]"
                     f" | {e.n_with} vs {e.n_without} |")  # fmt: skip
    return lines


# -----------------------------------------------------------------------------
# a tag's records: its experiment refs, their configs, their rows in results.tsv


def tag_findings(root: Path, tag: str, results: Path, config: Path | None = None) -> Findings:
    """The findings of a loop tag, with Optuna's importances where its study exists."""
    out = findings(load_records(root, tag, results, config))
    db = root / "runs" / tag / "optuna.db"
    if db.exists() and out.residual_df is not None:  # too few for a fit: too few to rank
        out.importances = optuna_importances(db)
    return out


def load_records(root: Path, tag: str, results: Path, config: Path | None = None) -> list[Record]:
    """Each experiment of `tag` that has a row: its row, and its config as its commit holds it
    at `config` when given, else at the path its row or its commit's Config trailer names, else
    (older experiments) at the file the tag's experiment commits changed."""
    from git import GitCommandError

    from nerlab.analysis import tag_experiments
    from nerlab.config import parse_config_text
    from nerlab.errors import UserError
    from nerlab.gitops import RunBranch

    branch = RunBranch(root, tag)
    df = tag_experiments(results, root, tag)
    given = _relative(branch, config) if config is not None else None
    out = []
    for row in df.itertuples():
        cfg, problem = None, ""
        rel = given or row.config or branch.info(row.commit).config or _changed_most(branch)
        try:
            text = branch.repo.git.show(f"{row.commit}:{rel}")
            cfg = parse_config_text(text, source=f"{row.commit}:{rel}")
        except GitCommandError:
            problem = f"{row.commit} has no {rel}"
        except UserError as e:
            problem = str(e)
        out.append(Record(int(row.n), cfg, float(row.dev_f1), int(row.repeats), row.status,
                          problem))  # fmt: skip
    return out


def _relative(branch, config: Path) -> str:
    from nerlab.errors import UserError

    try:
        return Path(config).resolve().relative_to(branch.root).as_posix()
    except ValueError:
        raise UserError(f"--config {config}: not inside the repository {branch.root}") from None


def _changed_most(branch) -> str:
    """The file most of the tag's experiment commits changed against their parent (a baseline
    commit changes nothing): the config, for commits that do not name it."""
    from nerlab.errors import UserError

    changed = Counter(f for sha in branch.experiments().values() for f in branch.changed(sha))
    if not changed:
        raise UserError(f"tag {branch.tag!r}: no experiment changed a file; name the config "
                        "the loop edited with --config")  # fmt: skip
    return changed.most_common(1)[0][0]


def optuna_importances(db: Path) -> dict[str, float] | None:
    """Optuna's fANOVA importance of each search parameter (seeded: the same every time), or
    None when the study cannot give one (too few finished trials, no variance)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name="autoresearch", storage=f"sqlite:///{db}")
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (KeyError, ValueError, RuntimeError):
        return None
