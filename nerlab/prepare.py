"""Corpora -> normalised cache: from the Hugging Face hub, local CoNLL folders, or the generator."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nerlab import synthetic
from nerlab.conll import Sentence, read_conll
from nerlab.corpora import CORPORA, SPLITS, HubSource, hub_labels
from nerlab.errors import UserError

SYNTHETIC_VERSION = 2  # bump when the generator changes, so caches rebuild
NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass
class Loaded:
    """One corpus read from a source, ready for the store."""

    splits: dict[str, list[Sentence]]
    source: str  # human-readable origin, e.g. "local:/data/ncbi_disease"
    source_id: str  # equal ids mean an unchanged source: re-preparing is a no-op
    missing: dict[str, str] = field(default_factory=dict)  # split -> what was looked for
    notes: list[str] = field(default_factory=list)


def parse_names(arg: str | None, available: list[str]) -> list[str]:
    if not arg:
        return available
    names = [n.strip() for n in arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UserError(f"unknown corpus {unknown[0]!r}; valid names: {', '.join(available)}")
    return names


def local_corpora(source: Path) -> list[str]:
    """Corpus names under DIR: every subfolder holding at least one <split>.conll."""
    if not source.is_dir():
        raise UserError(f"{source}: directory not found")
    names = sorted(
        d.name
        for d in source.iterdir()
        if d.is_dir() and any((d / f"{s}.conll").is_file() for s in SPLITS)
    )
    if not names:
        raise UserError(f"{source}: no corpora found (expected {source}/<name>/train.conll)")
    return names


def load_local(source: Path, name: str) -> Loaded:
    if not NAME_RE.match(name):
        raise UserError(f"{source / name}: corpus names may use letters, digits and _ only")
    cdir = source / name
    splits, missing, notes = {}, {}, []
    digest = hashlib.sha256()
    for split in SPLITS:
        path = cdir / f"{split}.conll"
        if not path.is_file():
            missing[split] = str(path)
            notes.append(f"{name}: {split} split absent (looked for {path})")
            continue
        digest.update(split.encode() + path.read_bytes())
        splits[split], converted = read_conll(path)
        if converted:
            notes.append(f"{name}/{split}: converted {converted} IOB1 tags to IOB2")
        _check_types(name, path, splits[split])
    return Loaded(splits, f"local:{cdir.resolve()}", "local:" + digest.hexdigest(), missing, notes)


def _check_types(name: str, path: Path, sentences: list[Sentence]) -> None:
    if name not in CORPORA:
        return
    expected = set(CORPORA[name].types)
    found = {t[2:] for s in sentences for t in s.tags if t != "O"}
    if found - expected:
        raise UserError(
            f"{path}: entity types {sorted(found - expected)} are not {name}'s types "
            f"({', '.join(sorted(expected))})"
        )


def load_synthetic(name: str, seed: int) -> Loaded:
    return Loaded(
        synthetic.generate(name, seed),
        f"synthetic (seed {seed})",
        f"synthetic:v{SYNTHETIC_VERSION}:seed{seed}",
    )


def convert_hub_split(rows, features, source: HubSource) -> list[Sentence]:
    """A hub split (tokens + integer tags) -> sentences with our BIO strings (IOB2)."""
    from nerlab.conll import to_iob2

    labels = hub_labels(features, source)
    out = []
    for tokens, ids in zip(rows["tokens"], rows[source.tags_column]):
        tags, _ = to_iob2([labels[i] for i in ids])
        out.append(Sentence(list(tokens), tags))
    return out


def load_hub(name: str) -> Loaded:  # pragma: no cover - needs the hub; conversion is tested
    import datasets

    src = CORPORA[name].hub
    ident = f"hub:{src.repo}:{src.config or ''}:{src.revision or ''}"
    try:
        ds = datasets.load_dataset(src.repo, src.config, revision=src.revision)
    except Exception as e:  # network, auth, moved repo: one line, with the id to check
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{name}: could not load {src.repo} from the hub: {first}") from e
    splits, missing = {}, {}
    for split in SPLITS:
        hub_split = src.splits.get(split)
        if hub_split is None or hub_split not in ds:
            missing[split] = f"{src.repo} split {hub_split or split!r}"
            continue
        splits[split] = convert_hub_split(ds[hub_split], ds[hub_split].features, src)
    notes = [f"{name}: {s} split absent ({m})" for s, m in missing.items()]
    return Loaded(splits, f"hub:{src.repo}", ident, missing, notes)


def format_table(entries: dict[str, dict]) -> Iterator[str]:
    """Per corpus and split: sentences, tokens, entity mentions per type (README layout)."""
    yield f"| {'dataset':<12} | {'split':<5} | {'sents':>7} | {'tokens':>7} | entities per type"
    yield f"|{'-' * 14}|{'-' * 7}|{'-' * 9}|{'-' * 9}|{'-' * 40}"
    for name, entry in entries.items():
        for split in SPLITS:
            st = entry["splits"].get(split)
            if st is None:
                yield f"| {name:<12} | {split:<5} | {'missing':>7} | {'-':>7} | -"
                continue
            ents = ", ".join(f"{t}={n}" for t, n in st["mentions"].items())
            yield f"| {name:<12} | {split:<5} | {st['sentences']:>7} | {st['tokens']:>7} | {ents}"
