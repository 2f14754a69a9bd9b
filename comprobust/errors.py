"""The one exception type for mistakes a user can fix (bad config, missing data, unknown names)."""


class UserError(Exception):
    """A problem in the user's input: the message names the file, key or value and the fix.

    The command line prints it as one line (no traceback) and exits with status 2.
    """


class WorkFailed(RuntimeError):
    """Work that was started failed (a run, a job): the first line of the message names the run, the cause and
    where its log or traceback is. The command line prints that line and exits with status 1."""
