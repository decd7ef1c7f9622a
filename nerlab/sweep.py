"""The transfer matrix: every (source -> target) curriculum against the target-only baseline.

    python -m nerlab.sweep matrix --targets ncbi_disease,bc5cdr_chem \\
        --sources bc5cdr_chem,ncbi_disease,linnaeus --repeats 3 --pretrain-fraction 0.5 \\
        --base-config configs/current.yaml [--results matrix.tsv] [--set budget.seconds=120]
    python -m nerlab.sweep matrix ... --workers 4                  # 4 runs at a time on Ray
    python -m nerlab.sweep matrix ... --workers 8 --ray-address auto   # an existing cluster

For each target: the baseline (the whole budget on the target) and, for each source, two stages
(the source for --pretrain-fraction of the budget, then the target), each with --repeats seeds
(base seed + r). Every run is a `train.py` subprocess; its row goes to a matrix file (its own
schema, MATRIX_COLUMNS), written by this process only. Runs are ordered seed by seed, so an
interrupted sweep leaves whole matrices with fewer seeds. Re-running the same command skips the
cells (target, source, seed) that already have an `ok` row; crashed cells run again.

A matrix file holds one protocol: the base config with its overrides and the pretrain fraction
(target, curriculum, seed and repeats aside). Extending a file with another protocol is refused,
so a changed budget cannot silently mix into old rows.

Ray (`pip install -e .[ray]`) is imported only for --workers > 1 or --ray-address. Each run is
one task with one GPU when the cluster has GPUs, else one CPU. On a cluster every node needs
this repository, its environment and the prepared data at the same paths as the driver.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from nerlab import policy, signals
from nerlab.config import ExperimentConfig, dump_config, head_key, load_config, parse_config
from nerlab.errors import UserError, run_cli
from nerlab.pool import keep_running, make_pool
from nerlab.results import BASELINE, append_matrix_row, read_matrix, repair
from nerlab.runner import RunOutcome, RunSpec

PER_RUN = ("target", "curriculum", "seed", "repeats")  # what the sweep sets; not the protocol


# -----------------------------------------------------------------------------
# the plan: which runs, with which configs


@dataclass(frozen=True)
class Cell:
    target: str
    source: str  # BASELINE for the target-only run
    seed: int

    def __str__(self) -> str:
        via = "target only" if self.source == BASELINE else f"<- {self.source}"
        return f"{self.target} {via}, seed {self.seed}"


@dataclass(frozen=True)
class Run:
    cell: Cell
    config_yaml: str  # the composed config, as train.py reads it


def protocol_of(base: ExperimentConfig, fraction: float) -> str:
    """Short hash of what every cell of one matrix shares: the base config (per-run fields
    aside) and the pretrain fraction."""
    shared = base.model_dump(mode="json", exclude=set(PER_RUN))
    blob = json.dumps({"config": shared, "fraction": fraction}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def compose(base: ExperimentConfig, cell: Cell, fraction: float) -> str:
    """The config of one cell as YAML (validated: unknown corpora fail before any run)."""
    raw = base.model_dump(mode="json", exclude_none=True)
    if cell.source == BASELINE:
        curriculum = [{"corpora": [cell.target], "fraction": 1.0}]
    else:
        curriculum = [
            {"corpora": [cell.source], "fraction": fraction},
            {"corpora": [cell.target], "fraction": 1.0 - fraction},
        ]
    raw.update(target=cell.target, curriculum=curriculum, seed=cell.seed, repeats=1)
    cfg = parse_config(raw, source=f"matrix cell ({cell})")
    cfg.views()
    return dump_config(cfg)


def check_corpora(base: ExperimentConfig, targets: list[str], sources: list[str]) -> list[str]:
    """Sources that can be trained on; a prepared corpus without a train split is skipped with
    a note, an unprepared one (or a target without train and dev) is an error."""
    store = base.store()
    for name in targets:
        missing = [s for s in ("train", "dev") if s not in _splits(base, name)]
        if missing:
            raise UserError(f"target {name!r} has no {' or '.join(missing)} split in {store.root}")
    usable = []
    for name in sources:
        if "train" in _splits(base, name):
            usable.append(name)
        else:
            print(f"skipping source {name}: it has no train split in {store.root}")
    return usable


def _splits(base: ExperimentConfig, name: str) -> dict:
    store = base.store()
    corpus = store.view(name).corpus
    entry = store.entry(corpus)
    if entry is None:
        hint = " --synthetic" if base.data == "synthetic" else ""
        raise UserError(
            f"corpus {corpus!r} is not prepared in {store.root}; "
            f"run: python prepare_data.py --corpora {corpus}{hint}"
        )
    return entry["splits"]


def plan(
    base: ExperimentConfig, targets: list[str], sources: list[str], repeats: int
) -> list[Cell]:
    """Seed-major order: all cells of seed 0 first, so a partial sweep is a whole matrix."""
    store = base.store()
    key = {name: head_key(store.view(name)) for name in [*targets, *sources]}
    cells = []
    for r in range(repeats):
        for target in targets:
            cells.append(Cell(target, BASELINE, base.seed + r))
            # a source identical to the target (same corpus and types) is the baseline itself
            cells += [Cell(target, s, base.seed + r) for s in sources if key[s] != key[target]]
    return cells


def done_cells(path: Path, protocol: str) -> set[Cell]:
    """Cells with an `ok` row; rows of another protocol make the file unusable for this one."""
    if not path.exists() or path.stat().st_size == 0:
        return set()
    repair(path)  # a row torn by a killed sweep is set aside, so the sweep can resume
    df = read_matrix(path)
    other = sorted(set(df["protocol"]) - {protocol})
    if other:
        raise UserError(
            f"{path} holds runs of another protocol ({', '.join(other)}; this one is {protocol}):"
            " the base config, --set overrides or --pretrain-fraction differ. Use another"
            " --results file, or the settings those rows were made with"
        )
    ok = df[df["status"] == "ok"]
    return {Cell(t, s, int(seed)) for t, s, seed in zip(ok["target"], ok["source"], ok["seed"])}


# -----------------------------------------------------------------------------
# one run's row


def outcome_row(cell: Cell, outcome: RunOutcome, protocol: str, fraction: float) -> dict:
    """A matrix row from train.py's summary block, or a crash row saying why there is none."""
    s = outcome.summary
    return {
        "protocol": protocol,
        "target": cell.target,
        "source": cell.source,
        "fraction": fraction,
        "seed": cell.seed,
        "dev_f1": s.get("dev_f1", "") if outcome.ok else 0.0,
        "train_s": s.get("train_seconds", ""),
        "total_s": s.get("total_seconds", ""),
        "steps": s.get("steps", ""),
        "memory_gb": s.get("peak_memory_gb", ""),
        "device": s.get("device", ""),
        "status": outcome.status,
        "reason": outcome.reason,
    }


