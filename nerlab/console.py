"""Progress bars only on a terminal: redirected to a log, a bar's carriage returns run into the
lines around it. Call before transformers, datasets or huggingface_hub are imported (they read
these settings once, at import)."""

from __future__ import annotations

import os
import sys


def bars_wanted() -> bool:
    return sys.stderr.isatty()


def no_bars_in_logs() -> None:
    """Turn off the hub's, transformers' and datasets' bars unless stderr is a terminal (a
    setting the user made in the environment wins)."""
    if bars_wanted():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers follows the hub
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
