"""Stopping on a signal. SIGINT (Ctrl-C), SIGTERM (`kill`, a scheduler's stop) and SIGHUP (a
dropped ssh session) each unwind the main thread as `Interrupted`, a KeyboardInterrupt that
knows its signal: the loop and final.py clean up the same way for all three, say which one
it was, and the script exits with the conventional 128 + signal number."""

from __future__ import annotations

import signal
import threading

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """Its text is the one line the script prints: the signal, and what was done about it."""

    def __init__(self, signum: int = signal.SIGINT, done: str = ""):
        name = signal.Signals(signum).name
        super().__init__(f"interrupted ({name})" + (f": {done}" if done else ""))
        self.signum = signum


_received: list[int] = []  # by our handler, in order


def signum_of(e: KeyboardInterrupt) -> int:
    """The signal behind an interruption. A library may turn ours into a plain
    KeyboardInterrupt (Ray's `ray.wait` does): then the first one our handler received; else
    Python's own Ctrl-C."""
    return getattr(e, "signum", None) or (_received[0] if _received else signal.SIGINT)


def name_of(e: KeyboardInterrupt) -> str:
    return signal.Signals(signum_of(e)).name


def exit_code(e: KeyboardInterrupt) -> int:
    return 128 + signum_of(e)


def told(e: KeyboardInterrupt, done: str) -> Interrupted:
    """The same interruption, now saying what was done about it."""
    return Interrupted(signum_of(e), done)


def install() -> None:
    """Turn the three signals into `Interrupted` in the main thread; one already ignored
    (`nohup` ignores SIGHUP) stays ignored."""
    for signum in HANDLED:
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, _interrupt)


def _interrupt(signum: int, frame) -> None:
    # The first signal stops the work; later ones (a second Ctrl-C, SIGHUP then SIGTERM from a
    # closing session) must not cut short the rows being written for the first.
    for other in HANDLED:
        if signal.getsignal(other) == _interrupt:
            signal.signal(other, signal.SIG_IGN)
    _received.append(signum)
    raise Interrupted(signum)


class kept_handlers:
    """Puts this process's signal handlers back after a library that replaces them (Ray's
    `ray.init` sets its own SIGTERM handler on the driver, and its core worker a C-level one
    that prints `*** SIGTERM received ***` and exits 1)."""

    def __enter__(self):
        main = threading.current_thread() is threading.main_thread()
        self.saved = {s: signal.getsignal(s) for s in HANDLED} if main else {}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.saved.items():
            if handler is not None:
                signal.signal(signum, handler)
