"""Training throughput: train.py's loop against a plain transformers.Trainer, same everything else.

    python bench/throughput.py                                  # tiny model, 30 s per variant
    python bench/throughput.py --seconds 60 --repeats 3         # medians of 3 rounds
    python bench/throughput.py --model base-shape               # ModernBERT-base layers, offline
    python bench/throughput.py --model answerdotai/ModernBERT-base [--random-init]   # needs the hub

Three variants, each in its own subprocess (separate memory peaks), with the same encoder
(weights included), the same tokenised windows, batch size, learning rate, weight decay and
gradient clipping, and the same timing rule:

  (a) ours     train.py's per-step code path: length-bucketed batches (`nerlab.batches`),
               `training.Tagger` (encoder + linear `TokenHead`), `training.make_optimizer` (AdamW),
               grad clip, bf16 autocast on CUDA only;
  (b) trainer  `transformers.Trainer` as a user typically writes it: `AutoModelForTokenClassi-
               fication` from the encoder's config (encoder weights copied in; ModernBERT's head
               adds dense + GELU + LayerNorm before the classifier), a `datasets.Dataset`,
               `DataCollatorForTokenClassification`, random batches, Trainer defaults otherwise
               (fused AdamW, linear schedule), bf16 on CUDA only;
  (c) grouped  the same Trainer with length-grouped batches (`train_sampling_strategy=
               "group_by_length"` in transformers 5, `group_by_length=True` before).

Timing: the first `--warmup-steps` optimizer steps are untimed; the clock starts when the last
of them has finished (device synchronised) and stops at the first step end after `--seconds`.
Tokens are those of the timed steps: real = attention mask ones, padding = the rest.
Peak memory: CUDA max_memory_allocated, or on CPU the process's peak RSS (ru_maxrss); `Δ` is
that peak minus what was in use just before the first step (model and data, no optimizer state).
`CPU own/other`: cores kept busy by the variant and by the rest of the machine while timed. On a
small CPU any other process wrecks the figures (two torch processes on 2 cores: several times
slower), so rounds with other > 0.25 cores are marked and left out of the medians when there are
clean ones; `--wait-idle S` waits for a quiet machine before each variant.

Data: `--corpus` from `../shared/data/<corpus>/` (local CoNLL) when present, else the synthetic
corpus, prepared into $NER_AR_HOME (a temporary folder unless `--home` is given). `tiny` and
`base-shape` train their WordPiece tokenizer there; a hub id loads its own tokenizer.
The Trainer variants need `accelerate>=1.1` (a transformers requirement for Trainer).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parent process stays light: torch and transformers load in the children
    import torch
    from torch import nn

    from nerlab.config import ExperimentConfig
    from nerlab.training import Task

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TINY = "tiny"
BASE_SHAPE = "base-shape"  # ModernBertConfig defaults = the ModernBERT-base architecture
VARIANTS = {
    "ours": "(a) train.py loop, bucketed",
    "trainer": "(b) Trainer, random order",
    "grouped": "(c) Trainer, group_by_length",
}
RESULT_TAG = "BENCH_RESULT "
BUSY_OTHERS = 0.25  # cores used by other processes above which a round counts as disturbed


# -----------------------------------------------------------------------------
# measurement, shared by all variants


@dataclass
class Result:
    variant: str
    device: str
    steps: int  # timed steps
    seconds: float  # timed wall clock
    real_tokens: int
    total_tokens: int
    peak_gb: float
    delta_gb: float
    cpu_own: float  # cores this process kept busy while timed (all its threads)
    cpu_others: float  # cores the rest of the machine kept busy meanwhile (Linux; noise check)
    notes: str
    software: str  # python, torch and transformers versions of the child

    @property
    def tokens_per_s(self) -> float:
        return self.real_tokens / self.seconds if self.seconds else 0.0

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0

    @property
    def pad_fraction(self) -> float:
        return 1 - self.real_tokens / self.total_tokens if self.total_tokens else 0.0


class Meter:
    """Untimed warm-up steps, then timed steps until `seconds` have passed; counts their tokens.

    Per step: `count(attention_mask)` before or during it, `step_end()` after the optimizer step.
    """

    def __init__(self, warmup_steps: int, seconds: float, sync: Callable[[], None]):
        self.warmup, self.seconds, self.sync = warmup_steps, seconds, sync
        self.steps = 0
        self.t0 = 0.0
        self.elapsed = 0.0
        self.done = False
        self.total_tokens = 0
        self._real: list[torch.Tensor] = []  # summed at the end: no device sync per step
        self._cpu0 = (0.0, 0.0)
        self.cpu_own = self.cpu_others = 0.0

    def count(self, attention_mask: torch.Tensor) -> None:
        if self.steps >= self.warmup:
            self._real.append(attention_mask.sum())
            self.total_tokens += attention_mask.numel()

    def step_end(self) -> None:
        self.sync()  # as train.py's Progress does every step
        self.steps += 1
        now = time.perf_counter()
        if self.steps == self.warmup:
            self.t0, self._cpu0 = now, cpu_seconds()
        elif self.steps > self.warmup:
            self.elapsed = now - self.t0
            self.done = self.elapsed >= self.seconds
            if self.done:
                own, machine = (b - a for a, b in zip(self._cpu0, cpu_seconds()))
                self.cpu_own = own / self.elapsed
                self.cpu_others = max(machine - own, 0.0) / self.elapsed if machine else 0.0

    def fraction(self) -> float:
        return min(self.elapsed / self.seconds, 1.0)

    def real_tokens(self) -> int:
        return sum(int(x) for x in self._real)


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds of this process, busy CPU seconds of the whole machine or 0 if unknown)."""
    own = time.process_time()
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return own, 0.0
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return own, (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def memory_in_use_gb(device: torch.device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 1e9
    try:  # current resident set size, Linux
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError):
        return 0.0


# -----------------------------------------------------------------------------
# child process: build the shared pieces, then run one variant


@dataclass
class Setup:
    cfg: ExperimentConfig
    task: Task
    tokenizer: Any
    encoder: nn.Module | None  # None once a variant has taken it over
    device: torch.device


def build_setup(args: argparse.Namespace) -> Setup:
    import torch

    from nerlab import training
    from nerlab.config import parse_config
    from nerlab.model import load_tokenizer
    from nerlab.store import home

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    cfg = parse_config(
        {
            "target": args.corpus,
            "model": args.model,
            "data": args.data_kind,
            "seed": args.seed,
            "max_length": args.max_length,
            "budget": {"seconds": args.seconds},
            "curriculum": [{"corpora": [args.corpus], "fraction": 1.0}],
            "optim": {"lr": args.lr, "batch_size": args.batch_size},
        },
        source="bench",
    )
    offline = args.model in (TINY, BASE_SHAPE)  # tokenizer trained here on the corpus text
    texts = training.tokenizer_texts(cfg) if offline else None
    tokenizer = load_tokenizer(TINY if offline else args.model, texts, home() / "models")
    target, _ = cfg.views()
    task = training.load_task(cfg, target, "train", tokenizer)
    device = training.pick_device(args.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # as train.py does; applies to every variant
    return Setup(cfg, task, tokenizer, make_encoder(args, tokenizer), device)


def make_encoder(args: argparse.Namespace, tokenizer) -> nn.Module:
    """The encoder all variants share: train.py's `load_encoder`, or a random init by shape."""
    import torch
    from transformers import AutoConfig, AutoModel

    from nerlab.model import load_encoder, modernbert_config

    if args.model == BASE_SHAPE:  # ModernBERT-base layers over the tiny tokenizer's vocabulary
        config = modernbert_config(tokenizer)
    elif args.random_init and args.model != TINY:
        config = AutoConfig.from_pretrained(args.model)  # config.json only, no weights
    else:
        return load_encoder(args.model, tokenizer, args.seed)  # tiny, or pretrained weights
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        return AutoModel.from_config(config)


def run_ours(s: Setup, args: argparse.Namespace) -> Result:
    """train.py's step, one task, no curriculum bookkeeping or status line."""
    import torch

    from nerlab import training
    from nerlab.budget import lr_factor
    from nerlab.config import head_key

    cfg, device = s.cfg, s.device
    encoder = s.encoder.to(device)
    model = training.Tagger(encoder, [s.task.view], cfg.head.kind, cfg.head.dropout).to(device)
    optimizer = training.make_optimizer(model, cfg, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    head = model.heads[head_key(s.task.view)]
    batches = training.task_batches(
        s.task, cfg.optim.batch_size, args.seed * 1000, s.tokenizer.pad_token_id
    )
    meter = Meter(args.warmup_steps, args.seconds, synchronizer(device))
    before = memory_in_use_gb(device)
    model.train()
    while not meter.done:
        cpu_batch = next(batches)
        meter.count(cpu_batch["attention_mask"])
        batch = {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items()}
        lr = cfg.optim.lr * lr_factor(meter.fraction(), cfg.optim.schedule, cfg.optim.warmup)
        training.train_step(model, head, batch, optimizer, lr, cfg, autocast)  # train.py's own step
        meter.step_end()
    default = "for-loop" if device.type == "cpu" else "torch default"
    kind = next((k for k in ("fused", "foreach") if optimizer.defaults.get(k)), default)
    return finish("ours", meter, device, before, f"AdamW ({kind})")


def run_trainer(s: Setup, args: argparse.Namespace, grouped: bool) -> Result:
    import dataclasses

    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    device = s.device
    meter = Meter(args.warmup_steps, args.seconds, synchronizer(device))

    class CountingTrainer(Trainer):
        """A plain Trainer; the override only counts the tokens of each batch."""

        def training_step(self, model, inputs, num_items_in_batch=None):
            meter.count(inputs["attention_mask"])
            return super().training_step(model, inputs, num_items_in_batch)

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            meter.step_end()
            if meter.done:
                control.should_training_stop = True

    labels = s.task.view.labels
    config = copy.deepcopy(s.encoder.config)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        model = AutoModelForTokenClassification.from_config(config)
    # the same encoder weights as (a); a BERT-style pooler may be unexpected, nothing may miss
    missing, _ = model.base_model.load_state_dict(s.encoder.state_dict(), strict=False)
    if missing:
        raise RuntimeError(f"encoder weights do not fit {type(model).__name__}: {missing[:5]}")
    model.to(next(s.encoder.parameters()).dtype)
    s.encoder = None  # free the copy: memory figures count one model
    ids = s.task.encoded.input_ids
    train_set = Dataset.from_dict(
        {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids], "labels": s.task.labels}
    )
    cfg = s.cfg
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in fields:  # transformers >= 5.x
        sampling = {"train_sampling_strategy": "group_by_length" if grouped else "random"}
    else:
        sampling = {"group_by_length": grouped}
    training_args = TrainingArguments(
        output_dir=str(Path(os.environ["NER_AR_HOME"]) / "trainer-out"),
        per_device_train_batch_size=cfg.optim.batch_size,
        learning_rate=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
        max_grad_norm=cfg.optim.grad_clip,
        max_steps=10**7,  # the callback stops it after --seconds
        bf16=device.type == "cuda",
        use_cpu=device.type == "cpu",
        dataloader_num_workers=args.trainer_workers,
        seed=args.seed,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        **sampling,
    )
    trainer = CountingTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        data_collator=DataCollatorForTokenClassification(s.tokenizer),
        processing_class=s.tokenizer,
        callbacks=[StopAfter()],
    )
    before = memory_in_use_gb(trainer.args.device)
    trainer.train()
    optim = getattr(training_args.optim, "value", training_args.optim)
    notes = f"{optim}, {args.trainer_workers} dataloader workers"
    return finish("grouped" if grouped else "trainer", meter, trainer.args.device, before, notes)


def synchronizer(device: torch.device) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def finish(variant: str, meter: Meter, device: torch.device, before: float, notes: str) -> Result:
    from nerlab import training

    peak = training.peak_memory_gb(device)
    return Result(
        variant=variant,
        device=device.type,
        steps=meter.steps - meter.warmup,
        seconds=meter.elapsed,
        real_tokens=meter.real_tokens(),
        total_tokens=meter.total_tokens,
        peak_gb=peak,
        delta_gb=max(peak - before, 0.0),
        cpu_own=meter.cpu_own,
        cpu_others=meter.cpu_others,
        notes=notes,
        software=software(),
    )


def child(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))  # nerlab, when the package is not installed
    import transformers

    transformers.logging.set_verbosity_error()
    setup = build_setup(args)
    if args.variant == "ours":
        result = run_ours(setup, args)
    else:
        result = run_trainer(setup, args, grouped=args.variant == "grouped")
    print(RESULT_TAG + json.dumps(asdict(result)), flush=True)
    return 0


