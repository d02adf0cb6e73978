"""One exception type for problems the user can fix (bad flags, files, specs)."""

import sys
from collections.abc import Callable


class MiniDiscError(Exception):
    """A user-facing error: `run.py` prints its message on one line and exits with `code`
    (2: bad input; subclasses for faults during a run use others)."""

    code = 2


def reraise_inner(e: BaseException) -> None:
    """Re-raise the MiniDiscError behind a library's exception, if any: a signal's
    `Interrupted` raised inside a library call (loading a checkpoint, a tokenizer) surfaces
    as whatever the library raises while it unwinds (e.g. torch's "pop from empty mode
    stack"), and must still stop the run as the signal, not read as bad input."""
    seen = e
    while seen is not None:
        if isinstance(seen, MiniDiscError):
            raise seen
        seen = seen.__cause__ or seen.__context__


def exit_code(action: Callable[[], object]) -> int:
    """Run a command-line action: 0 on success, 2 with one `error: ...` line on user error."""
    try:
        action()
    except MiniDiscError as e:
        # one line even when a message quotes something multi-line (a path, a library's text)
        message = " | ".join(x.strip() for x in str(e).splitlines() if x.strip())
        print(f"error: {message or type(e).__name__}", file=sys.stderr)
        return e.code
    return 0
