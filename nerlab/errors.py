"""One exception type for every user-facing problem: the scripts print it as one line."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input (data, config, arguments): the message says what and where, no traceback."""

    cause = ""  # a stable name for a fault whose message varies (the summary's `cause:`)


class DataMissing(UserError):
    """Prepared corpora are gone (e.g. a data root deleted mid-night): no config can run."""

    cause = "data-missing"


def run_cli(main: Callable[[], int]) -> None:
    """Run a script's main: a UserError becomes `error: ...` on stderr and exit code 1; an
    interruption (nerlab.signals) one line and exit code 128 + its signal, as a shell's."""
    from nerlab import signals

    try:
        sys.exit(main())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as e:
        print(str(e) or "interrupted (SIGINT)", file=sys.stderr)
        sys.exit(signals.exit_code(e))
