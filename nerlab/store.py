"""The prepared-corpus cache: one normalised parquet file per corpus and split, plus a manifest.

Layout under $NER_AR_HOME (default ~/.cache/ner-autoresearch):
    data/<corpus>/<split>.parquet       real corpora (hub or local CoNLL)
    synthetic/<corpus>/<split>.parquet  generated corpora for the offline demo and tests
    <root>/manifest.json                per corpus: source, types, per-split counts and hashes
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nerlab.conll import Sentence
from nerlab.corpora import CORPORA, View, resolve_view
from nerlab.errors import UserError

DATA_KINDS = ("prepared", "synthetic")


def home() -> Path:
    return Path(os.environ.get("NER_AR_HOME", Path.home() / ".cache" / "ner-autoresearch"))


def data_root(kind: str = "prepared") -> Path:
    return home() / ("synthetic" if kind == "synthetic" else "data")


@dataclass
class SplitStats:
    sentences: int
    tokens: int
    mentions: dict[str, int]
    sha256: str


def split_stats(sentences: list[Sentence]) -> SplitStats:
    mentions = Counter(t[2:] for s in sentences for t in s.tags if t.startswith("B-"))
    h = hashlib.sha256()
    for s in sentences:
        h.update(("\t".join(s.tokens) + "\n" + "\t".join(s.tags) + "\n\n").encode())
    return SplitStats(
        len(sentences),
        sum(len(s.tokens) for s in sentences),
        dict(sorted(mentions.items())),
        h.hexdigest(),
    )


class Store:
    """Read and write one data root (prepared or synthetic)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"

    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            return {}
        return json.loads(self.manifest_path.read_text())

    def entry(self, corpus: str) -> dict | None:
        return self.manifest().get(corpus)

    def write(self, corpus: str, splits: dict[str, list[Sentence]], info: dict) -> dict:
        """Write a corpus's splits and its manifest entry: every file is written beside its
        place first, then all are renamed into place, so a failed write (a full disk) leaves
        the previous files whole and no partial file behind."""
        cdir = self.root / corpus
        cdir.mkdir(parents=True, exist_ok=True)
        stats = {split: split_stats(sentences).__dict__ for split, sentences in splits.items()}
        types = sorted({t for st in stats.values() for t in st["mentions"]})
        entry = {**info, "types": types, "splits": stats}
        manifest = self.manifest()
        manifest[corpus] = entry
        staged: dict[Path, Path] = {}  # temporary file -> its place
        try:
            for split, sentences in splits.items():
                tokens, tags = [s.tokens for s in sentences], [s.tags for s in sentences]
                tmp = cdir / f".{split}.parquet.tmp"
                staged[tmp] = cdir / f"{split}.parquet"
                pq.write_table(pa.table({"tokens": tokens, "tags": tags}), tmp)
            tmp = self.manifest_path.with_suffix(".tmp")
            staged[tmp] = self.manifest_path
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        except OSError as e:
            for tmp in staged:
                tmp.unlink(missing_ok=True)
            raise UserError(
                f"{corpus}: cannot write the prepared corpus under {self.root} "
                f"({e.strerror or e}); nothing was changed: free space and rerun"
            ) from None
        for old in cdir.glob("*.parquet"):  # a split the new source no longer has
            if old not in staged.values():
                old.unlink()
        for tmp, place in staged.items():  # the manifest last: it vouches for the files
            tmp.replace(place)
        return entry

    def known_types(self) -> dict[str, tuple[str, ...]]:
        """Types of every prepared corpus (registry types for the five, inferred for local)."""
        out = {}
        for name, entry in self.manifest().items():
            out[name] = CORPORA[name].types if name in CORPORA else tuple(entry["types"])
        return out

    def view(self, spec: str) -> View:
        return resolve_view(spec, self.known_types())

    def require(self, corpora: list[str]) -> None:
        """A UserError naming every corpus of `corpora` not prepared here, and the one command
        that prepares them (a data root deleted mid-night fails every run with this reason)."""
        missing = [c for c in dict.fromkeys(corpora) if self.entry(c) is None]
        if not missing:
            return
        names = ", ".join(repr(c) for c in missing)
        what = f"corpus {names} is" if len(missing) == 1 else f"corpora {names} are"
        raise UserError(f"{what} not prepared in {self.root}; run: {self.prepare_command(missing)}")

    def prepare_command(self, corpora: list[str]) -> str:
        synthetic = " --synthetic" if self.root.name == "synthetic" else ""
        return f"python prepare_data.py --corpora {','.join(corpora)}{synthetic}"

    def read(self, corpus: str, split: str) -> list[Sentence]:
        """Sentences of one prepared split; a clear error names what is missing and the fix."""
        self.require([corpus])
        entry = self.entry(corpus)
        if split not in entry["splits"]:
            looked = entry.get("missing", {}).get(split, f"split {split!r}")
            raise UserError(
                f"corpus {corpus!r} has no {split} split (looked for {looked}); "
                f"available: {', '.join(entry['splits'])}"
            )
        path = self.root / corpus / f"{split}.parquet"
        if not path.is_file():  # the manifest says prepared: only a rebuild brings it back
            raise UserError(
                f"corpus {corpus!r}: {path} is missing (deleted since it was prepared?); "
                f"run: {self.prepare_command([corpus])} --force"
            )
        cols = pq.read_table(path).to_pydict()
        return [Sentence(t, g) for t, g in zip(cols["tokens"], cols["tags"])]

    def fingerprint(self, corpus: str, split: str) -> str:
        entry = self.entry(corpus)
        return entry["splits"][split]["sha256"] if entry else ""
