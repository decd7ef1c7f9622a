"""Which proposer `agent_loop.py` runs, and building it from its options."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from nerlab.agents import Proposer
from nerlab.agents.prompt import load_program
from nerlab.config import load_config
from nerlab.errors import UserError

AGENTS = ("anthropic", "openai", "optuna")


def choose_agent(requested: str | None, env: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """The agent and why: Claude when ANTHROPIC_API_KEY is set, else an OpenAI-compatible
    server when OPENAI_BASE_URL or OPENAI_API_KEY is, else Optuna (no key needed)."""
    if requested:
        if requested == "anthropic" and not env.get("ANTHROPIC_API_KEY"):
            raise UserError("--agent anthropic needs ANTHROPIC_API_KEY in the environment "
                            "(or use --agent optuna, which needs no key)")  # fmt: skip
        return requested, f"--agent {requested}"
    if env.get("ANTHROPIC_API_KEY"):
        return "anthropic", "ANTHROPIC_API_KEY is set"
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        if env.get(name):
            return "openai", f"{name} is set and ANTHROPIC_API_KEY is not"
    return "optuna", "none of ANTHROPIC_API_KEY, OPENAI_BASE_URL, OPENAI_API_KEY is set"


def make_proposer(agent: str, args: argparse.Namespace, root: Path, config: Path) -> Proposer:
    """`args`: agent_loop.py's options (tag, seed, model, base_url, request_timeout, results);
    `config`: the config file the tag edits."""
    if agent == "optuna":
        from nerlab.agents.optuna_search import OptunaProposer, recorded_results

        # The search space is relative to the config the run started from (saved on the first
        # start), so a resumed study keeps meaning the same thing.
        first = root / "runs" / args.tag / "optuna_base.yaml"
        if not first.exists():
            load_config(config)  # an invalid config is reported as the user's file
            first.parent.mkdir(parents=True, exist_ok=True)
            first.write_text(config.read_text())
        base = load_config(first)
        sources = [n for n, e in sorted(base.store().manifest().items()) if "train" in e["splits"]]
        sources += [a for a in ("bc5cdr_chem", "bc5cdr_disease") if "bc5cdr" in sources]
        storage = root / "runs" / args.tag / "optuna.db"
        finished = recorded_results(root, args.tag, args.results)
        return OptunaProposer(base, sources, storage, seed=args.seed, finished=finished)
    if agent == "openai":
        from nerlab.agents.openai_compat import OpenAIProposer

        return OpenAIProposer(load_program(root), model=args.model, base_url=args.base_url,
                              request_timeout=args.request_timeout)  # fmt: skip
    from nerlab.agents.claude import DEFAULT_MODEL, ClaudeProposer

    return ClaudeProposer(load_program(root), model=args.model or DEFAULT_MODEL)


def describe(proposer: Proposer) -> str:
    """The proposer for the loop's first line: which model, where."""
    if proposer.name == "openai":
        return f"openai ({proposer.model} at {proposer.base_url})"
    if proposer.name == "claude":
        return f"anthropic ({proposer.model})"
    return proposer.name