# -----------------------------------------------------------------------------
# parent process: data, one subprocess per variant and round, the table


def prepare_corpus(args: argparse.Namespace) -> tuple[str, str]:
    """Prepare `--corpus` into $NER_AR_HOME; returns (data kind, source description)."""
    from nerlab import prepare
    from nerlab.store import Store, data_root

    local = args.data_dir / args.corpus
    if not args.synthetic and local.is_dir():
        loaded, kind = prepare.load_local(args.data_dir, args.corpus), "prepared"
    else:
        loaded, kind = prepare.load_synthetic(args.corpus, seed=0), "synthetic"
    store = Store(data_root(kind))
    entry = store.entry(args.corpus)
    if not entry or entry["source_id"] != loaded.source_id:
        info = {"source": loaded.source, "source_id": loaded.source_id, "missing": loaded.missing}
        store.write(args.corpus, loaded.splits, info)
    return kind, loaded.source


def run_variant(variant: str, kind: str, env: dict[str, str]) -> Result:
    cmd = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
    cmd += ["--variant", variant, "--data-kind", kind]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    lines = [x for x in proc.stdout.splitlines() if x.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        sys.stdout.write(proc.stdout)
        raise SystemExit(f"variant {variant} failed (exit code {proc.returncode})")
    return Result(**json.loads(lines[-1][len(RESULT_TAG) :]))


def undisturbed(runs: list[Result]) -> list[Result]:
    """The rounds that other processes left alone (all of them if none was)."""
    quiet = [r for r in runs if r.cpu_others <= BUSY_OTHERS]
    return quiet or runs


def median_result(runs: list[Result]) -> Result:
    """The round with the median tokens/s (odd count) or the lower middle one."""
    ranked = sorted(runs, key=lambda r: r.tokens_per_s)
    return ranked[(len(ranked) - 1) // 2]


def machine_busy(sample_s: float = 2.0) -> float:
    """Cores kept busy on the whole machine over `sample_s` seconds (0 where unknown)."""
    a = cpu_seconds()[1]
    time.sleep(sample_s)
    return (cpu_seconds()[1] - a) / sample_s


def wait_until_idle(max_wait_s: float) -> None:
    deadline = time.monotonic() + max_wait_s
    while (busy := machine_busy()) > BUSY_OTHERS and time.monotonic() < deadline:
        print(f"  waiting: other processes keep {busy:.1f} cores busy", flush=True)


def software() -> str:
    import torch
    import transformers

    return (
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(results: dict[str, list[Result]], filter_disturbed: bool) -> None:
    """A Markdown table of each variant's median round, then the ratios of (a) to the others.

    Rounds during which other processes kept more than BUSY_OTHERS cores busy are left out when
    there are others (not with Trainer dataloader workers: they count as other processes)."""
    first = next(iter(results.values()))[0]
    print(f"\n{first.software}; device {first.device}\n")
    head = ["variant", "steps/s", "real tok/s", "padding", "peak GB", "Δ GB", "CPU own/other"]
    print("| " + " | ".join(head) + " | notes |")
    print("|---|" + "---:|" * (len(head) - 1) + "---|")
    kept = {v: undisturbed(runs) if filter_disturbed else runs for v, runs in results.items()}
    best = {v: median_result(runs) for v, runs in kept.items()}
    for v, r in best.items():
        notes = f"{r.steps} steps in {r.seconds:.1f} s; {r.notes}"
        if len(results[v]) > 1:
            values = [x.tokens_per_s for x in kept[v]]
            notes += f"; median of {len(values)}: {min(values):,.0f}-{max(values):,.0f} tok/s"
        if r.cpu_others > BUSY_OTHERS:
            notes += "; DISTURBED by other processes"
        cells = [
            VARIANTS[v],
            f"{r.steps_per_s:.2f}",
            f"{r.tokens_per_s:,.0f}",
            f"{r.pad_fraction:.1%}",
            f"{r.peak_gb:.2f}",
            f"{r.delta_gb:.2f}",
            f"{r.cpu_own:.1f} / {r.cpu_others:.1f}",
            notes,
        ]
        print("| " + " | ".join(cells) + " |")
    if "ours" in best:
        print()
        for v in ("trainer", "grouped"):
            if v in best and best[v].tokens_per_s:
                ratio = best["ours"].tokens_per_s / best[v].tokens_per_s
                print(f"real tokens/s (a) / {VARIANTS[v][:3]}: {ratio:.2f}x")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=TINY, help=f"{TINY} (default), {BASE_SHAPE}, or a hub id")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="hub id: random init from its config (AutoConfig), no weights download",
    )
    p.add_argument("--seconds", type=float, default=30.0, help="timed seconds per variant")
    p.add_argument("--warmup-steps", type=int, default=10, help="untimed steps first (>= 1)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--corpus", default="ncbi_disease")
    p.add_argument("--data-dir", type=Path, default=SHARED_DATA, help=f"default: {SHARED_DATA}")
    p.add_argument("--synthetic", action="store_true", help="use the synthetic corpus")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="rounds of all variants; median kept")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each variant, wait up to S seconds for other processes to go quiet",
    )
    p.add_argument("--trainer-workers", type=int, default=0, help="Trainer dataloader workers")
    p.add_argument("--home", type=Path, help="$NER_AR_HOME to use and keep (default: a temp dir)")
    p.add_argument("--json", type=Path, help="also write every round's figures here")
    p.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)  # child process
    p.add_argument("--data-kind", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.warmup_steps < 1:
        p.error("--warmup-steps must be at least 1")
    if args.variant is None:
        names = [v.strip() for v in args.variants.split(",") if v.strip()]
        args.variants = list(dict.fromkeys(names))  # in the order given, once each
        unknown = set(args.variants) - set(VARIANTS)
        if unknown or not args.variants:
            p.error(f"--variants: choose from {', '.join(VARIANTS)}")
    return args


def main() -> int:
    args = parse_args()
    if args.variant:
        return child(args)
    sys.path.insert(0, str(ROOT))  # nerlab, when the package is not installed
    needs_trainer = {"trainer", "grouped"} & set(args.variants)
    if needs_trainer and importlib.util.find_spec("accelerate") is None:
        raise SystemExit("the Trainer variants need accelerate: pip install 'accelerate>=1.1'")
    home = args.home or Path(tempfile.mkdtemp(prefix="ner-bench-"))
    os.environ["NER_AR_HOME"] = str(home)  # this process prepares data there; children inherit
    try:
        kind, source = prepare_corpus(args)
        print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs")
        print(
            f"model {args.model}{' (random init)' if args.random_init else ''} | "
            f"corpus {args.corpus} train ({source}) | batch {args.batch_size} | "
            f"max_length {args.max_length} | {args.warmup_steps} warm-up steps + "
            f"{args.seconds:g} s per variant | {args.repeats} round(s)",
            flush=True,
        )
        results: dict[str, list[Result]] = {v: [] for v in args.variants}
        for r in range(args.repeats):
            for v in args.variants:
                if args.wait_idle:
                    wait_until_idle(args.wait_idle)
                res = run_variant(v, kind, dict(os.environ))
                results[v].append(res)
                print(
                    f"round {r + 1} {VARIANTS[v]}: {res.tokens_per_s:,.0f} real tok/s, "
                    f"padding {res.pad_fraction:.1%}, device {res.device}, "
                    f"CPU cores busy: this run {res.cpu_own:.1f}, others {res.cpu_others:.1f}",
                    flush=True,
                )
        report(results, filter_disturbed=args.trainer_workers == 0)
        if args.json:
            rows = [
                asdict(x) | {"tokens_per_s": x.tokens_per_s} for v in results.values() for x in v
            ]
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
