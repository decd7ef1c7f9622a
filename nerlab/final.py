"""The morning after: an honest final test of a tag's best config against its baseline.

Both configs (the tag's first experiment, and its best: the experiment the branch tip ran) are
trained with K seeds, each seed its own train.py run through the same runner as the loop
(`--set seed=s --set repeats=1 --save-model DIR`, so Ray workers help when present). Each saved
model is then scored here on dev and on test: dev must equal the run's own summary (a check that
the saved model is the trained one), test is the result. This is the only place the test split
is used; decisions were all made on dev.

Layout: runs/<tag>/final/<commit>/seed<s>/ (the model, scores.json when scored) and
seed<s>.log; runs/<tag>/final.json and final.md. A seed with scores.json is done and is never
rerun; a crashed one is rerun by the next invocation.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from git import GitCommandError

from nerlab import policy
from nerlab.config import parse_config_text
from nerlab.environment import describe, of_summary
from nerlab.errors import UserError
from nerlab.files import write_atomic
from nerlab.gitops import RunBranch, parse_experiment
from nerlab.ledger import Ledger
from nerlab.metrics import Scores, score, write_predictions
from nerlab.modelio import load_tagger
from nerlab.pool import keep_running, make_pool
from nerlab.provenance import choose_config
from nerlab.runner import RunOutcome, RunSpec
from nerlab.stats import diff_ci, mean_ci
from nerlab.text import markdown as md
from nerlab.training import load_task, pick_device, predict

DEV_TOLERANCE = 1e-5  # the summary prints 6 decimals
TEST_NOTE = (
    "The test split is used here and nowhere else: every keep/revert decision was made on dev."
)


@dataclass
class Arm:
    """One config under test: the tag's baseline or its best."""

    role: str  # baseline | best
    n: int  # the experiment number in the tag
    commit: str  # the experiment commit that ran
    description: str
    config_text: str
    loop_dev_f1: float | None  # what the loop recorded for it


@dataclass
class SeedResult:
    seed: int
    status: str  # ok | crash
    reason: str = ""
    dev: dict = field(default_factory=dict)  # f1, precision, recall, per_type
    test: dict = field(default_factory=dict)
    dev_check: str = ""  # "ok", or how the rescored dev F1 differs from the run's summary
    train_seconds: float = 0.0
    device: str = ""
    environment: dict = field(default_factory=dict)  # versions and GPU (nerlab.environment)


# -----------------------------------------------------------------------------
# the tag: its baseline and its best


def tag_arms(
    root: Path, tag: str, config: Path | None, results: Path, say=print
) -> tuple[list[Arm], str]:
    """[baseline] when the best is the baseline, else [baseline, best], and the config file
    they ran: the one the tag's loop edited (a `config` that contradicts it is refused),
    relative to the repository. `config` and `results` are relative to `root`, where the user
    stands."""
    git = RunBranch(root, tag)
    experiments = git.experiments()
    if not experiments:
        raise UserError(
            f"tag {tag!r} has no experiments (no refs/autoresearch/{tag}/*); run "
            f"`python agent_loop.py --tag {tag}` first"
        )
    if git.branch not in [h.name for h in git.repo.heads]:
        raise UserError(f"tag {tag!r}: branch {git.branch} is missing, so its best is unknown")
    tip = git.repo.commit(git.branch)
    number = {c: n for n, c in experiments.items()}
    best = git.ran_as(tip)
    if parse_experiment(tip.message) is None or best not in number:
        raise UserError(f"tag {tag!r} has no kept experiment yet (not even its baseline)")
    path = choose_config(git, config, root, say)
    rows = Ledger(Path(root) / results, git, "").rows()
    baselines = [n for n in experiments if git.info(experiments[n]).role == "baseline"]
    first = max(n for n in baselines if n <= number[best])  # a restarted baseline: the last
    arms = [_arm(git, "baseline", first, experiments, path, rows)]
    if number[best] != arms[0].n:
        arms.append(_arm(git, "best", number[best], experiments, path, rows))
    return arms, path.relative_to(git.root).as_posix()


def _arm(git: RunBranch, role: str, n: int, experiments: dict[int, str], config: Path, rows) -> Arm:
    commit = experiments[n]
    kept = rows[(rows["commit"] == commit) & (rows["status"] == "keep")]
    f1 = float(kept["dev_f1"].iloc[-1]) if len(kept) else None
    try:
        text = git.show(commit, config)
    except GitCommandError:
        rel = config.relative_to(git.root).as_posix()
        raise UserError(f"{rel} is not in experiment commit {commit} of tag {git.tag!r}") from None
    return Arm(role, n, commit, git.info(commit).description, text, f1)


