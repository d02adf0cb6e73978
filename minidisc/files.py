"""Atomic writes: every file or folder the package writes for a user (checkpoints, results,
resume state, predictions, ONNX models, downloads) appears whole or not at all."""

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from minidisc.errors import MiniDiscError


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flush(path: Path) -> None:
    """Push `path` (a file, or a folder and every file in it) to disk before it is renamed."""
    if path.is_dir():
        for sub in sorted(path.rglob("*")):
            if sub.is_file():
                _fsync(sub)
    _fsync(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the block to write (a file or a folder).

    When the block ends without error, the temporary is flushed to disk (fsync) and renamed
    onto `path` (os.replace; an existing folder is swapped out first, then removed), so a
    reader, a crash or a kill never sees a half-written `path`. On error it is removed and
    `path` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        crash_point(f"{path.name}.written")
        _flush(tmp)
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            _remove(old)
            os.replace(path, old)
            crash_point(f"{path.name}.moved")
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(old, path)
                raise
            crash_point(f"{path.name}.replaced")
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync(path.parent)
        crash_point(f"{path.name}.done")
    finally:
        _remove(tmp)


def recover_writes(folder: str | Path) -> None:
    """Undo what a kill left of atomic_writes under `folder` (another process's, so their
    names hold another pid): a folder swapped out but never replaced goes back in place;
    temporaries and superseded copies go."""
    for scratch in sorted(Path(folder).rglob(".*.old-*")) + sorted(Path(folder).rglob(".*.tmp-*")):
        kind = ".old-" if ".old-" in scratch.name else ".tmp-"
        target = scratch.with_name(scratch.name[1:].rsplit(kind, 1)[0])
        if kind == ".old-" and not target.exists():
            os.replace(scratch, target)
        elif scratch.exists():
            _remove(scratch)


# Test-only: "<point>:<n>" ends the process (os._exit, as a SIGKILL would) the n-th time it
# reaches `crash_point(point)`: the resume tests kill a run inside each write (points
# `<file name>.written`, `.moved`, `.replaced`, `.done`).
CRASH_AT = "MINIDISC_TEST_CRASH_AT"
_reached: Counter[str] = Counter()


def crash_point(point: str) -> None:
    at = os.environ.get(CRASH_AT)
    if at:
        _reached[point] += 1
        if at == f"{point}:{_reached[point]}":
            os._exit(137)


def write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write `data` as indented JSON to `path` atomically (values JSON lacks as their str)."""
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def read_mapping(path: Path, flag: str | None = None) -> Any:
    """The value a YAML file holds (JSON for a `.json` file; YAML reads JSON too), with one
    error line naming the file and the line of a syntax error, or the flag that named an
    unreadable file (`flag`). A config file and a sweep's SPEC are read through here; each
    caller checks the shape it needs."""
    import yaml  # only the commands that read such files need it

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        where = f"{flag} {path}" if flag else str(path)
        raise MiniDiscError(f"{where}: cannot read it ({getattr(e, 'strerror', None) or e})"
                            ) from None
    try:
        return json.loads(text) if Path(path).suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise MiniDiscError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise MiniDiscError(f"{path}{line}: not valid YAML "
                            f"({getattr(e, 'problem', None) or e})") from None
