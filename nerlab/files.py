"""Files other runs read back (scores, reports, model directories): written beside, then renamed
in, so a kill or a full disk leaves the old file whole or none, never a torn one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from nerlab.errors import UserError


def write_atomic(path: Path | str, text: str) -> None:
    """Replace `path` with `text` in one step; a failed write is a UserError naming the file,
    and `path` is as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600: these files are for reading
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UserError(f"{path}: cannot write: {e.strerror or e}") from None


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its relative POSIX path (a model directory sent back from a
    Ray task to the driver)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def write_tree(out: Path, files: dict[str, bytes]) -> None:
    """`out` becomes a directory holding exactly `files` (from read_tree), swapped in whole."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for rel, data in files.items():
            path = staging / rel
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise UserError(f"{out}: refusing a file outside it: {rel!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        swap_dir(staging, out)
    except OSError as e:
        raise UserError(f"{out}: cannot write: {e.strerror or e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone when swapped in


def swap_dir(new: Path, out: Path) -> None:
    """`new` becomes `out`; an old `out` is moved aside first and deleted once `new` is in."""
    if not out.exists():
        new.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    try:
        out.rename(old / out.name)
        try:
            new.rename(out)
        except OSError:
            (old / out.name).rename(out)  # put the old one back
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
