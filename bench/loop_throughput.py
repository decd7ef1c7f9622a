"""The research loop's own throughput: experiments per hour with --workers 1, 2, 4, and the
loop's overhead per experiment (propose + check + git + record, all but waiting for runs).

    python bench/loop_throughput.py [--sleep 5] [--experiments 25] [--workers 1,2,4] [--no-page]

The trainer is tests/fake_train.py sleeping --sleep seconds per run (same CLI and summary block
as train.py, no model), so a 2-core machine measures the loop, not training. Each setting runs
in a fresh temporary repository with the optuna proposer on the synthetic corpora. The rate is
taken from the baseline's result (which runs alone) to the last experiment's, so Ray's start-up
is reported apart. The live report page (nerlab.live) is on, as in agent_loop.py, unless
--no-page; its rewrites' cost is reported (they run while a run trains, not between runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # nerlab and tests, when run from anywhere


def measure(workers: int, n: int, sleep: float, home: Path, page: bool) -> dict:
    import yaml

    from nerlab import loop as loop_module
    from nerlab.agents.optuna_search import OptunaProposer
    from nerlab.config import load_config
    from nerlab.loop import LoopOptions, ResearchLoop
    from tests.helpers import BASE, make_repo

    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    repo = make_repo(tmp / "proj", fake_train=True)
    # the fake trainer sleeps in configs written by the loop: make the baseline one too
    config = repo / "configs" / "current.yaml"
    config.write_text("# agent_loop.py baseline\n" + yaml.safe_dump(BASE))
    import git

    git.Repo(repo).git.commit("-am", "sleepy baseline")
    os.environ["FAKE_TRAIN_SLEEP"] = str(sleep)
    waited = [0.0]
    make_pool = loop_module.make_pool

    def timed_pool(*args, **kwargs):
        pool = make_pool(*args, **kwargs)
        wait = pool.wait

        def timed_wait(*args):
            t = time.perf_counter()
            try:
                return wait(*args)
            finally:
                waited[0] += time.perf_counter() - t

        pool.wait = timed_wait
        return pool

    loop_module.make_pool = timed_pool
    marks: dict[str, float] = {}

    def say(line: str) -> None:
        if line.startswith("[1] keep"):
            marks["baseline"], marks["waited"] = time.perf_counter(), waited[0]

    base = load_config(config)
    sources = ["bc5cdr_disease", "bc2gm", "linnaeus", "bc5cdr_chem"]
    proposer = OptunaProposer(base, sources, tmp / "optuna.db", seed=0)
    opts = LoopOptions(tag="bench", max_experiments=n, workers=workers, confirm_repeats=1,
                       live_page=page)  # fmt: skip
    t0 = time.perf_counter()
    loop = ResearchLoop(repo, opts, proposer, say=say)
    loop.run()
    end = time.perf_counter()
    loop_module.make_pool = make_pool
    rows = loop.ledger.tag_rows()
    renders = loop.page.render_s if loop.page else [0.0]
    shutil.rmtree(tmp, ignore_errors=True)
    after = n - 1  # experiments after the baseline
    return {
        "workers": workers,
        "experiments": len(rows),
        "per_hour": after / (end - marks["baseline"]) * 3600,
        "wall_s": end - t0,
        # driver time not spent waiting for a run, after the baseline (Ray's start-up aside)
        "overhead_ms": (end - marks["baseline"] - (waited[0] - marks["waited"])) / after * 1000,
        "page_ms": (1000 * sum(renders) / len(renders), 1000 * max(renders), len(renders)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sleep", type=float, default=5.0, help="seconds per fake run (default 5)")
    p.add_argument("--experiments", type=int, default=25)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--no-page", action="store_true", help="without the live report page")
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-home-"))
    os.environ["NER_AR_HOME"] = str(home)
    from nerlab import prepare
    from nerlab.corpora import CORPORA
    from nerlab.store import Store

    store = Store(home / "synthetic")
    for name in CORPORA:
        loaded = prepare.load_synthetic(name, seed=0)
        store.write(name, loaded.splits, {"source": loaded.source, "source_id": loaded.source_id})
    print(f"machine: {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"fake trainer: {args.sleep:g} s per run; {args.experiments} experiments per setting")
    page = not args.no_page
    results = [measure(int(w), args.experiments, args.sleep, home, page)
               for w in args.workers.split(",")]  # fmt: skip
    print(f"live page: {'on' if page else 'off'}")
    one = results[0]["per_hour"]
    print("| workers | experiments/hour | speed-up | loop overhead per experiment | wall | "
          "page rewrite mean / max (count) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        mean, most, count = r["page_ms"]
        print(f"| {r['workers']} | {r['per_hour']:.0f} | {r['per_hour'] / one:.2f}x | "
              f"{r['overhead_ms']:.0f} ms | {r['wall_s']:.0f} s | {mean:.0f} / {most:.0f} ms "
              f"({count}) |")  # fmt: skip
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
