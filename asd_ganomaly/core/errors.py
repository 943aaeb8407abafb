"""The base class of the errors a user can fix (data, configuration, paths), told apart from bugs.

Entry points print a :class:`UserError` as one line saying what to do (:func:`error_line`), with no traceback,
and exit with status 2 (:data:`USER_ERROR_EXIT`); any other exception is a bug and keeps its traceback. This
module imports nothing, so every part of the package can use it.
"""


class UserError(Exception):
    """Something the user gave or asked for cannot be used; the message says what to do instead."""


USER_ERROR_EXIT = 2
"""The exit status of a command refused for a user error (as argparse exits for a bad argument)."""


def error_line(prog: str, error: BaseException) -> str:
    """``<prog>: error: <message>`` on one line (a message of several lines joined with ``; ``)."""
    message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{prog}: error: {message}"
