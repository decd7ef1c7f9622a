"""Encoders and tokenizers: any hub id or local path through Auto*, or the offline `tiny` model.

`tiny` = a WordPiece tokenizer trained here on the prepared corpora's text plus a small randomly
initialised ModernBERT. It needs no download, so the demo and the tests run anywhere.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import (
    AutoModel,
    AutoTokenizer,
    ModernBertConfig,
    ModernBertModel,
    PreTrainedTokenizerFast,
)

from nerlab.config import MODEL_CHOICES, TINY
from nerlab.conll import Sentence
from nerlab.errors import UserError

TINY_VOCAB = 8000
TINY_SHAPE = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    max_position_embeddings=1024,
)
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_tokenizer(texts: list[Sentence], cache_dir: Path) -> PreTrainedTokenizerFast:
    """WordPiece trained on `texts`, saved under a key of their content and reused from then on.

    The `tokenizers` trainer breaks frequency ties in hash order, so two trainings can differ in
    a few rare subwords: training once and reusing keeps every later run identical."""
    digest = hashlib.sha256()
    for s in texts:
        digest.update(" ".join(s.tokens).encode() + b"\n")
    path = Path(cache_dir) / f"tiny-tokenizer-{digest.hexdigest()[:16]}"
    if (path / "tokenizer.json").exists():
        try:
            return PreTrainedTokenizerFast.from_pretrained(path)
        except Exception as e:  # any damage: the cache is derived data, trained again below
            print(f"note: {path} is damaged ({type(e).__name__}): training it again (a few rare "
                  "subwords may differ from the lost one's)", flush=True)  # fmt: skip
            shutil.rmtree(path, ignore_errors=True)
    _train_wordpiece(texts, path)
    return PreTrainedTokenizerFast.from_pretrained(path)


def _train_wordpiece(texts: list[Sentence], path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=TINY_VOCAB, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator((" ".join(s.tokens) for s in texts), trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
    )
    tmp = path.with_name(f"{path.name}.tmp{id(fast)}")
    fast.save_pretrained(tmp)
    try:
        tmp.replace(path)  # atomic: a concurrent run sees the whole tokenizer or none of it
    except OSError:  # another process finished first; theirs is identical
        shutil.rmtree(tmp)


def modernbert_config(tokenizer, **shape) -> ModernBertConfig:
    """A ModernBERT config over `tokenizer`'s vocabulary: a small vocabulary needs its special
    ids set explicitly (the defaults point past its end)."""
    return ModernBertConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **shape,
    )


def tiny_encoder(tokenizer, seed: int) -> ModernBertModel:
    """A small random-init ModernBERT, reproducible by seed."""
    config = modernbert_config(tokenizer, **TINY_SHAPE)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ModernBertModel(config)


def load_tokenizer(name: str, texts: list[Sentence] | None, cache_dir: Path):
    if name == TINY:
        if not texts:
            raise ValueError("the tiny tokenizer is trained on corpus text: pass `texts`")
        return tiny_tokenizer(texts, cache_dir)
    with loading(name):
        tok = AutoTokenizer.from_pretrained(name)
    if not tok.is_fast:
        raise UserError(f"model {name!r}: a fast tokenizer is needed for word alignment (word_ids)")
    return with_word_prefix_space(tok)


def with_word_prefix_space(tok):
    """Byte-level BPE tokenizers (ModernBERT, RoBERTa) glue pre-split words together
    ("is", "a" -> "is" "a" without the leading-space marker they have in running text) unless
    each word gets a prefix space; ModernBERT's own tokenizer does not set it, and NER F1
    suffers. transformers 5 ignores `add_prefix_space=` for it, so set it in the backend."""
    state = json.loads(tok.backend_tokenizer.to_str())

    def fix(node) -> bool:
        if isinstance(node, dict):
            hit = node.get("type") == "ByteLevel" and not node.get("add_prefix_space")
            if hit:
                node["add_prefix_space"] = True
            return any([hit] + [fix(v) for v in node.values()])
        if isinstance(node, list):
            return any([fix(v) for v in node])
        return False

    if fix(state.get("pre_tokenizer")):
        tok._tokenizer = Tokenizer.from_str(json.dumps(state))
    return tok


def load_encoder(name: str, tokenizer, seed: int, dropout: float | None = None):
    """Hub id or local path -> pretrained encoder; `tiny` -> random init reproducible by seed."""
    if name == TINY:
        return tiny_encoder(tokenizer, seed)
    kwargs = {}
    if dropout is not None:  # ModernBERT names; other families keep their own defaults
        kwargs = {
            "attention_dropout": dropout,
            "mlp_dropout": dropout,
            "embedding_dropout": dropout,
        }
    with loading(name):
        try:
            return AutoModel.from_pretrained(name, **kwargs)
        except TypeError:
            return AutoModel.from_pretrained(name)


@contextmanager
def loading(name: str) -> Iterator[None]:
    """transformers' errors for a model it cannot load (not found, offline, a folder that is not
    a model) run over many lines and never name the config field: one line that does."""
    try:
        yield
    except (OSError, ValueError) as e:
        detail = " ".join(str(e).split())[:300]
        raise UserError(f"model {name!r}: cannot load it ({detail}); {MODEL_CHOICES}") from None
