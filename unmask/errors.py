"""The project's own error types. A `UserError` is a mistake the user can fix (a bad config
value, a corrupt file, a missing dataset): the CLI prints its message on one line and exits
with status 2. Anything else is a bug and keeps its traceback.

`UserError` subclasses `ValueError` so library callers that catch ValueError keep working.
"""


class UserError(ValueError):
    """Bad input; the message names the problem and the fix."""
