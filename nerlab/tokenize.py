"""Word -> subword alignment, windowing of long sentences, and an on-disk tokenised cache.

The first subword of each word carries its label; other subwords and special tokens get -100.
A sentence longer than `max_length` subwords is cut into consecutive word windows, so every
word of every sentence is predicted exactly once (nothing is truncated away from evaluation).
Tags are not part of the cache: views of one corpus (bc5cdr, bc5cdr_chem) share its tokens.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from nerlab.conll import Sentence

IGNORE = -100
CACHE_VERSION = 1  # bump when encode() changes what it stores


@dataclass
class Encoded:
    """Tokenised windows of one corpus split."""

    input_ids: list[list[int]]  # per window, with special tokens
    word_index: list[list[int]]  # per subword: word index in its sentence if first subword, else -1
    sentence: list[int]  # per window: index of its sentence

    def __len__(self) -> int:
        return len(self.input_ids)

    def labels(self, sentences: list[Sentence], label_ids: dict[str, int]) -> list[list[int]]:
        """Per-subword label ids for one tag set (a corpus or a view of it)."""
        out = []
        for widx, s in zip(self.word_index, self.sentence):
            tags = sentences[s].tags
            out.append([label_ids[tags[w]] if w >= 0 else IGNORE for w in widx])
        return out


def tokenizer_identity(tokenizer) -> str:
    """Name plus a hash of the whole tokenizer (vocabulary, normaliser, pre-tokeniser): a
    retrained or reconfigured tokenizer never reuses a stale cache."""
    spec = f"v{CACHE_VERSION}:" + tokenizer.backend_tokenizer.to_str()
    return f"{tokenizer.name_or_path}:{hashlib.sha256(spec.encode()).hexdigest()[:16]}"


def encode(sentences: list[Sentence], tokenizer, max_length: int) -> Encoded:
    if max_length < 3:
        raise ValueError("max_length must leave room for one subword between special tokens")
    body = max_length - 2  # [CLS] ... [SEP]
    batch = tokenizer(  # not verbose: a sentence past the model's length is windowed below
        [s.tokens for s in sentences], is_split_into_words=True, add_special_tokens=False,
        verbose=False,
    )  # fmt: skip
    cls, sep, unk = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id
    enc = Encoded([], [], [])
    for si, s in enumerate(sentences):
        per_word: list[list[int]] = [[] for _ in s.tokens]
        for tok, w in zip(batch["input_ids"][si], batch.word_ids(si)):
            if w is not None:
                per_word[w].append(tok)
        ids: list[int] = []
        widx: list[int] = []
        for w, sub in enumerate(per_word):
            sub = (sub or [unk])[:body]  # a word with no subwords still gets a position
            if len(ids) + len(sub) > body:
                _emit(enc, ids, widx, si, cls, sep)
                ids, widx = [], []
            ids.extend(sub)
            widx.extend([w] + [-1] * (len(sub) - 1))
        _emit(enc, ids, widx, si, cls, sep)
    return enc


def _emit(enc: Encoded, ids: list[int], widx: list[int], si: int, cls: int, sep: int) -> None:
    if ids:
        enc.input_ids.append([cls, *ids, sep])
        enc.word_index.append([-1, *widx, -1])
        enc.sentence.append(si)


def cached_encode(
    sentences: list[Sentence], tokenizer, max_length: int, cache_dir: Path, fingerprint: str
) -> Encoded:
    """`encode`, memoised on disk by (corpus content, tokenizer identity, max_length)."""
    key = hashlib.sha256(
        f"{fingerprint}|{tokenizer_identity(tokenizer)}|{max_length}".encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / f"{key}.pt"
    if path.exists():
        try:
            d = torch.load(path, weights_only=True)
            return Encoded(
                _unflat(d["ids"], d["lens"]), _unflat(d["widx"], d["lens"]), d["sentence"].tolist()
            )
        except Exception as e:  # any damage (truncated, overwritten): the cache is derived data
            print(f"note: {path} is damaged ({type(e).__name__}): rebuilding it", flush=True)
    enc = encode(sentences, tokenizer, max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    lens = torch.tensor([len(x) for x in enc.input_ids])
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # parallel runs never share a temp
    torch.save(
        {
            "ids": _flat(enc.input_ids),
            "widx": _flat(enc.word_index),
            "lens": lens,
            "sentence": torch.tensor(enc.sentence),
        },
        tmp,
    )
    tmp.replace(path)
    return enc


def _flat(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor([x for r in rows for x in r], dtype=torch.int64)


def _unflat(flat: torch.Tensor, lens: torch.Tensor) -> list[list[int]]:
    return [t.tolist() for t in torch.split(flat, lens.tolist())]
