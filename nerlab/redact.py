"""Secrets (any `*_API_KEY`, `*_TOKEN`, `*_SECRET` in the environment) are read from the
environment only: never passed to a Ray task, logged, or shown in an error."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET")


def is_secret(name: str) -> bool:
    return name.upper().endswith(SECRET_SUFFIXES)


def redact(text: str) -> str:
    """`text` with the value of every secret in the environment replaced."""
    for name, value in os.environ.items():
        if is_secret(name) and len(value) >= 4:  # a 1-3 character value would mangle any text
            text = text.replace(value, "[redacted]")
    return text


@contextlib.contextmanager
def withheld() -> Iterator[None]:
    """os.environ without its secrets while processes start that would inherit them (a local
    Ray instance: its workers are children of its raylet, not of this process)."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if is_secret(k)}
    try:
        yield
    finally:
        os.environ.update(saved)