# -----------------------------------------------------------------------------
# the command


def sweep(args: argparse.Namespace) -> int:
    if not 0 < args.pretrain_fraction < 1:
        raise UserError(f"--pretrain-fraction must be in (0, 1), got {args.pretrain_fraction}")
    if args.repeats < 1 or args.workers < 1:
        raise UserError("--repeats and --workers must be at least 1")
    targets, sources = _names(args.targets, "--targets"), _names(args.sources, "--sources")
    base = load_config(args.base_config, args.set)
    fraction = args.pretrain_fraction
    protocol = protocol_of(base, fraction)
    sources = check_corpora(base, targets, sources)
    cells = plan(base, targets, sources, args.repeats)
    results = Path(args.results)
    done = done_cells(results, protocol)
    runs = [Run(c, compose(base, c, fraction)) for c in cells if c not in done]
    print(
        f"matrix: {len(cells)} cells ({len(targets)} targets; baseline + {len(sources)} sources, "
        f"a target never its own; {args.repeats} seeds): {len(cells) - len(runs)} done in "
        f"{results}, {len(runs)} to run (protocol {protocol})"
    )
    if args.dry_run or not runs:
        for run in runs:
            print(f"  would run: {run.cell}")
        return 0
    logs = Path(args.logs) if args.logs else Path("runs") / results.stem
    logs.mkdir(parents=True, exist_ok=True)
    pool = make_pool(args.workers, args.ray_address)
    t0, crashes = time.perf_counter(), 0
    timeout = args.timeout or policy.run_timeout(base.budget)  # the loop's, when not given
    jobs = (_job(run, logs, timeout) for run in runs)
    try:
        for i, (run, outcome) in enumerate(keep_running(pool, jobs), 1):
            row = outcome_row(run.cell, outcome, protocol, fraction)
            append_matrix_row(results, row)
            crashes += row["status"] == "crash"
            note = f"crash: {row['reason']}" if row["status"] == "crash" else "ok"
            print(f"[{i}/{len(runs)}] {run.cell}: dev_f1 {float(row['dev_f1']):.4f} ({note})")
    finally:
        pool.close()
    print(
        f"{len(runs)} runs in {time.perf_counter() - t0:.0f} s ({crashes} crashed) -> {results}; "
        f"logs in {logs}/\nanalyse: python analyze.py matrix --results {results}"
    )
    return 0


def _names(text: str, flag: str) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise UserError(f"{flag}: give comma-separated corpus names, e.g. ncbi_disease,bc5cdr_chem")
    return names


def _job(run: Run, logs: Path, timeout: float) -> tuple[Run, RunSpec, Path]:
    c = run.cell
    name = f"{c.target}__{'baseline' if c.source == BASELINE else c.source}__seed{c.seed}"
    return run, RunSpec(run.config_yaml, timeout=timeout), logs / f"{name.replace(':', '-')}.log"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m nerlab.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("matrix", help="source -> target transfer matrix with repeats")
    m.add_argument("--targets", required=True, help="comma-separated corpora or views")
    m.add_argument("--sources", required=True, help="comma-separated corpora or views")
    m.add_argument("--repeats", type=int, default=3, help="seeds per cell (default 3)")
    m.add_argument(
        "--pretrain-fraction", type=float, default=0.5, help="budget share of the source (0.5)"
    )
    m.add_argument(
        "--base-config",
        default="configs/current.yaml",
        help="model, budget, optimiser... of every run (default configs/current.yaml)",
    )
    m.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a base config field, e.g. budget.seconds=120 (repeatable)",
    )
    m.add_argument("--results", default="matrix.tsv", help="the matrix file (default matrix.tsv)")
    m.add_argument("--logs", help="train.py output per run (default runs/<results name>/)")
    m.add_argument("--workers", type=int, default=1, help="runs at a time on Ray (default 1)")
    m.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    m.add_argument(
        "--timeout",
        type=float,
        help="seconds before a run is killed (a crash row); default: the loop's (nerlab.policy)",
    )
    m.add_argument("--dry-run", action="store_true", help="print the runs left, run nothing")
    args = p.parse_args(argv)
    return sweep(args)


if __name__ == "__main__":
    signals.install()  # SIGTERM, SIGHUP: the runs in flight stopped, as on Ctrl-C
    run_cli(main)
