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

import argparse
import math
import random
import resource
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nerlab.batches import endless, eval_order, padded
from nerlab.budget import Progress, lr_factor
from nerlab.config import ExperimentConfig, head_key, load_config
from nerlab.conll import Sentence, restrict_tags, to_iob2
from nerlab.corpora import View
from nerlab.errors import UserError
from nerlab.heads import TokenHead
from nerlab.metrics import Scores, score, write_predictions
from nerlab.model import TINY, load_encoder, load_tokenizer
from nerlab.results import append_row
from nerlab.store import home
from nerlab.summary import format_summary
from nerlab.tokenize import Encoded, cached_encode

DEFAULT_CONFIG = "configs/current.yaml"
STATUS_EVERY = 0.5  # seconds between live status updates on a terminal


class TrainingCrash(Exception):
    """The run failed (NaN loss, out of memory, ...): reported as status crash."""


# -----------------------------------------------------------------------------
# data: one Task per corpus view used, holding its tokenised windows and labels


@dataclass
class Task:
    view: View
    sentences: list[Sentence]  # tags narrowed to the view's types
    encoded: Encoded
    labels: list[list[int]]

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.encoded.input_ids]


def load_task(cfg: ExperimentConfig, view: View, split: str, tokenizer) -> Task:
    store = cfg.store()
    raw = store.read(view.corpus, split)
    keep = frozenset(view.types)
    sentences = [Sentence(s.tokens, restrict_tags(s.tags, keep)) for s in raw]
    fingerprint = f"{cfg.data}:{view.corpus}:{split}:{store.fingerprint(view.corpus, split)}"
    encoded = cached_encode(raw, tokenizer, cfg.max_length, home() / "tokenized", fingerprint)
    label_ids = {tag: i for i, tag in enumerate(view.labels)}
    return Task(view, sentences, encoded, encoded.labels(sentences, label_ids))


def tokenizer_texts(cfg: ExperimentConfig) -> list[Sentence]:
    """The tiny tokenizer learns its vocabulary from every prepared train split, so all
    experiments on one data root share one tokenizer whatever their curriculum."""
    store = cfg.store()
    store.require(cfg.corpora())  # else a deleted data root reads as no text, a vaguer error
    return [
        s
        for name, entry in sorted(store.manifest().items())
        if "train" in entry["splits"]
        for s in store.read(name, "train")
    ]


# -----------------------------------------------------------------------------
# model: a shared encoder and one head per view


class Tagger(nn.Module):
    def __init__(self, encoder: nn.Module, views: list[View], kind: str, dropout: float):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict(
            {head_key(v): TokenHead(hidden, v.labels, kind, dropout) for v in views}
        )

    def states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.last_hidden_state


def freeze(encoder: nn.Module, n_layers: int) -> None:
    """Freeze the embeddings and the first n encoder layers (ModernBERT or BERT layout)."""
    if n_layers == 0:
        return
    layers = getattr(encoder, "layers", None) or encoder.encoder.layer
    for module in [encoder.embeddings, *layers[:n_layers]]:
        module.requires_grad_(False)


def make_optimizer(model: nn.Module, cfg: ExperimentConfig, device: torch.device):
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [  # no weight decay on biases and norm weights, as in BERT fine-tuning
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.optim.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    # fused kernels exist for CUDA, CPU and MPS; the default for-loop AdamW is slower on CPU
    fused = device.type in ("cuda", "cpu", "mps")
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, fused=fused)


def pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    # CPU (and MPS): the process's peak resident memory; ru_maxrss is in KiB on Linux
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


# -----------------------------------------------------------------------------
# one run: train the curriculum, then evaluate the target


@dataclass
class RunResult:
    scores: Scores
    steps: int
    train_seconds: float
    tokens: int
    loss_start: float
    loss_end: float
    predictions: list[list[str]]


