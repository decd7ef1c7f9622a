"""Entity-level scores with seqeval (strict IOB2 micro F1, as conlleval counts), and the
predictions file (`token gold pred`) that lets anyone re-score a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from nerlab.conll import Sentence


@dataclass
class Scores:
    f1: float
    precision: float
    recall: float
    per_type: dict[str, float] = field(default_factory=dict)


def score(gold: list[list[str]], pred: list[list[str]]) -> Scores:
    kw = dict(mode="strict", scheme=IOB2, zero_division=0)
    report = classification_report(gold, pred, output_dict=True, **kw)
    per_type = {
        k: float(v["f1-score"])
        for k, v in report.items()
        if not k.endswith(" avg") and "f1-score" in v
    }
    # plain floats: seqeval's numpy floats break YAML (the model card) and other writers
    return Scores(
        float(f1_score(gold, pred, **kw)),
        float(precision_score(gold, pred, **kw)),
        float(recall_score(gold, pred, **kw)),
        per_type,
    )


def write_predictions(path: Path, sentences: list[Sentence], pred: list[list[str]]) -> None:
    """One `token gold pred` line per word, a blank line between sentences (conlleval input)."""
    with open(path, "w", encoding="utf-8") as f:
        for s, p in zip(sentences, pred):
            f.writelines(f"{tok} {g} {q}\n" for tok, g, q in zip(s.tokens, s.tags, p))
            f.write("\n")


def read_predictions(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    gold, pred, g, p = [], [], [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if g:
                gold.append(g)
                pred.append(p)
                g, p = [], []
            continue
        _, gt, pt = line.rsplit(" ", 2)
        g.append(gt)
        p.append(pt)
    if g:
        gold.append(g)
        pred.append(p)
    return gold, pred
