"""minidisc.files.atomic_write: a file or folder appears whole or not at all."""

from pathlib import Path

import pytest

from minidisc.files import atomic_write, write_json


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_file_replaced_only_on_success(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), atomic_write(path) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("killed while writing")
    assert path.read_text(encoding="utf-8") == '{\n  "a": 1\n}\n'
    write_json(path, {"a": Path("b")})
    assert path.read_text(encoding="utf-8") == '{\n  "a": "b"\n}\n'
    assert _leftovers(tmp_path) == []


def test_folder_swapped_whole(tmp_path):
    path = tmp_path / "student"
    with atomic_write(path) as tmp:
        tmp.mkdir()
        (tmp / "old.bin").write_bytes(b"1")
    with pytest.raises(OSError), atomic_write(path) as tmp:
        tmp.mkdir()
        (tmp / "new.bin").write_bytes(b"2")
        raise OSError("disk full")
    assert [p.name for p in path.iterdir()] == ["old.bin"]
    with atomic_write(path) as tmp:
        tmp.mkdir()
        (tmp / "new.bin").write_bytes(b"2")
    assert [p.name for p in path.iterdir()] == ["new.bin"]
    assert _leftovers(tmp_path) == []
