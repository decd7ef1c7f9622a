"""One experiment: config -> curriculum of training stages under a budget -> target dev F1.

    python train.py                                   # configs/current.yaml
    python train.py --config configs/smoke.yaml       # offline demo: tiny model, synthetic data
    python train.py --set budget.seconds=60 --set optim.lr=1e-4
    python train.py --results results.tsv --description "bc5cdr first, 30%"

A shared encoder trains stage by stage (each stage: some corpora, a share of the budget); each
corpus (or view) has its own head, and the target's head is scored on the target's dev split.
Ends with a summary block (`---`, then `key: value` lines) that tools grep.
"""

from __future__ import annotations

# ruff: noqa: E402  (the clock starts before the heavy imports: startup_seconds counts them)
import time

LAUNCHED = time.perf_counter()

from nerlab.console import no_bars_in_logs

no_bars_in_logs()  # before transformers is imported

import argparse
import math
import random
import statistics
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from nerlab.budget import Progress, lr_factor
from nerlab.config import ExperimentConfig, config_hash, dump_config, head_key, load_config
from nerlab.environment import environment
from nerlab.errors import UserError
from nerlab.gitops import short_head
from nerlab.metrics import Scores, score, write_predictions
from nerlab.model import TINY, load_encoder, load_tokenizer
from nerlab.modelio import save_tagger
from nerlab.results import append_row, results_row
from nerlab.store import home
from nerlab.summary import format_summary
from nerlab.training import (
    Tagger,
    Task,
    flops_per_token,
    freeze,
    load_task,
    make_optimizer,
    mfu_percent,
    peak_memory_gb,
    pick_device,
    predict,
    task_batches,
    tokenizer_texts,
    train_step,
)

DEFAULT_CONFIG = "configs/current.yaml"
STATUS_EVERY = 0.5  # seconds between live status updates on a terminal
LOG_LINES = 10  # status lines in a log (not a terminal): one per tenth of the budget
LOSS_WINDOW = 10  # steps behind the status line's loss and the summary's train_loss_start/end


class TrainingCrash(Exception):
    """The run failed (NaN loss, out of memory, ...): reported as status crash."""


# -----------------------------------------------------------------------------
# one run: train the curriculum, then evaluate the target


@dataclass
class RunResult:
    scores: Scores
    steps: int
    train_seconds: float
    paused_seconds: float
    tokens: int
    loss_start: float
    loss_end: float
    predictions: list[list[str]]
    first_step_at: float  # perf_counter at the first step: where startup ends
    eval_seconds: float
    flops_per_token: float


