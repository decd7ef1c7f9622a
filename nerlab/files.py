"""Files other runs read back (scores, reports): written beside, then renamed in, so a kill or a
full disk leaves the old file whole or none, never a torn one."""

from __future__ import annotations

import contextlib
import os
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
