"""One exception type for every user-facing problem: the scripts print it as one line."""


class UserError(Exception):
    """Bad input (data, config, arguments): the message says what and where, no traceback."""
