"""What a proposer is shown before each proposal: the best config, the schema, the corpora
on disk, the tag's recent rows, what is running now, and its logs on request."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable

import pandas as pd

from nerlab.agents import Context
from nerlab.config import ExperimentConfig
from nerlab.experiment import Experiment
from nerlab.ledger import Best
from nerlab.proposals import config_diff

RECENT_ROWS = 60


def proposer_context(n: int, rows: pd.DataFrame, best_text: str, best: Best | None,
                     running: Iterable[Experiment], corpora: str,
                     log_tail: Callable[[int, int], str]) -> Context:  # fmt: skip
    table = "\n".join(
        f"{r.commit}\t{r.dev_f1:.4f}\t{r.status}\t{r.reason}\t{r.description}"
        for r in rows.tail(RECENT_ROWS).itertuples()
    )
    in_flight = "\n".join(
        f"- [{e.n}] {e.description}\n" + _indent(config_diff(best_text, e.config_text))
        for e in running
    )
    return Context(
        experiment=n,
        config_yaml=best_text,
        schema=schema(),
        corpora=corpora,
        results=("commit\tdev_f1\tstatus\treason\tdescription\n" + table) if table else "",
        best_f1=best.f1 if best else None,
        best_description=best.description if best else "",
        log_tail=log_tail,
        running=in_flight,
    )


def corpora_text(cfg: ExperimentConfig) -> str:
    """The prepared corpora of the config's data root, with their types and sizes."""
    from nerlab.corpora import ALIASES, CORPORA

    lines = []
    for name, entry in sorted(cfg.store().manifest().items()):
        types = CORPORA[name].types if name in CORPORA else entry["types"]
        splits = ", ".join(f"{s} {v['sentences']} sents" for s, v in entry["splits"].items())
        lines.append(f"- {name} ({', '.join(types)}): {splits}")
    views = ", ".join(f"{a} = {v}" for a, v in ALIASES.items())
    return "\n".join(lines) + f"\nViews: {views}; any `name:Type` narrows a corpus."


@functools.cache
def schema() -> str:
    return json.dumps(ExperimentConfig.model_json_schema(), separators=(",", ":"))


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
