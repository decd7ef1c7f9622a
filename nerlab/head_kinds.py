"""The head kinds, in one place: what the config allows, Optuna proposes, export and the model
card accept. Kept free of torch so the config and the loop import it cheaply (the modules
themselves are in nerlab.heads)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeadKind:
    exportable: bool  # a standard `...ForTokenClassification` class can hold it
    viterbi: bool  # decodes with a CRF (the standard class decodes by argmax instead)


HEAD_KINDS = {
    "linear": HeadKind(exportable=True, viterbi=False),
    "mlp": HeadKind(exportable=False, viterbi=False),
    "crf": HeadKind(exportable=True, viterbi=True),
}
EXPORTABLE = tuple(k for k, v in HEAD_KINDS.items() if v.exportable)
