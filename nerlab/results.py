"""results.tsv: the experiment log. Tab-separated, header written once, rows appended under a
file lock, never rewritten except to set aside a partial last line left by a killed writer."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from filelock import FileLock

from nerlab.errors import UserError

COLUMNS = [
    "timestamp", "commit", "target", "dev_f1", "dev_f1_std", "repeats", "memory_gb", "train_s",
    "status", "description",
]  # fmt: skip
STATUSES = ("ok", "keep", "discard", "crash")


def clean(text: object) -> str:
    """One cell: no tabs or newlines (they would break the row)."""
    return " ".join(str(text).replace("\t", " ").splitlines()).strip()


def append_row(path: Path | str, row: dict) -> dict:
    """Append one row (missing columns empty); returns the row as written."""
    path = Path(path)
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown results columns: {sorted(unknown)}")
    if row.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row.get('status')!r}")
    row = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), **row}
    cells = {c: clean(row.get(c, "")) for c in COLUMNS}
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        _set_aside_partial_line(path)
        with open(path, "a", encoding="utf-8") as f:
            if f.tell() == 0:
                f.write("\t".join(COLUMNS) + "\n")
            f.write("\t".join(cells[c] for c in COLUMNS) + "\n")
    return cells


def repair(path: Path | str) -> None:
    """Make `path` readable again after a writer was killed mid-row (see below)."""
    path = Path(path)
    with FileLock(str(path) + ".lock"):
        _set_aside_partial_line(path)


def _set_aside_partial_line(path: Path) -> None:
    """A writer killed mid-row leaves a line without its newline: move it to `<path>.partial`
    (nothing is lost) so the next row does not fuse with it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with open(str(path) + ".partial", "ab") as f:
        f.write(data[cut:] + b"\n")
    with open(path, "r+b") as f:
        f.truncate(cut)
    print(f"warning: {path}: set aside a partial last line in {path}.partial")


def read_results(path: Path | str) -> pd.DataFrame:
    """All rows; a malformed file is an error naming the line, never silently dropped rows."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: results file not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and not path.read_bytes().endswith(b"\n"):
        raise UserError(
            f"{path}:{len(lines)}: last line is incomplete (a writer was killed mid-row); "
            "the next append sets it aside in results.tsv.partial"
        )
    if not lines or lines[0].split("\t") != COLUMNS:
        raise UserError(f"{path}:1: expected the header {' '.join(COLUMNS)}")
    for n, line in enumerate(lines[1:], 2):
        if line.count("\t") != len(COLUMNS) - 1:
            raise UserError(
                f"{path}:{n}: expected {len(COLUMNS)} tab-separated columns, "
                f"found {line.count(chr(9)) + 1}"
            )
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    for c in ("dev_f1", "dev_f1_std", "memory_gb", "train_s"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["repeats"] = pd.to_numeric(df["repeats"], errors="coerce").fillna(0).astype(int)
    return df
