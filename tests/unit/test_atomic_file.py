"""Files replaced whole: the old content or the new, never a mix, and no leftovers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from steward_otp.atomic_file import fsync_folder, write_atomically


def test_the_content_is_replaced_with_the_mode_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("old")
    write_atomically(path, "new ✓")
    assert path.read_text(encoding="utf-8") == "new ✓"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_atomically(path, b"\x00bytes", mode=0o640, sync_folder=True)
    assert path.read_bytes() == b"\x00bytes"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~_umask()
    assert os.listdir(tmp_path) == ["keys.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("old")

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("steward_otp.atomic_file.os.fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["config.toml"]


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "absent" / "f", "x")
    with pytest.raises(FileNotFoundError):
        fsync_folder(tmp_path / "absent")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
