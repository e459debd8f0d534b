"""The project's own error types. A `UserError` is a mistake the user can fix (a bad config
value, a corrupt file, a missing dataset): the CLI prints its message on one line and exits
with status 2. Anything else is a bug and keeps its traceback.

`UserError` subclasses `ValueError` so library callers that catch ValueError keep working.
"""

import contextlib


class UserError(ValueError):
    """Bad input; the message names the problem and the fix."""


@contextlib.contextmanager
def disk_errors(what: str, fix: str):
    """A full disk or a read-only folder is the machine's state, not a bug: an OSError inside
    becomes a UserError naming `what` failed, why, and the `fix`."""
    try:
        yield
    except OSError as err:
        raise UserError(f"could not {what}: {err.strerror or err}; {fix}") from err
