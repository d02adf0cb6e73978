"""One exception type for problems the user can fix (bad flags, files, specs)."""

import sys
from collections.abc import Callable


class MiniDiscError(Exception):
    """A user-facing error: `run.py` prints its message on one line and exits with code 2."""


def exit_code(action: Callable[[], object]) -> int:
    """Run a command-line action: 0 on success, 2 with one `error: ...` line on user error."""
    try:
        action()
    except MiniDiscError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
