"""The folder inputs: the read folder (files dropped in are sent) and the startup folder.

Read folder (``read_folder``, default ``<home>/readfolder``, on with ``enable_read_folder``):
the folder is polled every ``poll_interval`` seconds (0.5) with ``os.scandir``. A file is
taken once it is a regular file whose size and modification time did not change between
two polls; dotfiles and names ending in ``.tmp`` or ``.part`` are left alone, so a producer
that writes ``msg.json.tmp`` and renames it to ``msg.json`` is never read half-written.
Its messages go through the node's input path; once every message is durable in the outbox
the file is deleted. A file with any rejected message (or that cannot be read, is empty or
is too large, or whose name is not valid UTF-8) is moved to ``rejected/`` with
``<name>.error`` beside it: one JSON answer
line per message, accepted ones included — those were accepted and will be delivered
(rejected ones beyond :data:`~steward_otp.inputs.answers.MAX_REJECTED_ANSWERS` are counted in
one last line). One file causes at most
:data:`~steward_otp.inputs.answers.MAX_REPORTS_PER_DOCUMENT` error-log lines. When the node
runs out of file descriptors (EMFILE/ENFILE) the folder is read again at the next poll: no
file is rejected for it and the input does not crash.

Startup folder (``<home>/startup``): at every start of the node, each file's messages are
submitted through the node's own outbox, in file-name order. ``fromNode`` is kept as
written and is required (replies go there); ``local`` in ``toNode`` means this node. The
files stay where they are. A bad file or message is reported and does not stop the node.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import trio

from steward_otp.handlers.base import Level
from steward_otp.inputs.answers import bounded_answers, bounded_reports, empty_document
from steward_otp.inputs.document_stream import DEFAULT_MAX_DOCUMENT_BYTES, AcceptDocument
from steward_otp.inputs.intake import Answer, document_rejection, rejection_texts

log = logging.getLogger(__name__)

Report = Callable[[Level, str], None]

IGNORED_SUFFIXES = (".tmp", ".part")
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
REJECTED_FOLDER = "rejected"
FOLDER_MODE = 0o770


class FolderError(Exception):
    """A folder input cannot use its folder; ``str()`` names the folder and the reason."""


def is_candidate(name: str) -> bool:
    """Whether a file name is one the folder inputs read (not a dotfile, not in progress)."""
    return not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


def _regular_files(folder: Path) -> dict[str, tuple[int, int]]:
    """``{name: (size, mtime_ns)}`` of the candidate regular files directly in ``folder``."""
    found: dict[str, tuple[int, int]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if not is_candidate(entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                status = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            found[entry.name] = (status.st_size, status.st_mtime_ns)
    return found


def shown_name(name: str) -> str:
    """A file name as text that can always be written out: the bytes of a name that are
    not UTF-8 (lone surrogates, as ``os.scandir`` gives them) shown as ``\\xff``."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no byte of a file name turns into
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None when it holds more than ``limit`` bytes."""
    with path.open("rb") as file:
        data = file.read(limit + 1)
    return None if len(data) > limit else data


def _make_folder(folder: Path, what: str) -> None:
    try:
        folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    except FileExistsError:
        raise FolderError(f"cannot create {what} {folder}: a file is in the way") from None
    except OSError as error:
        raise FolderError(f"cannot create {what} {folder}: {error.strerror or error}") from None


def _unused_name(folder: Path, name: str) -> str:
    """``name``, or ``name.1``, ``name.2``, ... : one that neither it nor its .error uses."""
    candidate, n = name, 0
    while (folder / candidate).exists() or (folder / f"{candidate}.error").exists():
        n += 1
        candidate = f"{name}.{n}"
    return candidate


def _move_to_rejected(path: Path, rejected: Path, lines: Iterable[str]) -> Path:
    """Move ``path`` into ``rejected`` and write its ``.error`` file; returns the new path.

    The file is moved first: a crash in between leaves it rejected without its error file,
    never back in the read folder to be sent again.
    """
    target = rejected / _unused_name(rejected, path.name)
    os.replace(path, target)
    # Written aside and renamed in, so whoever sees the .error file sees all of it.
    temporary = rejected / f".{target.name}.error.tmp"
    temporary.write_text("".join(lines), encoding="utf-8")
    os.replace(temporary, rejected / f"{target.name}.error")
    return target


class ReadFolderInput:
    """Supervised process watching the read folder. See the module docstring.

    Ready once the folder (and its ``rejected/`` sub-folder) exists; a folder that cannot be
    created is a crash raising :class:`FolderError`. A file being handled when the process
    is cancelled is handled again by the next incarnation; if the cancellation came after its
    messages were accepted, they are submitted twice (with new ids), so each file is sent at
    least once.
    """

    SOURCE = "readFolder"

    def __init__(
        self,
        folder: Path,
        accept: AcceptDocument,
        report: Report,
        *,
        poll_interval: float = 0.5,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    ) -> None:
        self.folder = folder
        self.rejected = folder / REJECTED_FOLDER
        self.accept = accept
        self.report = report
        self.poll_interval = poll_interval
        self.max_document_bytes = max_document_bytes
        self._last_scan: dict[str, tuple[int, int]] = {}
        self._stuck: dict[str, tuple[int, int]] = {}
        self.sent = 0
        self.rejected_files = 0

    @property
    def info(self) -> dict[str, object]:
        """What the tree snapshot shows: the folder, files sent and files rejected."""
        return {"path": str(self.folder), "sent": self.sent, "rejected": self.rejected_files}

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll the folder until cancelled."""
        await trio.to_thread.run_sync(_make_folder, self.folder, "read folder")
        await trio.to_thread.run_sync(_make_folder, self.rejected, "read folder")
        task_status.started()
        while True:
            for name in await self._settled_files():
                await self._handle(name)
            await trio.sleep(self.poll_interval)

    async def _settled_files(self) -> list[str]:
        """Names whose size and mtime are as they were at the previous poll, oldest first."""
        try:
            scan = await trio.to_thread.run_sync(_regular_files, self.folder)
        except OSError as error:
            if error.errno in OUT_OF_DESCRIPTORS:
                self._out_of_descriptors(error)
                return []
            raise FolderError(
                f"cannot read read folder {self.folder}: {error.strerror or error}"
            ) from None
        settled = [
            name
            for name, state in scan.items()
            if self._last_scan.get(name) == state and self._stuck.get(name) != state
        ]
        self._last_scan = scan
        self._stuck = {n: s for n, s in self._stuck.items() if scan.get(n) == s}
        return sorted(settled, key=lambda name: (scan[name][1], name))

    async def _handle(self, name: str) -> None:
        path = self.folder / name
        source = f"{self.SOURCE} file {shown_name(name)}"
        if not _is_utf8(name):
            problem = document_rejection(
                f'file: its name "{shown_name(name)}" is not valid UTF-8 (the bytes shown as '
                "\\xNN); nothing in it was read",
                "file names in UTF-8: rename the file in rejected/ and put it back",
            )
            await self._reject_whole(name, problem, source)
            return
        try:
            document = await trio.to_thread.run_sync(_read, path, self.max_document_bytes)
        except FileNotFoundError:
            return  # taken away between the poll and now
        except OSError as error:
            if error.errno in OUT_OF_DESCRIPTORS:
                self._out_of_descriptors(error)
                self._last_scan.pop(name, None)  # read it again once it is settled again
                return
            problem = document_rejection(f"file: cannot be read: {error.strerror or error}")
            await self._reject_whole(name, problem, source)
            return
        if document is None:
            limit = self.max_document_bytes
            problem = document_rejection(
                f"document: larger than {limit} bytes; nothing was accepted",
                f"documents up to {limit} bytes",
            )
            await self._reject_whole(name, problem, source)
            return
        answers = await self.accept(document)
        if not answers:
            await self._reject_whole(name, empty_document(), source)
        elif all(a.accepted for a in answers):
            await self._remove(name)
            self.sent += 1
            log.info("%s: %d message(s) accepted", source, len(answers))
        else:
            for text in bounded_reports(rejection_texts(answers, source), source):
                self.report("warning", text)
            lines = [json.dumps(a, ensure_ascii=False) + "\n" for a in bounded_answers(answers)]
            await self._reject(name, lines, source)

    def _out_of_descriptors(self, error: OSError) -> None:
        self.report(
            "error",
            f"error: {self.SOURCE}: out of file descriptors ({error.strerror or error}); "
            "the folder is read again at the next poll",
        )

    async def _remove(self, name: str) -> None:
        try:
            await trio.to_thread.run_sync((self.folder / name).unlink)
        except FileNotFoundError:
            pass
        except OSError as error:
            self._stuck[name] = self._last_scan.get(name, (-1, -1))
            self.report(
                "error",
                f"error: {self.SOURCE}: file {shown_name(name)} was sent but cannot be deleted "
                f"({error.strerror or error}); it is skipped until it changes",
            )

    async def _reject_whole(self, name: str, problem: dict[str, Any], source: str) -> None:
        self.report("warning", f"error: {source}: {problem['error']}")
        await self._reject(name, [json.dumps(problem, ensure_ascii=False) + "\n"], source)

    async def _reject(self, name: str, lines: list[str], source: str) -> None:
        try:
            target = await trio.to_thread.run_sync(
                _move_to_rejected, self.folder / name, self.rejected, lines
            )
        except OSError as error:
            self._stuck[name] = self._last_scan.get(name, (-1, -1))
            self.report(
                "error",
                f"error: {self.SOURCE}: file {shown_name(name)} was rejected but cannot be "
                f"moved to {self.rejected} ({error.strerror or error}); it is skipped until it "
                "changes",
            )
            return
        self.rejected_files += 1
        log.info("%s: rejected, moved to %s", source, shown_name(str(target)))


