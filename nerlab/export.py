"""A saved tagger (nerlab.modelio) as a standard transformers token classifier.

The directory loads with `AutoModelForTokenClassification.from_pretrained(DIR)` and
`pipeline("token-classification", model=DIR)` and no project code: the encoder family's own
`...ForTokenClassification` class, id2label/label2id from the target's labels, the tokenizer.
The project's files (nerlab.json, the head) go along, so predict.py reads it too.

How each head maps onto the standard class:
- linear: exactly onto `classifier`. ModernBERT's class puts a prediction head (dense, activation,
  LayerNorm) before it; it is set to pass the encoder's output through: dense = diag(1/g) undoes
  the encoder's final LayerNorm scale g, the activation is the identity, and the head's LayerNorm
  (weight g) renormalises an already normalised vector, which changes it by ~1e-5 relative.
- crf: the emission layer as `classifier`; the standard pipeline decodes by argmax, not by
  Viterbi with IOB2 constraints, so its tags can differ (predict.py applies the CRF).
- mlp: the standard classes have no slot for it: refused.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForTokenClassification

from nerlab.card import model_card
from nerlab.config import head_key, parse_config_text
from nerlab.environment import of_summary
from nerlab.errors import UserError
from nerlab.files import swap_dir
from nerlab.head_kinds import EXPORTABLE, HEAD_KINDS
from nerlab.modelio import HEAD, META, SavedTagger, load_tagger
from nerlab.summary import parse_summary

CARRIED = (META, HEAD)  # the project's files, copied next to the standard ones


def check_target_dir(out: Path, force: bool) -> None:
    """Refuse to write into an existing directory unless forced (called before any work)."""
    out = Path(out)
    if out.exists() and not force:
        raise UserError(f"--export {out}: already exists; choose another directory or add --force")
    if out.exists() and not out.is_dir():
        raise UserError(f"--export {out}: exists and is not a directory")


def check_exportable(config_text: str, seed_dir: Path) -> None:
    """Refuse a best whose head no standard class holds (called before any training)."""
    kind = parse_config_text(config_text).head.kind
    if not HEAD_KINDS[kind].exportable:
        raise UserError(
            f"--export: the tag's best has an {kind} head, which no standard transformers class "
            f"holds (only {' or '.join(EXPORTABLE)} heads export); run final.py without --export "
            f"and tag text with `python predict.py --model {seed_dir}` (the project's own "
            f"format), or continue the tag with the best config's `head.kind: linear` (an "
            f"experiment the loop keeps) and export that"
        )


def export(saved_dir: Path, out: Path) -> SavedTagger:
    """Write the standard directory for the model saved in `saved_dir`; returns it loaded."""
    saved = load_tagger(saved_dir, torch.device("cpu"))
    kind = saved.meta["head"]
    if not HEAD_KINDS[kind].exportable:
        raise UserError(
            f"an {kind} head has no equivalent in {_family(saved)}ForTokenClassification, so it "
            f"cannot be exported in the standard format; predict.py reads the saved model "
            f"{saved_dir} as it is"
        )
    model = standard_model(saved)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer = saved.tokenizer
    tokenizer.model_max_length = saved.cfg.max_length  # the pipeline truncates or strides
    tokenizer.save_pretrained(out)
    for name in CARRIED:
        shutil.copy(Path(saved_dir) / name, out / name)
    return saved


def export_model(seed_dir: Path, out: Path, report: dict, license_id: str = "other") -> str:
    """`final.py --export`: the standard directory plus its model card, written beside `out`
    and swapped in whole (a failure leaves the old `out` as it was); returns a summary line."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        saved = export(seed_dir, staging)
        manifest = saved.cfg.store().manifest()
        model_type = saved.model.encoder.config.model_type
        card = model_card(
            report,
            saved.meta,
            saved.cfg,
            manifest,
            str(out),
            license_id,
            model_type,
            _env(seed_dir),
        )
        (staging / "README.md").write_text(card)
        _readable(staging)
        swap_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone when swapped in
    meta = saved.meta
    return (
        f"exported seed {meta['seed']} of {meta['target']} ({meta['head']} head) to {out}: "
        f"{_family(saved)}ForTokenClassification, tokenizer, model card README.md"
    )


def _readable(root: Path) -> None:
    """0755 directories and 0644 files: libraries' temporary files are private (0600)."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _env(seed_dir: Path) -> dict:
    """The seed's versions, from its run's summary block (final.py keeps it as seed<s>.log)."""
    log = Path(seed_dir).with_suffix(".log")
    summary = parse_summary(log.read_text(errors="replace")) if log.is_file() else None
    return of_summary(summary or {})


def standard_model(saved: SavedTagger):
    """The encoder's own ...ForTokenClassification holding the encoder and the target head."""
    labels = saved.meta["labels"]
    encoder = saved.model.encoder
    config = AutoConfig.for_model(**encoder.config.to_dict())
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.architectures = None
    if config.model_type == "modernbert":
        config.classifier_activation = "linear"
        config.classifier_bias = encoder.config.norm_bias
    model = AutoModelForTokenClassification.from_config(config)
    missing, unexpected = model.base_model.load_state_dict(encoder.state_dict(), strict=False)
    if missing:
        raise UserError(
            f"cannot export: the encoder lacks weights the standard class needs "
            f"({', '.join(missing[:3])})"
        )
    extra = {n for n, _ in model.named_children()} - {
        model.base_model_prefix,
        "classifier",
        "dropout",
        "drop",
        "head",
    }
    if extra or not isinstance(getattr(model, "classifier", None), torch.nn.Linear):
        raise UserError(
            f"cannot export to {type(model).__name__}: unknown layout (modules {sorted(extra)})"
        )
    if hasattr(model, "head"):
        _pass_through(model.head, encoder)
    proj = saved.model.heads[head_key(saved.view)].proj
    model.classifier.load_state_dict(proj.state_dict())
    return model.eval()


@torch.no_grad()
def _pass_through(head, encoder) -> None:
    """ModernBERT's prediction head made (nearly) the identity on the encoder's output."""
    norm = encoder.final_norm
    gain = norm.weight.detach()
    head.dense.weight.copy_(torch.diag(1 / gain))
    head.norm.weight.copy_(gain)
    if norm.bias is not None:  # y = g * x + b: dense must also remove b / g
        head.dense.bias.copy_(-norm.bias / gain)
        head.norm.bias.copy_(norm.bias)


def _family(saved: SavedTagger) -> str:
    return type(saved.model.encoder).__name__.removesuffix("Model")
