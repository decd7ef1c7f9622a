"""Encoders and tokenizers: any hub id or local path through Auto*, or the offline `tiny` model.

`tiny` = a WordPiece tokenizer built here from the prepared corpora's text plus a small randomly
initialised ModernBERT. It needs no download, so the demo and the tests run anywhere.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
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
    """A WordPiece tokenizer over `texts` (see `_build_wordpiece`), saved under a key of their
    content and reused from then on."""
    digest = hashlib.sha256()
    for s in texts:
        digest.update(" ".join(s.tokens).encode() + b"\n")
    # v2: the vocabulary is built in a fixed order (v1's trainer broke ties in hash order)
    path = Path(cache_dir) / f"tiny-tokenizer-v2-{digest.hexdigest()[:16]}"
    if (path / "tokenizer.json").exists():
        try:
            return PreTrainedTokenizerFast.from_pretrained(path)
        except Exception as e:  # any damage: the cache is derived data, built again below
            print(f"note: {path} is damaged ({type(e).__name__}): building it again", flush=True)
            shutil.rmtree(path, ignore_errors=True)
    _build_wordpiece(texts, path)
    return PreTrainedTokenizerFast.from_pretrained(path)


def _build_wordpiece(texts: list[Sentence], path: Path) -> None:
    """The vocabulary in a fixed order, so every machine builds the same one (the `tokenizers`
    WordPiece trainer breaks frequency ties in hash order, different in each process): the
    special tokens, every character alone and as `##` continuation, then whole words by count,
    ties alphabetically, up to TINY_VOCAB. Other words split into characters."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(lowercase=False)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for s in texts:
        text = normalizer.normalize_str(" ".join(s.tokens))
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(text))
    chars = sorted({c for word in counts for c in word})
    words = sorted(counts, key=lambda w: (-counts[w], w))
    tokens = dict.fromkeys([*SPECIALS, *chars, *(f"##{c}" for c in chars), *words])
    vocab = {t: i for i, t in enumerate(list(tokens)[:TINY_VOCAB])}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
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
    except OSError:  # another process finished first; its tokenizer is the same
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
