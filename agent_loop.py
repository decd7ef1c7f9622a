"""The overnight research loop, unattended: propose -> train -> record -> keep or revert.

    python agent_loop.py --tag nov28                      # Claude if ANTHROPIC_API_KEY is set
    python agent_loop.py --tag demo --agent optuna --config configs/smoke.yaml --max-experiments 5

Runs on branch autoresearch/<tag> (created, or resumed when it exists). Each experiment is a
commit of the config file; it stays only if dev F1 beat the best by more than the noise (a
smaller win is confirmed with extra seeds first). Every run is a row of results.tsv and a log
in runs/<tag>/<n>.log. Stop with Ctrl-C at any time; rerun the same command to resume.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nerlab import signals
from nerlab.config import load_config
from nerlab.errors import UserError, run_cli
from nerlab.loop import LoopOptions, ResearchLoop
from nerlab.stats import NOISE_MARGIN


def make_proposer(agent: str, args, root: Path):
    if agent == "optuna":
        from nerlab.agents.optuna_search import OptunaProposer

        # The search space is relative to the config the run started from (saved on the first
        # start), so a resumed study keeps meaning the same thing.
        first = root / "runs" / args.tag / "optuna_base.yaml"
        if not first.exists():
            first.parent.mkdir(parents=True, exist_ok=True)
            first.write_text((root / args.config).read_text())
        base = load_config(first)
        sources = [n for n, e in sorted(base.store().manifest().items()) if "train" in e["splits"]]
        sources += [a for a in ("bc5cdr_chem", "bc5cdr_disease") if "bc5cdr" in sources]
        storage = root / "runs" / args.tag / "optuna.db"
        return OptunaProposer(base, sources, storage, seed=args.seed)
    from nerlab.agents.claude import ClaudeProposer

    return ClaudeProposer((root / "program.md").read_text(), model=args.model)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tag", required=True, help="run name: branch autoresearch/<tag>")
    p.add_argument(
        "--agent",
        choices=["anthropic", "optuna"],
        help="default: anthropic when ANTHROPIC_API_KEY is set, else optuna",
    )
    p.add_argument("--config", type=Path, default=Path("configs/current.yaml"))
    p.add_argument("--results", type=Path, default=Path("results.tsv"))
    p.add_argument(
        "--max-experiments",
        type=int,
        help="stop when the tag has this many experiments in all (restarts count on)",
    )
    p.add_argument("--max-hours", type=float, help="stop this invocation after so many hours")
    p.add_argument("--workers", type=int, default=1, help="experiments in flight (Ray when > 1)")
    p.add_argument("--ray-address", help="join this Ray cluster (default: a local instance)")
    p.add_argument(
        "--gpus-per-run",
        type=float,
        default=1.0,
        help="GPUs per run where the cluster has GPUs; 0.5 packs two runs on a GPU",
    )
    p.add_argument(
        "--confirm-repeats",
        type=int,
        default=3,
        help="seeds behind a win within the noise margin (1 = no confirmation)",
    )
    p.add_argument(
        "--noise-margin",
        type=float,
        default=NOISE_MARGIN,
        help=f"F1 below which a single-run win is confirmed (default {NOISE_MARGIN})",
    )
    p.add_argument("--timeout", type=float, help="seconds per run (default: 2x budget + 300)")
    p.add_argument("--model", default=None, help="Claude model for --agent anthropic")
    p.add_argument("--seed", type=int, default=0, help="seed of the optuna sampler")
    args = p.parse_args()
    agent = args.agent or ("anthropic" if os.environ.get("ANTHROPIC_API_KEY") else "optuna")
    if agent == "anthropic" and not os.environ.get("ANTHROPIC_API_KEY"):
        raise UserError("--agent anthropic needs ANTHROPIC_API_KEY in the environment "
                        "(or use --agent optuna, which needs no key)")  # fmt: skip
    if args.workers < 1 or args.gpus_per_run <= 0:
        raise UserError("--workers must be at least 1 and --gpus-per-run above 0")
    if args.model is None:
        from nerlab.agents.claude import DEFAULT_MODEL

        args.model = DEFAULT_MODEL
    print(f"agent: {agent}" + (f" ({args.model})" if agent == "anthropic" else ""))
    signals.install()  # `kill` and a dropped ssh session stop as cleanly as Ctrl-C
    opts = LoopOptions(
        tag=args.tag,
        config=args.config,
        results=args.results,
        max_experiments=args.max_experiments,
        max_hours=args.max_hours,
        confirm_repeats=args.confirm_repeats,
        noise_margin=args.noise_margin,
        timeout=args.timeout,
        workers=args.workers,
        ray_address=args.ray_address,
        gpus_per_run=args.gpus_per_run,
    )
    loop = ResearchLoop(Path.cwd(), opts, proposer=None)
    loop.proposer = make_proposer(agent, args, loop.root)
    loop.run()
    return 0


if __name__ == "__main__":
    run_cli(main)
