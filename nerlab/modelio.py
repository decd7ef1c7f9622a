"""A trained tagger on disk, in the project's own format, and back.

`train.py --save-model DIR` writes the encoder and tokenizer as transformers saves them
(`AutoModel.from_pretrained(DIR)` loads the encoder alone), the target's head
(`nerlab_head.safetensors`, any kind: linear, mlp, crf) and `nerlab.json` (the effective config,
the target's labels, the seed and its dev F1). `nerlab.json` is written last: a directory
without it is an unfinished save. An exported directory (nerlab.export) carries the same two
files, so predict.py reads both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from nerlab.config import ExperimentConfig, head_key
from nerlab.corpora import View
from nerlab.errors import UserError
from nerlab.training import Tagger

FORMAT = "nerlab-tagger/1"
META = "nerlab.json"
HEAD = "nerlab_head.safetensors"


@dataclass
class SavedTagger:
    model: Tagger  # the encoder and the target's head only
    tokenizer: object
    cfg: ExperimentConfig
    view: View  # the target
    meta: dict


def save_tagger(
    path: Path, model: Tagger, tokenizer, cfg_text: str, view: View, extra: dict
) -> None:
    """Encoder, tokenizer, target head and metadata into `path` (created if needed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    encoder = getattr(model.encoder, "_orig_mod", model.encoder)  # torch.compile'd or not
    encoder.save_pretrained(path)
    tokenizer.save_pretrained(path)
    head = model.heads[head_key(view)]
    state = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
    save_file(state, path / HEAD)
    meta = {
        "format": FORMAT,
        "target": view.spec,
        "corpus": view.corpus,
        "types": list(view.types),
        "labels": head.labels,
        "head": head.kind,
        "config": cfg_text,
        "tokenizer": tokenizer.name_or_path,  # the tokenised-corpus cache is keyed by it
        **extra,
    }
    (path / META).write_text(json.dumps(meta, indent=2) + "\n")


def is_saved(path: Path) -> bool:
    return (Path(path) / META).is_file()


def read_meta(path: Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such model directory")
    if not is_saved(path):
        raise UserError(
            f"{path}: not a model saved by this project (no {META}); save one with "
            "`train.py --save-model DIR` or `final.py --export DIR`"
        )
    try:
        meta = json.loads((path / META).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path / META}: damaged ({e}); save or export the model again") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}/{META}: format {meta.get('format')!r}, expected {FORMAT}")
    return meta


def load_tagger(path: Path, device: torch.device) -> SavedTagger:
    """The saved encoder and target head, in eval mode on `device`."""
    path = Path(path)
    meta = read_meta(path)
    # no data check (parse_config's): predicting needs no prepared corpora
    cfg = ExperimentConfig.model_validate(yaml.safe_load(meta["config"]))
    view = View(meta["target"], meta["corpus"], tuple(meta["types"]))
    with _damaged(path, "its tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.name_or_path = meta.get("tokenizer", tokenizer.name_or_path)  # reuse the cache
    with _damaged(path, "its encoder (config.json, model.safetensors)"):
        encoder = _quiet_base_model(path)
    model = Tagger(encoder, [view], meta["head"], cfg.head.dropout)
    with _damaged(path, HEAD):
        model.heads[head_key(view)].load_state_dict(load_file(path / HEAD))
    return SavedTagger(model.to(device).eval(), tokenizer, cfg, view, meta)


@contextmanager
def _damaged(path: Path, what: str) -> Iterator[None]:
    """A file of the model that does not load (truncated by a full disk or a kill, edited):
    one line naming it, not the loader's traceback."""
    try:
        yield
    except Exception as e:  # safetensors, tokenizers, transformers, torch: each its own type
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise UserError(
            f"{path}: cannot load {what} ({detail}); the file is damaged or incomplete: save "
            "or export the model again"
        ) from None


def _quiet_base_model(path: Path):
    """The encoder, from a --save-model directory or the base model of an exported checkpoint
    (whose classifier weights transformers would list as unexpected: they are expected here),
    without a "Loading weights" bar: a local file loads in an instant, and final.py's and
    predict.py's output is the user's."""
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return AutoModel.from_pretrained(path)
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