def train_and_evaluate(cfg, stage_tasks, target_task, tokenizer, device, seed) -> RunResult:
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
    last_status = 0.0
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
            k = rng.choices(range(len(tasks)), weights)[0]
            task = tasks[k]
            cpu_batch = next(batch_iters[k])
            tokens += int(cpu_batch["attention_mask"].sum())  # counted on the host: no GPU sync
            batch = {key: v.to(device, non_blocking=True) for key, v in cpu_batch.items()}
            lr = cfg.optim.lr * lr_factor(progress.fraction(), cfg.optim.schedule, cfg.optim.warmup)
            head = model.heads[head_key(task.view)]
            loss_value = train_step(model, head, batch, optimizer, lr, cfg, autocast)
            progress.step_end(sync)
            if not math.isfinite(loss_value):
                raise TrainingCrash(
                    f"loss is {loss_value} at step {progress.steps} "
                    f"(stage {si + 1}, {task.view.spec}, lr {lr:.3g})"
                )
            losses.append(loss_value)
            last_status = show_status(progress, si, loss_value, lr, tokens, last_status)
    if sys.stdout.isatty():
        print()

    predictions = predict(model, target_task, cfg, device, autocast, pad_id)
    scores = score([s.tags for s in target_task.sentences], predictions)
    n = max(1, min(10, len(losses) // 4))
    return RunResult(
        scores,
        progress.steps,
        progress.train_seconds,
        tokens,
        statistics.fmean(losses[:n]),
        statistics.fmean(losses[-n:]),
        predictions,
    )


def train_step(model, head, batch, optimizer, lr: float, cfg, autocast) -> float:
    """One optimisation step on one batch; returns the loss (its `.item()` also syncs)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast:
        states = model.states(batch)
    loss = head.loss(states.float(), batch["labels"])
    loss.backward()
    if cfg.optim.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def task_batches(task: Task, batch_size: int, seed: int, pad_id: int):
    for idx in endless(task.lengths, batch_size, seed):
        ids = [task.encoded.input_ids[i] for i in idx]
        yield padded(ids, [task.labels[i] for i in idx], pad_id)


def show_status(progress: Progress, stage: int, loss: float, lr: float, tokens: int, last: float):
    now = time.perf_counter()
    tty = sys.stdout.isatty()
    every = STATUS_EVERY if tty else 30.0
    if now - last < every and progress.steps > 1:
        return last
    tok_s = tokens / progress.train_seconds if progress.train_seconds else 0.0
    unit = "steps" if progress.by_steps else "s"
    line = (
        f"stage {stage + 1} | step {progress.steps} | loss {loss:.4f} | lr {lr:.2e} | "
        f"{tok_s:,.0f} tok/s | {progress.remaining():.0f} {unit} left"
    )
    print(f"\r{line}   " if tty else line, end="" if tty else "\n", flush=True)
    return now


@torch.no_grad()
def predict(model, task: Task, cfg, device, autocast, pad_id) -> list[list[str]]:
    """Every word of every target sentence gets a tag (windows stitched back per sentence)."""
    model.eval()
    head = model.heads[head_key(task.view)]
    enc = task.encoded
    out: list[list[str]] = [["O"] * len(s.tokens) for s in task.sentences]
    for idx in eval_order(task.lengths, cfg.optim.batch_size * 2):
        batch = padded([enc.input_ids[i] for i in idx], [enc.word_index[i] for i in idx], pad_id)
        words = batch.pop("labels")  # word index per subword, -100 where none
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast:
            states = model.states(batch)
        tags = head.decode(states.float(), (words >= 0).to(device))
        for row, i in enumerate(idx):
            positions = [w for w in enc.word_index[i] if w >= 0]
            for w, tag in zip(positions, tags[row]):
                out[enc.sentence[i]][w] = tag
    # IOB2 repair on whole sentences, so an entity that spans two windows stays one entity
    return [to_iob2(tags)[0] for tags in out]


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
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    args = p.parse_args()
    t0 = time.perf_counter()
    summary: dict = {
        "dev_f1": 0.0,
        "dev_precision": 0.0,
        "dev_recall": 0.0,
        "dev_f1_std": 0.0,
        "repeats": 0,
        "train_seconds": 0.0,
        "steps": 0,
        "tokens_per_sec": 0.0,
        "peak_memory_gb": 0.0,
    }
    cfg = None
    try:
        cfg = load_config(args.config, args.set)  # a config error stops here, before any model
        summary["repeats"] = cfg.repeats
        device = pick_device(args.device)
        summary["device"] = device.type
        if device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 matmuls
        summary.update(run(cfg, args, device))
        summary["status"] = "ok"
    except (UserError, TrainingCrash) as e:
        summary.update(status="crash", reason=str(e))
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
    print(format_summary(summary), flush=True)
    if args.results:
        record(args, cfg, summary)
    return 0 if summary["status"] == "ok" else 1


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
        result = train_and_evaluate(cfg, stage_tasks, target_task, tokenizer, device, seed)
        runs.append(result)
        print(
            f"seed {seed}: {args.eval_split}_f1 {result.scores.f1:.6f} | steps {result.steps} | "
            f"loss {result.loss_start:.4f} -> {result.loss_end:.4f}"
        )
        if r == 0 and args.predictions:  # the first seed's predictions
            write_predictions(args.predictions, target_task.sentences, result.predictions)
    f1s = [x.scores.f1 for x in runs]
    train_s = sum(x.train_seconds for x in runs)
    out = {
        "dev_f1": statistics.fmean(f1s),
        "dev_precision": statistics.fmean(x.scores.precision for x in runs),
        "dev_recall": statistics.fmean(x.scores.recall for x in runs),
        "dev_f1_std": statistics.stdev(f1s) if len(f1s) > 1 else 0.0,
        "train_seconds": statistics.fmean(x.train_seconds for x in runs),
        "steps": round(statistics.fmean(x.steps for x in runs)),
        "tokens_per_sec": sum(x.tokens for x in runs) / train_s if train_s else 0.0,
        "peak_memory_gb": peak_memory_gb(device),
        "train_loss_start": statistics.fmean(x.loss_start for x in runs),
        "train_loss_end": statistics.fmean(x.loss_end for x in runs),
    }
    for etype in runs[0].scores.per_type:
        out[f"f1_{etype}"] = statistics.fmean(x.scores.per_type.get(etype, 0.0) for x in runs)
    if args.eval_split == "test":  # keys stay the same; say loudly what they measure
        out["eval_split"] = "test"
    return out


def record(args, cfg: ExperimentConfig | None, summary: dict) -> None:
    from nerlab.gitops import short_head

    append_row(
        args.results,
        {
            "commit": short_head(Path.cwd()),
            "target": cfg.target if cfg else "",
            "dev_f1": f"{summary['dev_f1']:.6f}",
            "dev_f1_std": f"{summary['dev_f1_std']:.6f}",
            "repeats": summary["repeats"],
            "memory_gb": f"{summary['peak_memory_gb']:.2f}",
            "train_s": f"{summary['train_seconds']:.1f}",
            "status": summary["status"],
            "description": args.description
            + (f" [crash: {summary['reason']}]" if summary.get("reason") else ""),
        },
    )


if __name__ == "__main__":
    sys.exit(main())
