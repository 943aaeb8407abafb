"""The base class of the errors a user can fix (data, configuration, paths), told apart from bugs.

Entry points print a :class:`UserError` as one line saying what to do, with no traceback; any other exception
is a bug and keeps its traceback. This module imports nothing, so every part of the package can use it.
"""


class UserError(Exception):
    """Something the user gave or asked for cannot be used; the message says what to do instead."""
