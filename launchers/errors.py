"""The one exception type for user mistakes: printed as a single line, never as a traceback."""


class UserError(Exception):
    """A mistake the user can fix; the message says what was wrong and what to do."""