# -----------------------------------------------------------------------------
# running and scoring the seeds


@dataclass
class FinalOptions:
    tag: str
    root: Path
    seeds: int = 3
    config: Path | None = None  # default: the config file the tag's loop edited
    results: Path = Path("results.tsv")
    workers: int = 1
    ray_address: str | None = None


class FinalEvaluation:
    def __init__(self, opts: FinalOptions, say=print):
        if opts.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {opts.seeds}")
        self.opts, self.say = opts, say
        self.root = Path(opts.root).resolve()
        self.dir = self.root / "runs" / opts.tag
        self.arms, self.config = tag_arms(self.root, opts.tag, opts.config, opts.results, say)
        self.results: dict[str, dict[int, SeedResult]] = {a.commit: {} for a in self.arms}

    def seed_dir(self, arm: Arm, seed: int) -> Path:
        return self.dir / "final" / arm.commit / f"seed{seed}"

    def run(self) -> dict:
        """Train what is missing, score it, and return the report (also written to disk)."""
        todo = []
        for arm in self.arms:
            for seed in range(self.opts.seeds):
                done = self._load_scores(arm, seed)
                if done is None:
                    todo.append((arm, seed))
                else:
                    self.results[arm.commit][seed] = done
        if todo:
            self._train(todo)
        else:
            self.say("every seed is already done: reporting (delete runs/<tag>/final to redo)")
        report = self.report()
        write_report(self.dir, report)
        return report

    def _load_scores(self, arm: Arm, seed: int) -> SeedResult | None:
        path = self.seed_dir(arm, seed) / "scores.json"
        if not path.exists():
            return None
        try:
            return SeedResult(**json.loads(path.read_text()))
        except (ValueError, TypeError):  # torn by an older version's kill: score it again
            self.say(f"note: {path} is damaged: that seed is trained again")
            return None

    def _train(self, todo: list[tuple[Arm, int]]) -> None:
        self.say(f"final: {len(todo)} runs to train ({self.opts.seeds} seeds per config)")
        pool = make_pool(self.opts.workers, self.opts.ray_address, say=self.say)
        try:  # the workers train on while a finished seed is scored
            for (arm, seed), outcome in keep_running(pool, (self._job(*t) for t in todo)):
                self._finished(arm, seed, outcome)
        finally:
            pool.close()

    def _job(self, arm: Arm, seed: int) -> tuple[tuple[Arm, int], RunSpec, Path]:
        out = self.seed_dir(arm, seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        spec = RunSpec(
            arm.config_text,
            (f"seed={seed}", "repeats=1"),
            run_timeout(arm.config_text),
            str(self.root / "train.py"),
            save_model=str(out),
        )
        self.say(f"[{arm.role} {arm.commit} seed {seed}] training")
        return (arm, seed), spec, out.parent / f"seed{seed}.log"

    def _finished(self, arm: Arm, seed: int, outcome: RunOutcome) -> None:
        label = f"[{arm.role} {arm.commit} seed {seed}]"
        if outcome.ok:
            try:
                result = score_seed(self.seed_dir(arm, seed), outcome)
            except UserError as e:
                outcome = RunOutcome("crash", reason=f"scoring failed: {e}")
        if not outcome.ok:
            self.say(f"{label} crash: {outcome.reason}")
            self.results[arm.commit][seed] = SeedResult(seed, "crash", outcome.reason)
            return
        path = self.seed_dir(arm, seed) / "scores.json"
        write_atomic(path, json.dumps(asdict(result), indent=2) + "\n")
        self.results[arm.commit][seed] = result
        check = "" if result.dev_check == "ok" else f" | DEV CHECK: {result.dev_check}"
        self.say(f"{label} dev {result.dev['f1']:.4f} | test {result.test['f1']:.4f}{check}")

    def report(self) -> dict:
        arms = {a.role: arm_report(a, self.results[a.commit]) for a in self.arms}
        out = {
            "tag": self.opts.tag,
            "target": _target(self.arms[0]),
            "note": TEST_NOTE,
            "seeds": list(range(self.opts.seeds)),
            "config_path": self.config,  # the file the loop edits, in each commit
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "hardware": hardware(),
            "environments": environments(self.results),
            "best_is_baseline": len(self.arms) == 1,
            **arms,
            "difference": None,
        }
        if "best" in arms:
            out["difference"] = difference(arms["best"], arms["baseline"])
        return out

    def best_seed_dir(self) -> Path:
        """The best config's seed with the highest dev F1 (never chosen by test)."""
        arm = self.arms[-1]
        done = [r for r in self.results[arm.commit].values() if r.status == "ok"]
        if not done:
            raise UserError(
                f"no seed of the best config ({arm.commit}) finished: nothing to export"
            )
        top = max(done, key=lambda r: (r.dev["f1"], -r.seed))
        return self.seed_dir(arm, top.seed)


def missing_seeds(report: dict) -> list[str]:
    """`baseline seeds 1, 2` for each config whose requested seeds did not all finish."""
    out = []
    for role in ("baseline", "best"):
        if role in report:
            done = {s["seed"] for s in report[role]["seeds"] if s["status"] == "ok"}
            missing = [str(s) for s in report["seeds"] if s not in done]
            if missing:
                out.append(f"{role} seed{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return out


def run_timeout(config_text: str) -> float:
    """One seed's time limit, as the loop's (nerlab.policy)."""
    return policy.run_timeout(parse_config_text(config_text).budget)


def score_seed(model_dir: Path, outcome: RunOutcome) -> SeedResult:
    """Dev and test scores of a saved model; dev is checked against the run's own summary."""
    device = pick_device(None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    saved = load_tagger(model_dir, device)
    scores = {}
    for split in ("dev", "test"):
        task = load_task(saved.cfg, saved.view, split, saved.tokenizer)
        pred = predict(saved.model, task, saved.cfg, device, autocast, saved.tokenizer.pad_token_id)
        write_predictions(model_dir / f"{split}.predictions.txt", task.sentences, pred)
        scores[split] = score([s.tags for s in task.sentences], pred)
    summary = outcome.summary
    expected = float(summary.get("dev_f1", "nan"))
    gap = abs(scores["dev"].f1 - expected)
    check = "ok" if gap <= DEV_TOLERANCE else f"rescored {scores['dev'].f1:.6f} != {expected:.6f}"
    return SeedResult(
        int(saved.meta["seed"]),
        "ok",
        "",
        _scores(scores["dev"]),
        _scores(scores["test"]),
        check,
        float(summary.get("train_seconds", 0) or 0),
        summary.get("device", ""),
        of_summary(summary),
    )


def _scores(s: Scores) -> dict:
    return {"f1": s.f1, "precision": s.precision, "recall": s.recall, "per_type": s.per_type}


def _target(arm: Arm) -> str:
    return parse_config_text(arm.config_text).target


def environments(results: dict[str, dict[int, SeedResult]]) -> list[dict]:
    """The distinct environments the finished seeds ran in: one, unless a cluster's nodes
    differ (or seeds were trained before an upgrade)."""
    seen = [r.environment for by_seed in results.values() for r in by_seed.values()]
    return [e for i, e in enumerate(seen) if e and e not in seen[:i]]


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {os.cpu_count()} cores), no GPU"


# -----------------------------------------------------------------------------
# aggregation and the written report


def arm_report(arm: Arm, results: dict[int, SeedResult]) -> dict:
    ok = [r for _, r in sorted(results.items()) if r.status == "ok"]
    out = {
        "n": arm.n,
        "commit": arm.commit,
        "description": arm.description,
        "config": arm.config_text,
        "loop_dev_f1": arm.loop_dev_f1,
        "seeds": [asdict(r) for _, r in sorted(results.items())],
        "finished": len(ok),
        "crashed": len(results) - len(ok),
    }
    if not ok:
        return out
    for split in ("dev", "test"):
        f1s = [getattr(r, split)["f1"] for r in ok]
        ci = mean_ci(f1s)
        types = sorted({t for r in ok for t in getattr(r, split)["per_type"]})
        out[split] = {
            "f1": ci.mean,
            "f1_std": statistics.stdev(f1s) if len(f1s) > 1 else 0.0,
            "f1_ci": None if math.isnan(ci.half_width) else ci.half_width,
            "f1s": f1s,
            "precision": statistics.fmean(getattr(r, split)["precision"] for r in ok),
            "recall": statistics.fmean(getattr(r, split)["recall"] for r in ok),
            "per_type": {
                t: statistics.fmean(getattr(r, split)["per_type"].get(t, 0.0) for r in ok)
                for t in types
            },
        }
    out["dev_checks_failed"] = [r.seed for r in ok if r.dev_check != "ok"]
    return out


def difference(best: dict, base: dict) -> dict | None:
    """Test F1 of best minus baseline, Welch 95% CI (null half width below two seeds)."""
    if "test" not in best or "test" not in base:
        return None
    iv = diff_ci(best["test"]["f1s"], base["test"]["f1s"])
    hw = None if math.isnan(iv.half_width) else iv.half_width
    return {"mean": iv.mean, "half_width": hw, "significant": bool(iv.excludes_zero)}


def write_report(run_dir: Path, report: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "final.json", json.dumps(report, indent=2) + "\n")
    write_atomic(run_dir / "final.md", markdown(report) + "\n")


def fmt_points(stats: dict | None, split: str) -> str:
    """`84.1 ± 0.6 (std)` in F1 points; n/a when no seed finished."""
    if not stats or split not in stats:
        return "n/a"
    s = stats[split]
    return f"{100 * s['f1']:.2f} ± {100 * s['f1_std']:.2f}"


def fmt_diff(d: dict | None) -> str:
    if d is None:
        return "n/a"
    if d["half_width"] is None:
        return f"{100 * d['mean']:+.2f} (no CI: fewer than 2 seeds on a side)"
    sig = "significant" if d["significant"] else "not significant: the CI includes 0"
    lo, hi = 100 * (d["mean"] - d["half_width"]), 100 * (d["mean"] + d["half_width"])
    return f"{100 * d['mean']:+.2f} [95% CI {lo:+.2f}, {hi:+.2f}] ({sig})"


def software(r: dict) -> str:
    """The versions (and GPU) of each environment the seeds ran in."""
    sets = [describe(e) for e in r.get("environments") or []]
    return "software: " + ("; ".join(sets) if sets else "unknown (no seed finished)")


def cell(text: str) -> str:
    """Untrusted text for a markdown table cell or sentence (a `|` would end the cell, HTML or
    a link would reach the reader's renderer): escaped (nerlab.text.markdown)."""
    return md(text)


def markdown(r: dict) -> str:
    roles = [k for k in ("baseline", "best") if k in r]
    lines = [
        f"# Final evaluation of tag {r['tag']} (target {r['target']})",
        "",
        f"**{r['note']}**",
        "",
        f"Seeds {', '.join(map(str, r['seeds']))} per config; F1 in points, mean ± std over "
        f"seeds; hardware: {r['hardware']}; {software(r)}.",
        "",
        "| config | # | commit | seeds ok | dev F1 | test F1 | test P | test R | description |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for role in roles:
        a = r[role]
        p = f"{100 * a['test']['precision']:.2f}" if "test" in a else "n/a"
        rec = f"{100 * a['test']['recall']:.2f}" if "test" in a else "n/a"
        lines.append(
            f"| {role} | {a['n']} | {a['commit']} | {a['finished']}/{a['finished'] + a['crashed']}"
            f" | {fmt_points(a, 'dev')} | {fmt_points(a, 'test')} | {p} | {rec} | "
            f"{cell(a['description'])} |"
        )
    lines.append("")
    if r["best_is_baseline"]:
        lines.append(
            "The best is the baseline: no experiment beat it, so there is no difference to test."
        )
    else:
        lines.append(f"Test F1, best − baseline: {fmt_diff(r['difference'])}")
    types = sorted({t for role in roles for t in r[role].get("test", {}).get("per_type", {})})
    if types:
        lines += [
            "",
            "| entity type | " + " | ".join(f"{x} test F1" for x in roles) + " |",
            "|---|" + "---:|" * len(roles),
        ]
        for t in types:
            cells = [
                f"{100 * r[x]['test']['per_type'].get(t, 0):.2f}" if "test" in r[x] else "n/a"
                for x in roles
            ]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    for role in roles:
        for s in r[role]["seeds"]:
            if s["status"] != "ok":
                lines.append(f"\n{role} seed {s['seed']} crashed: {cell(s['reason'])}")
            elif s["dev_check"] != "ok":
                lines.append(f"\n{role} seed {s['seed']}: dev check failed: {s['dev_check']}")
    return "\n".join(lines)
