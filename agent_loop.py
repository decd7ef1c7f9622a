"""The overnight research loop, unattended: propose -> train -> record -> keep or revert.

    python agent_loop.py --tag nov28                      # Claude if ANTHROPIC_API_KEY is set
    OPENAI_BASE_URL=http://localhost:11434/v1 python agent_loop.py --tag nov28 --model qwen3:8b
    python agent_loop.py --tag demo --agent optuna --config configs/smoke.yaml --max-experiments 5

Runs on branch autoresearch/<tag> (created, or resumed when it exists). Each experiment is a
commit of the config file; it stays only if dev F1 beat the best by more than the noise (a
smaller win is confirmed with extra seeds first). Every run is a row of results.tsv and a log
in runs/<tag>/<n>.log; runs/<tag>/report.html shows the night as it goes (it reloads itself
in a browser). Stop with Ctrl-C at any time; rerun the same command to resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nerlab import signals
from nerlab.agents import DEFAULT_REQUEST_TIMEOUT
from nerlab.agents.factory import AGENTS, choose_agent, describe, make_proposer
from nerlab.errors import UserError, run_cli
from nerlab.loop import LoopOptions, ResearchLoop
from nerlab.policy import MIN_SEEDS, NOISE_MARGIN


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tag", required=True, help="run name: branch autoresearch/<tag>")
    p.add_argument(
        "--agent",
        choices=AGENTS,
        help="default: anthropic when ANTHROPIC_API_KEY is set, else openai when "
        "OPENAI_BASE_URL or OPENAI_API_KEY is, else optuna",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="the config file the tag edits (default: a resumed tag's own, else "
        "configs/current.yaml); fixed for the tag by its first experiment",
    )
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
        default=MIN_SEEDS,
        help="seeds behind a win within the noise margin (1 = no confirmation)",
    )
    p.add_argument(
        "--noise-margin",
        type=float,
        default=NOISE_MARGIN,
        help=f"F1 below which a single-run win is confirmed (default {NOISE_MARGIN})",
    )
    p.add_argument("--timeout", type=float, help="seconds per run (default: 2x budget + 300)")
    p.add_argument(
        "--model",
        help="the LLM: a Claude model (default claude-sonnet-4-6), or one the OpenAI-compatible "
        "server offers (default: its only one)",
    )
    p.add_argument(
        "--base-url",
        help="OpenAI-compatible server, e.g. http://localhost:11434/v1 (default: OPENAI_BASE_URL)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT,
        help=f"seconds for one reply of the OpenAI-compatible server (default "
        f"{DEFAULT_REQUEST_TIMEOUT:.0f}: a slow local model takes minutes)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the optuna sampler")
    args = p.parse_args()
    agent, why = choose_agent(args.agent)
    if args.workers < 1 or args.gpus_per_run <= 0:
        raise UserError("--workers must be at least 1 and --gpus-per-run above 0")
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
        live_page=True,  # runs/<tag>/report.html: open it in a browser while the night runs
    )
    loop = ResearchLoop(Path.cwd(), opts, proposer=None)
    loop.proposer = make_proposer(agent, args, loop.root, loop.config_path)
    print(f"agent: {describe(loop.proposer)}: {why}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    run_cli(main)
