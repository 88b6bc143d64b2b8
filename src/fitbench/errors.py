"""The one error type that the CLI turns into a single stderr line and exit status 2."""


class UsageError(ValueError):
    """Bad input from the user: reported as one line, exit status 2, nothing written."""