def train_and_evaluate(cfg, stage_tasks, target_task, tokenizer, device, seed,
                       save_to: Path | None = None) -> RunResult:  # fmt: skip
    random.seed(seed)
    torch.manual_seed(seed)
    encoder = load_encoder(cfg.model, tokenizer, seed, cfg.optim.dropout).to(device)
    freeze(encoder, cfg.optim.freeze_layers)
    views = {head_key(t.view): t.view for tasks in stage_tasks for t in tasks}
    model = Tagger(encoder, list(views.values()), cfg.head.kind, cfg.head.dropout).to(device)
    if cfg.compile:
        model.encoder = torch.compile(model.encoder, dynamic=True)
    optimizer = make_optimizer(model, cfg, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pad_id = tokenizer.pad_token_id
    rng = random.Random(seed)

    progress = Progress(cfg)
    losses: list[float] = []
    tokens = 0
    status = StatusLine(sys.stdout.isatty())
    first_step_at = 0.0
    model.train()
    for si, tasks in enumerate(stage_tasks):
        progress.start_stage(si)
        stage = cfg.curriculum[si]
        weights = stage.ratios or [len(t.labels) for t in tasks]
        batch_iters = [
            task_batches(t, cfg.optim.batch_size, seed * 1000 + i, pad_id)
            for i, t in enumerate(tasks)
        ]
        while not progress.stage_done():
            progress.step_start()  # the clock covers data, forward, backward and update
            first_step_at = first_step_at or time.perf_counter()
            k = rng.choices(range(len(tasks)), weights)[0]
            task = tasks[k]
            cpu_batch = next(batch_iters[k])
            tokens += int(cpu_batch["attention_mask"].sum())  # counted on the host: no GPU sync
            batch = {key: v.to(device, non_blocking=True) for key, v in cpu_batch.items()}
            lr = cfg.optim.lr * lr_factor(progress.fraction(), cfg.optim.schedule, cfg.optim.warmup)
            head = model.heads[head_key(task.view)]
            loss_value = train_step(model, head, batch, optimizer, lr, cfg, autocast)
            paused = progress.step_end(sync)
            if paused:
                status.pause(progress.steps, paused)
            if not math.isfinite(loss_value):
                raise TrainingCrash(
                    f"loss is {loss_value} at step {progress.steps} "
                    f"(stage {si + 1}, {task.view.spec}, lr {lr:.3g})"
                )
            losses.append(loss_value)
            status.update(progress, si, losses, lr, tokens)
    if sys.stdout.isatty():
        print()

    t_eval = time.perf_counter()
    predictions = predict(model, target_task, cfg, device, autocast, pad_id)
    scores = score([s.tags for s in target_task.sentences], predictions)
    if save_to is not None:
        extra = {"seed": seed, "eval_f1": scores.f1}  # on the split evaluated
        save_tagger(save_to, model, tokenizer, dump_config(cfg), target_task.view, extra)
    n = min(LOSS_WINDOW, len(losses))
    lengths = [length for t in views_tasks(stage_tasks) for length in t.lengths]
    return RunResult(
        scores,
        progress.steps,
        progress.train_seconds,
        progress.paused_seconds,
        tokens,
        statistics.fmean(losses[:n]),
        statistics.fmean(losses[-n:]),
        predictions,
        first_step_at,
        time.perf_counter() - t_eval,
        flops_per_token(encoder, statistics.fmean(lengths)),
    )


def views_tasks(stage_tasks: list[list[Task]]) -> list[Task]:
    return list({head_key(t.view): t for tasks in stage_tasks for t in tasks}.values())


class StatusLine:
    """Live progress. A terminal gets one line redrawn every STATUS_EVERY seconds; a log gets
    plain lines: one at step LOSS_WINDOW, whose loss is the summary's train_loss_start, and one
    per tenth of the budget, so even a short run's log shows its progress."""

    def __init__(self, tty: bool):
        self.tty = tty
        self.last_time = 0.0
        self.last_tenth = 0

    def update(self, progress: Progress, stage: int, losses: list[float], lr: float,
               tokens: int) -> None:  # fmt: skip
        if not self._due(progress):
            return
        tok_s = tokens / progress.train_seconds if progress.train_seconds else 0.0
        unit = "steps" if progress.by_steps else "s"
        line = (
            f"stage {stage + 1} | step {progress.steps} | loss ({LOSS_WINDOW}-step mean) "
            f"{statistics.fmean(losses[-LOSS_WINDOW:]):.4f} | lr {lr:.2e} | {tok_s:,.0f} tok/s | "
            f"{progress.remaining():.0f} {unit} left"
        )
        print(f"\r{line}   " if self.tty else line, end="" if self.tty else "\n", flush=True)

    def pause(self, step: int, seconds: float) -> None:
        """A step judged a pause (nerlab.budget) is said, on a line of its own."""
        print(("\n" if self.tty else "") + f"paused: step {step} took {seconds:.1f} s more than "
              "the recent steps (a suspended process or a stalled machine?): left out of the "
              "budget", flush=True)  # fmt: skip

    def _due(self, progress: Progress) -> bool:
        if self.tty:
            now = time.perf_counter()
            if now - self.last_time < STATUS_EVERY and progress.steps > 1:
                return False
            self.last_time = now
            return True
        tenth = int(LOG_LINES * progress.run_used / progress.total)
        if tenth <= self.last_tenth and progress.steps != LOSS_WINDOW:
            return False
        self.last_tenth = max(tenth, self.last_tenth)
        return True


# -----------------------------------------------------------------------------
# main: config -> data -> runs (one per seed) -> summary block


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"default: {DEFAULT_CONFIG}")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. optim.lr=1e-4 (repeatable)",
    )
    p.add_argument(
        "--eval-split",
        default="dev",
        choices=["dev", "test"],
        help="test is for a final report only, never for decisions",
    )
    p.add_argument("--predictions", type=Path, help="write `token gold pred` lines here")
    p.add_argument("--results", type=Path, help="append this run as a row of a results.tsv")
    p.add_argument("--description", default="", help="the row's description")
    p.add_argument(
        "--save-model",
        type=Path,
        metavar="DIR",
        help="save the first seed's encoder, target head and tokenizer here (nerlab.modelio)",
    )
    p.add_argument("--device", help="cuda, cuda:N, mps or cpu (default: the best available)")
    args = p.parse_args()
    t0 = LAUNCHED
    summary: dict = {
        "dev_f1": 0.0,
        "dev_precision": 0.0,
        "dev_recall": 0.0,
        "dev_f1_std": 0.0,
        "f1_seeds": "",
        "eval_split": args.eval_split,
        "repeats": 0,
        "startup_seconds": 0.0,
        "eval_seconds": 0.0,
        "train_seconds": 0.0,
        "paused_seconds": 0.0,
        "steps": 0,
        "tokens_per_sec": 0.0,
        "peak_memory_gb": 0.0,
        "config_sha256": _config_sha256(args.config),  # record.py matches it with the commit
    }
    cfg = None
    try:
        cfg = load_config(args.config, args.set)  # a config error stops here, before any model
        summary["repeats"] = cfg.repeats
        device = pick_device(args.device)
        summary["device"] = device.type
        summary.update(environment(device))
        if device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 matmuls
        summary.update(run(cfg, args, device))
        summary["status"] = "ok"
    except (UserError, TrainingCrash) as e:
        summary.update(status="crash", reason=str(e), cause=getattr(e, "cause", ""))
    except torch.OutOfMemoryError as e:
        summary.update(status="crash", reason=f"out of memory: {str(e).splitlines()[0]}")
    except Exception as e:  # hub, tokenizer, compiler, CUDA...: still a summary and a row
        traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0]
        summary.update(status="crash", reason=f"{type(e).__name__}: {first}"[:300])
    summary["total_seconds"] = time.perf_counter() - t0
    if "device" in summary and summary["status"] == "crash":
        summary["peak_memory_gb"] = peak_memory_gb(torch.device(summary["device"]))
    summary.setdefault("device", "")
    for key, value in environment().items():  # a config error still names its environment
        summary.setdefault(key, value)
    print(format_summary(summary), flush=True)
    if args.results:
        row = results_row(summary, commit=short_head(Path.cwd()), target=cfg.target if cfg else "",
                          description=args.description)  # fmt: skip
        append_row(args.results, row)
    return 0 if summary["status"] == "ok" else 1


