"""results.tsv: the experiment log. Tab-separated, header written once, rows appended under a
file lock, never rewritten except to set aside a partial last line left by a killed writer, and
once to bring a file of the old layout to this one (a backup kept beside it).

A row is one experiment's record, every part a field of its own: the tag and number that
identify it, its role (`baseline`: a tag's first experiment, kept by rule; `experiment`;
empty for a hand run of train.py), the commit that ran, the config file that commit edits,
the scores, the decision (`status`) with its `reason`, and the proposer's `description`, as
given. `results_row` is the one place a run's summary becomes such a row.

append_tsv and read_tsv are that format for any columns; the sweep's matrix file uses them too."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import time
from pathlib import Path

import pandas as pd
from filelock import FileLock

from nerlab.errors import UserError

COLUMNS = [
    "timestamp", "tag", "n", "role", "commit", "config", "target", "dev_f1", "dev_f1_std",
    "repeats", "memory_gb", "train_s", "status", "reason", "description",
]  # fmt: skip
STATUSES = ("ok", "keep", "discard", "crash")
ROLES = ("baseline", "experiment", "")  # empty: a hand run, no experiment of a tag
NUMERIC = ("dev_f1", "dev_f1_std", "memory_gb", "train_s")
# The layout before tags, roles and reasons were fields: the decision was appended to the
# description as ` [<status>: <reason>]`, and a baseline was known by its reason.
LEGACY_COLUMNS = [
    "timestamp", "commit", "target", "dev_f1", "dev_f1_std", "repeats", "memory_gb", "train_s",
    "status", "description",
]  # fmt: skip
_LEGACY_NOTE = re.compile(r"\s*\[(?:keep|discard|crash|ok): (.*)\]\s*$")
_LEGACY_BASELINE_REASON = "first result"  # nerlab.stats.FIRST_RESULT when those rows were made


def clean(text: object) -> str:
    """One cell: no tabs or newlines (they would break the row)."""
    return " ".join(str(text).replace("\t", " ").splitlines()).strip()


def results_row(summary: dict, *, commit: str, target: str, description: str = "",
                status: str | None = None, reason: str = "", f1s: list[float] | None = None,
                tag: str = "", n: int | str = "", role: str = "", config: str = "",
                ) -> dict:  # fmt: skip
    """The row of one run of `commit`: `status` defaults to the summary's (`ok` or `crash`);
    `f1s` (the seeds behind the decision, e.g. after confirmation) default to the summary's
    own; `reason` (why kept, discarded or crashed) defaults to the summary's crash reason."""
    status = status or ("ok" if summary.get("status") == "ok" else "crash")
    if f1s is None:
        f1s = _floats(summary.get("f1_seeds", "")) if status != "crash" else []
    return {
        "tag": tag,
        "n": n,
        "role": role,
        "commit": commit,
        "config": config,
        "target": target,
        "dev_f1": f"{statistics.fmean(f1s):.6f}" if f1s else "0.000000",
        "dev_f1_std": f"{statistics.stdev(f1s):.6f}" if len(f1s) > 1 else "0.000000",
        "repeats": len(f1s) or _int(summary.get("repeats")) or 1,
        "memory_gb": f"{_number(summary.get('peak_memory_gb')):.2f}",
        "train_s": f"{_number(summary.get('train_seconds')):.1f}",
        "status": status,
        "reason": reason or summary.get("reason", ""),
        "description": description,
    }


def append_row(path: Path | str, row: dict) -> dict:
    """Append one row (missing columns empty); returns the row as written. A file of the old
    layout is migrated first (once)."""
    if row.get("role", "") not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {row.get('role')!r}")
    migrate(path)
    return append_tsv(path, COLUMNS, STATUSES, row, kind="results")


