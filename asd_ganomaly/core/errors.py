"""The base class of the errors a user can fix (data, configuration, paths), told apart from bugs.

Entry points print a :class:`UserError` as one line saying what to do (:func:`error_line`), with no traceback,
and exit with status 2 (:data:`USER_ERROR_EXIT`); any other exception is a bug and keeps its traceback. This
module imports nothing, so every part of the package can use it.
"""


class UserError(Exception):
    """Something the user gave or asked for cannot be used; the message says what to do instead."""


class HandledFailure(Exception):
    """A run that failed for a reason its message tells in full (a diverged loss): one line on the console and
    exit status 1 (:data:`SOME_INPUTS_FAILED`), the traceback in the run's log only."""


USER_ERROR_EXIT = 2
"""The exit status of a command refused for a user error (as argparse exits for a bad argument)."""
SOME_INPUTS_FAILED = 1
"""The exit status of a command that wrote its results but not for every input (a file that could not be scored, a
run of a sweep that failed): each failure is named in what it wrote."""
CTRL_C_EXIT_CODE = 130
"""The exit status of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports it)."""


def error_line(prog: str, error: BaseException) -> str:
    """``<prog>: error: <message>`` on one line (a message of several lines joined with ``; ``)."""
    message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{prog}: error: {message}"
