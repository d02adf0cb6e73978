"""One exception type for problems the user can fix (bad flags, files, specs)."""


class MiniDiscError(Exception):
    """A user-facing error: `run.py` prints its message on one line and exits with code 2."""