def read_results(path: Path | str) -> pd.DataFrame:
    """All rows, in this layout whatever the file's (the old one is read as it is, unchanged);
    a malformed file is an error naming the line, never silently dropped rows."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: results file not found")
    legacy = _is_legacy(path)
    df = read_tsv(
        path,
        LEGACY_COLUMNS if legacy else COLUMNS,
        numeric=NUMERIC,
        integers={"repeats": 0} if legacy else {"repeats": 0, "n": 0},
        partial="results.tsv.partial",
        statuses=STATUSES,
    )
    return _upgrade(df) if legacy else df


def migrate(path: Path | str) -> bool:
    """Bring a results.tsv of the old layout to this one, atomically, the old file kept as
    `<path>.v1.bak`; says so once. True if it migrated."""
    path = Path(path)
    with FileLock(str(path) + ".lock"):
        if not path.exists() or not _is_legacy(path):
            return False
        _set_aside_partial_line(path)
        df = _upgrade(read_tsv(path, LEGACY_COLUMNS, statuses=STATUSES))
        backup = path.with_name(path.name + ".v1.bak")
        shutil.copy2(path, backup)
        tmp = path.with_name(path.name + ".migrating")
        lines = ["\t".join(COLUMNS)] + ["\t".join(clean(v) for v in r) for r in df.values]
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    print(f"note: {path}: migrated {len(df)} rows to the new layout (tag, n, role, config, "
          f"reason columns); the old file is kept as {backup}")  # fmt: skip
    return True


def _is_legacy(path: Path) -> bool:
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    return first.split("\t") == LEGACY_COLUMNS


def _upgrade(df: pd.DataFrame) -> pd.DataFrame:
    """Old-layout rows as rows of this layout: the decision note split off the description;
    a kept `first result` is a baseline; tag, number and config were not recorded."""
    notes = df["description"].str.extract(_LEGACY_NOTE, expand=False).fillna("")
    out = df.assign(
        description=df["description"].str.replace(_LEGACY_NOTE, "", regex=True),
        reason=notes,
        role=[_legacy_role(s, r) for s, r in zip(df["status"], notes)],
        tag="",
        n=0,
        config="",
    )
    return out[COLUMNS]


def _legacy_role(status: str, reason: str) -> str:
    if status == "ok":
        return ""  # a hand run of train.py --results
    baseline = status == "keep" and reason.startswith(_LEGACY_BASELINE_REASON)
    return "baseline" if baseline else "experiment"


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        return []


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def _int(text) -> int:
    return int(_number(text))


# -----------------------------------------------------------------------------
# any such log (results.tsv, the sweep's matrix file): one writer's row at a time


def append_tsv(
    path: Path | str, columns: list[str], statuses: tuple[str, ...], row: dict, *, kind: str
) -> dict:
    """Append one row (missing columns empty, `timestamp` now unless given) to a TSV log of
    `columns`, under a file lock, the header first when the file is new or empty; a partial last
    line left by a killed writer is set aside first. Returns the cells as written. An unknown
    column or a status not in `statuses` is a ValueError (`kind` names the log)."""
    path = Path(path)
    unknown = set(row) - set(columns)
    if unknown:
        raise ValueError(f"unknown {kind} columns: {sorted(unknown)}")
    if row.get("status") not in statuses:
        raise ValueError(f"status must be one of {statuses}, got {row.get('status')!r}")
    if "timestamp" in columns:
        row = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), **row}
    cells = {c: clean(row.get(c, "")) for c in columns}
    path.parent.mkdir(parents=True, exist_ok=True)
    line = "\t".join(cells[c] for c in columns) + "\n"
    with FileLock(str(path) + ".lock"):
        _set_aside_partial_line(path)
        with open(path, "ab", buffering=0) as f:  # unbuffered: a failed write fails here
            size = f.seek(0, os.SEEK_END)
            text = ("\t".join(columns) + "\n" if size == 0 else "") + line
            try:
                _write_row(f, text.encode("utf-8"))
            except OSError as e:  # a full disk: take back the part that was written
                os.truncate(path, size)
                raise UserError(f"{path}: cannot append a row: {e.strerror or e}") from None
    return cells


def _write_row(f, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a raw write may be partial
        view = view[f.write(view) :]


def read_tsv(
    path: Path | str,
    columns: list[str],
    numeric: tuple[str, ...] = (),
    integers: dict[str, int] | None = None,
    *,
    header: str = "header",
    partial: str | None = None,
    statuses: tuple[str, ...] = (),
) -> pd.DataFrame:
    """The rows of a TSV log written by append_tsv: every cell a string, as written (no CSV
    quoting), but the `numeric` columns (floats, NaN where empty or not a number) and the
    `integers` ones (ints, the given value where empty). A malformed file is a UserError naming
    file:line, never silently dropped rows, and the file is never changed here: bytes that are
    not UTF-8, a first line other than `columns` ("expected the <header> ..."), a line with
    another number of cells, where `statuses` is given a status not in it, and, where `partial`
    names the file the next append sets it aside in, a last line without its newline (a writer
    killed mid-row)."""
    path = Path(path)
    data = path.read_bytes()
    lines = _decode(path, data).splitlines()
    if partial and lines and not data.endswith(b"\n"):
        raise UserError(
            f"{path}:{len(lines)}: last line is incomplete (a writer was killed mid-row); "
            f"the next append sets it aside in {partial}"
        )
    if not lines or lines[0].split("\t") != columns:
        raise UserError(f"{path}:1: expected the {header} {' '.join(columns)}")
    rows = [_cells(path, n, line, columns, statuses) for n, line in enumerate(lines[1:], 2)]
    df = pd.DataFrame(rows, columns=columns, dtype=str)
    for c in numeric:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    for c, empty in (integers or {}).items():
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(empty).astype(int)
    return df


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:  # a disk error or a stray binary write: say where
        line = data.count(b"\n", 0, e.start) + 1
        line_start = data.rfind(b"\n", 0, e.start) + 1
        raise UserError(
            f"{path}:{line}: not valid UTF-8 "
            f"(byte {data[e.start]:#04x} at column {e.start - line_start + 1}); "
            "fix or delete that line (the rows before it are intact)"
        ) from None


def _cells(path: Path, n: int, line: str, columns: list[str], statuses: tuple[str, ...]):
    cells = line.split("\t")
    if len(cells) != len(columns):
        raise UserError(
            f"{path}:{n}: expected {len(columns)} tab-separated columns, found {len(cells)}"
        )
    status = cells[columns.index("status")] if statuses else None
    if statuses and status not in statuses:
        raise UserError(f"{path}:{n}: status {status!r} is not one of {', '.join(statuses)}")
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


# -----------------------------------------------------------------------------
# the transfer matrix's file (written by nerlab.sweep, read by analyze.py)

BASELINE = "-"  # the source of a target-only run
MATRIX_COLUMNS = [
    "timestamp", "protocol", "target", "source", "fraction", "seed", "dev_f1", "train_s",
    "total_s", "steps", "memory_gb", "device", "status", "reason",
]  # fmt: skip
MATRIX_STATUSES = ("ok", "crash")
MATRIX_NUMERIC = ("fraction", "dev_f1", "train_s", "total_s", "memory_gb")


def append_matrix_row(path: Path | str, row: dict) -> dict:
    """Append one row (missing columns empty); returns the cells as written."""
    return append_tsv(path, MATRIX_COLUMNS, MATRIX_STATUSES, row, kind="matrix")


def read_matrix(path: Path | str) -> pd.DataFrame:
    """All rows; a missing, empty or malformed file is a UserError naming the line."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: matrix file not found (write one with: python -m nerlab.sweep)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (no header, no runs)")
    integers = {"seed": -1, "steps": -1}
    return read_tsv(path, MATRIX_COLUMNS, MATRIX_NUMERIC, integers, header="matrix header")
