"""`make demo`: the product in about a minute, offline. A short night of the research loop
(Optuna proposing, the tiny model of configs/smoke.yaml on the synthetic corpora, a budget of
DEMO_STEPS steps) in a scratch clone of this checkout under runs/demo-night/, so your checkout,
its branch and its refs stay as they are; then the night's report page, with what it found,
and the commands to go on.

    python -m nerlab.demo [--experiments 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import git
import yaml

from nerlab import signals
from nerlab.agents.factory import make_proposer
from nerlab.errors import UserError, run_cli
from nerlab.loop import LoopOptions, ResearchLoop

TAG = "demo"
SCRATCH = Path("runs") / "demo-night"  # ignored by git (runs/): the user's status stays clean
MARK = ".ner-demo"  # a scratch directory this module made, and may delete
CONFIG = Path("configs") / "smoke.yaml"
DEMO_STEPS = 30  # per run: a few seconds of training on two CPU cores


def scratch_clone(root: Path, steps: int) -> Path:
    """A fresh clone of the checkout's HEAD (committed files only) with a budget of `steps`
    steps in its configs/smoke.yaml, committed there."""
    scratch = root / SCRATCH
    if scratch.exists():
        if not (scratch / MARK).exists():
            raise UserError(f"{scratch} exists and is not a demo directory: move it away")
        shutil.rmtree(scratch)
    repo = git.Repo.clone_from(root, scratch)
    with repo.config_writer() as c:  # commits need a name, whatever the user's global config
        c.set_value("user", "name", "ner-autoresearch demo")
        c.set_value("user", "email", "demo@localhost")
    config = scratch / CONFIG
    raw = yaml.safe_load(config.read_text())
    raw["budget"] = {"steps": steps}
    config.write_text(f"# make demo: {CONFIG} with a {steps}-step budget\n" + yaml.safe_dump(raw))
    repo.git.commit("-am", f"demo: a {steps}-step budget")
    (scratch / MARK).write_text("made by `make demo` (python -m nerlab.demo)\n")
    (scratch / ".git" / "info" / "exclude").write_text(f"{MARK}\n")
    return scratch


def night(scratch: Path, experiments: int) -> Path:
    """The loop on the scratch clone; returns its report page."""
    opts = LoopOptions(tag=TAG, config=CONFIG, max_experiments=experiments, confirm_repeats=1,
                       live_page=True)  # fmt: skip
    loop = ResearchLoop(scratch, opts, proposer=None)
    args = argparse.Namespace(tag=TAG, seed=0, results=opts.results)
    loop.proposer = make_proposer("optuna", args, loop.root, loop.config_path)
    loop.run()
    return loop.page.path


def python_from(where: Path, root: Path) -> str:
    """How to call this Python from `where`: the checkout's venv by a relative path."""
    py = Path(sys.executable)
    return os.path.relpath(py, where) if py.is_relative_to(root) else "python"


def next_steps(root: Path, page: Path) -> str:
    with_venv = python_from(root, root)
    scratch = os.path.relpath(root / SCRATCH, Path.cwd())
    in_scratch = python_from(root / SCRATCH, root)
    return f"""
The night's report: {page.as_uri()}
(open it in a browser; during a night it rewrites itself as the loop goes)

Go on:
  cd {scratch} && {in_scratch} final.py --tag {TAG}
      the baseline and the best on the test split, 3 seeds each, with a 95% interval
  {with_venv} agent_loop.py --tag night1 --agent optuna --config {CONFIG} --max-experiments 20
      a longer night in your own checkout (branch autoresearch/night1); open
      runs/night1/report.html while it runs; Ctrl-C stops it, the same command resumes it
  {with_venv} train.py --config {CONFIG}
      one training run on its own, its progress line by line
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--experiments", type=int, default=5, help="the night's experiments")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help="training steps per run")
    args = p.parse_args(argv)
    try:
        root = Path(git.Repo(Path.cwd(), search_parent_directories=True).working_dir)
    except git.InvalidGitRepositoryError:
        raise UserError("make demo runs in a git checkout of ner-autoresearch") from None
    signals.install()
    scratch = scratch_clone(root, args.steps)
    print(f"a {args.experiments}-experiment night in {scratch} (your checkout stays as it is)")
    page = night(scratch, args.experiments)
    print(next_steps(root, page))
    return 0


if __name__ == "__main__":
    run_cli(main)
