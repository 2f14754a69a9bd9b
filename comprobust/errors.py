"""The one exception type for mistakes a user can fix (bad config, missing data, unknown names)."""


class UserError(Exception):
    """A problem in the user's input: the message names the file, key or value and the fix.

    The command line prints it as one line (no traceback) and exits with status 2.
    """


class WorkFailed(RuntimeError):
    """Work that was started failed (a run, a job): the first line of the message names the run, the cause and
    where its log or traceback is. The command line prints that line and exits with status 1."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): what a one-line
    error quotes from a library's multi-line one."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