class StartupFolderInput:
    """Supervised process submitting the startup folder's messages once per node start.

    ``accept`` must keep ``fromNode`` as written and reject messages without it (see
    :func:`steward_otp.inputs.intake.accept_document`, ``require_from_node``). Ready once
    every file was submitted, then it idles. A restart of this process (or of its
    supervisor) does not submit the files again; a new :class:`StartupFolderInput` (a new
    start of the node) does. Nothing here stops the node: a folder or file that cannot be
    read and every rejected message are reported at error level.
    """

    SOURCE = "startup folder"

    def __init__(
        self,
        folder: Path,
        accept: AcceptDocument,
        report: Report,
        *,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    ) -> None:
        self.folder = folder
        self.accept = accept
        self.report = report
        self.max_document_bytes = max_document_bytes
        self.submitted = False
        self.files = 0
        self.messages = 0

    @property
    def info(self) -> dict[str, object]:
        """What the tree snapshot shows: the folder, files read and messages submitted."""
        return {"path": str(self.folder), "files": self.files, "messages": self.messages}

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Submit every file (the first time only), report ready, then idle until cancelled."""
        if not self.submitted:
            await self._submit_all()
            self.submitted = True
        task_status.started()
        await trio.sleep_forever()

    async def _submit_all(self) -> None:
        try:
            await trio.to_thread.run_sync(_make_folder, self.folder, "startup folder")
            names = sorted(await trio.to_thread.run_sync(_regular_files, self.folder))
        except (FolderError, OSError) as error:
            self.report("error", f"error: {self.SOURCE}: {error}")
            return
        for name in names:
            answers = await self._submit(name)
            accepted = sum(a.accepted for a in answers)
            self.files += 1
            self.messages += accepted
            source = f"{self.SOURCE} file {name}"
            for text in bounded_reports(rejection_texts(answers, source), source):
                self.report("error", text)
            log.info("%s file %s: %d message(s) submitted", self.SOURCE, name, accepted)

    async def _submit(self, name: str) -> list[Answer]:
        path = self.folder / name
        try:
            document = await trio.to_thread.run_sync(_read, path, self.max_document_bytes)
        except OSError as error:
            self.report(
                "error", f"error: {self.SOURCE}: file {name} cannot be read: {error.strerror}"
            )
            return []
        if document is None:
            self.report(
                "error",
                f"error: {self.SOURCE}: file {name} is larger than {self.max_document_bytes} "
                "bytes; nothing in it was submitted",
            )
            return []
        return await self.accept(document)


__all__ = ["FolderError", "ReadFolderInput", "StartupFolderInput", "is_candidate"]