def _config_sha256(path: str) -> str:
    try:
        return config_hash(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return ""  # load_config says what is wrong with the file


def run(cfg: ExperimentConfig, args, device: torch.device) -> dict:
    target, stage_views = cfg.views()
    print(f"target {target.spec} ({args.eval_split}) | model {cfg.model} | device {device.type}")
    texts = tokenizer_texts(cfg) if cfg.model == TINY else None
    tokenizer = load_tokenizer(cfg.model, texts, home() / "models")
    tasks: dict[str, Task] = {}
    for views in stage_views:
        for v in views:
            tasks.setdefault(head_key(v), load_task(cfg, v, "train", tokenizer))
    stage_tasks = [[tasks[head_key(v)] for v in views] for views in stage_views]
    target_task = load_task(cfg, target, args.eval_split, tokenizer)
    for i, (stage, views) in enumerate(zip(cfg.curriculum, stage_views)):
        names = ", ".join(f"{v.spec} ({len(tasks[head_key(v)].labels)} windows)" for v in views)
        print(f"stage {i + 1}: {stage.fraction:.0%} of the budget on {names}")

    runs: list[RunResult] = []
    for r in range(cfg.repeats):
        seed = cfg.seed + r
        save_to = args.save_model if r == 0 else None
        result = train_and_evaluate(cfg, stage_tasks, target_task, tokenizer, device, seed, save_to)
        runs.append(result)
        print(
            f"seed {seed}: {args.eval_split}_f1 {result.scores.f1:.6f} | steps {result.steps} | "
            f"loss {result.loss_start:.4f} -> {result.loss_end:.4f}"
        )
        if r == 0 and args.predictions:  # the first seed's predictions
            write_predictions(args.predictions, target_task.sentences, result.predictions)
    f1s = [x.scores.f1 for x in runs]
    train_s = sum(x.train_seconds for x in runs)
    tokens_per_sec = sum(x.tokens for x in runs) / train_s if train_s else 0.0
    out = {
        "dev_f1": statistics.fmean(f1s),
        "dev_precision": statistics.fmean(x.scores.precision for x in runs),
        "dev_recall": statistics.fmean(x.scores.recall for x in runs),
        "dev_f1_std": statistics.stdev(f1s) if len(f1s) > 1 else 0.0,
        "f1_seeds": ",".join(f"{f:.6f}" for f in f1s),  # what the loop's decisions read
        "startup_seconds": runs[0].first_step_at - LAUNCHED,
        "eval_seconds": statistics.fmean(x.eval_seconds for x in runs),
        "train_seconds": statistics.fmean(x.train_seconds for x in runs),
        "paused_seconds": sum(x.paused_seconds for x in runs),  # all seeds: time lost
        "steps": round(statistics.fmean(x.steps for x in runs)),
        "tokens_per_sec": tokens_per_sec,
        "peak_memory_gb": peak_memory_gb(device),
        "train_loss_start": statistics.fmean(x.loss_start for x in runs),
        "train_loss_end": statistics.fmean(x.loss_end for x in runs),
    }
    for etype in runs[0].scores.per_type:
        out[f"f1_{etype}"] = statistics.fmean(x.scores.per_type.get(etype, 0.0) for x in runs)
    mfu = mfu_percent(runs[0].flops_per_token * tokens_per_sec, device)
    if mfu is not None:  # CUDA devices of known peak only
        out["mfu_percent"] = mfu
    return out


if __name__ == "__main__":
    sys.exit(main())
