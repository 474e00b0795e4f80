"""The read folder survives running out of file descriptors (EMFILE) without rejecting."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from steward_otp.inputs import folders
from steward_otp.inputs.folders import ReadFolderInput
from steward_otp.inputs.intake import Answer


async def test_emfile_skips_a_poll_and_keeps_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports: list[str] = []
    accepted: list[bytes] = []

    async def accept(document: bytes) -> list[Answer]:
        accepted.append(document)
        return [Answer(index=0, accepted=True, id="x", to_node="a", method="REQPing")]

    folder = tmp_path / "readfolder"
    (folder / "rejected").mkdir(parents=True)
    (folder / "msg.json").write_text('{"toNode": "a", "method": "REQPing"}')
    reader = ReadFolderInput(folder, accept, lambda level, text: reports.append(text))

    def out_of_descriptors(*args: object) -> object:
        raise OSError(errno.EMFILE, "Too many open files")

    real_scan, real_read = folders._regular_files, folders._read
    monkeypatch.setattr(folders, "_regular_files", out_of_descriptors)
    assert await reader._settled_files() == []  # no crash
    monkeypatch.setattr(folders, "_regular_files", real_scan)
    monkeypatch.setattr(folders, "_read", out_of_descriptors)
    await reader._settled_files()
    [name] = await reader._settled_files()
    await reader._handle(name)  # the read fails with EMFILE: the file stays, not rejected
    assert (folder / "msg.json").exists() and list((folder / "rejected").iterdir()) == []
    monkeypatch.setattr(folders, "_read", real_read)
    await reader._settled_files()
    for name in await reader._settled_files():
        await reader._handle(name)
    assert accepted and not (folder / "msg.json").exists()
    assert sum("out of file descriptors" in text for text in reports) == 2
