"""The one exception type for mistakes a user can fix (bad config, missing data, unknown names)."""


class UserError(Exception):
    """A problem in the user's input: the message names the file, key or value and the fix.

    The command line prints it as one line (no traceback) and exits with status 2.
    """
