"""Atomic writes: every file or folder the package writes for a user (checkpoints, results,
resume state, predictions, ONNX models, downloads) appears whole or not at all."""

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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
        _flush(tmp)
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            _remove(old)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        _remove(tmp)


def write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write `data` as indented JSON to `path` atomically (values JSON lacks as their str)."""
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")
