"""The file-copy protocol's disk side: reading the source, the destination's resumable state.

Everything here is blocking file I/O, called through ``trio.to_thread.run_sync``. State lives
under ``<home>/var/copy/`` (``var``, not ``tmp``: it must survive restarts, and ``tmp`` holds
sockets and may be a tmpfs):

* ``src-<id>.json`` — on the source: the copy's init record, the original request (for the
  final reply) and when the copy expires.
* ``dst-<id>/`` — on the destination: ``init.json`` (the record and when this node first saw
  it) and one file per verified chunk, ``<index>.<sha256>.chunk``. A chunk file appears only
  complete (written to a temporary name, fsynced, renamed), so after a crash the folder
  lists exactly the chunks that need not come again.
* ``dst-<id>.result`` — after the end: ok or failed and the text, so that running the copy's
  REQCopyDst again (a crash just before it was marked done) reports the same result instead
  of copying again.

Memory stays bounded by one chunk: nothing reads a whole file at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Final

import attrs

from steward_otp.atomic_file import fsync_folder, write_atomically
from steward_otp.handlers.copy.plan import ChunkPlan, chunk_digest
from steward_otp.handlers.copy.protocol import DRIVER_GRACE, CopyInit, ProtocolError
from steward_otp.message import Message, MessageFieldsError

HASH_BLOCK: Final = 1024 * 1024
RESULT_RETENTION: Final = 7 * 24 * 3600.0
"""Seconds a destination remembers a finished copy's result (the inbox dedupe window)."""


def state_root(home: Path) -> Path:
    """The folder holding copy state on a node: ``<home>/var/copy``."""
    return home / "var" / "copy"


def describe(exc: BaseException) -> str:
    """A short text for a failed file operation: the system's words and the file."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


class SourceChanged(Exception):
    """The source file is not the one the copy started with (size or mtime differ)."""


@attrs.frozen
class SourceFile:
    """What was read of a source file: its identity when hashed and its SHA-256."""

    size: int
    mtime_ns: int
    mode: int
    sha256: str


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns


def _same_file(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ino, before.st_dev) == (
        after.st_size,
        after.st_mtime_ns,
        after.st_ino,
        after.st_dev,
    )


def hash_source(path: Path) -> SourceFile:
    """Hash a regular file in blocks; raises SourceChanged if it changed meanwhile, OSError."""
    with path.open("rb") as f:
        before = os.fstat(f.fileno())
        if not stat.S_ISREG(before.st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
        digest = hashlib.sha256()
        while block := f.read(HASH_BLOCK):
            digest.update(block)
        after = os.stat(path)
    if not _same_file(before, after):
        raise SourceChanged(f"{path} changed while it was being hashed")
    return SourceFile(
        before.st_size, before.st_mtime_ns, stat.S_IMODE(before.st_mode), digest.hexdigest()
    )


def read_chunk(path: Path, init: CopyInit, index: int) -> bytes:
    """Chunk ``index`` of the source, checked to be the file the copy started with.

    Raises SourceChanged when size or modification time differ from ``init``, OSError when
    the file cannot be read, IndexError for an index outside the plan.
    """
    offset, length = init.plan.span(index)
    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        if _identity(st) != (init.size, init.mtime_ns):
            raise SourceChanged(
                f"source file {path} changed during the copy: size {init.size} -> "
                f"{st.st_size}, mtime_ns {init.mtime_ns} -> {st.st_mtime_ns}"
            )
        data = os.pread(f.fileno(), length, offset)
    if len(data) != length:
        raise SourceChanged(f"source file {path} is shorter than when the copy started")
    return data


# --------------------------------------------------------------------------- source side


@attrs.frozen
class SourceRecord:
    """The source's memory of one copy. ``expires_at`` is wall time (``None``: never)."""

    init: CopyInit
    request: Message
    expires_at: float | None

    def to_bytes(self) -> bytes:
        """JSON text of the record."""
        value = {
            "init": self.init.to_dict(),
            "request": self.request.to_dict(),
            "expires_at": self.expires_at,
        }
        return json.dumps(value, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SourceRecord:
        """Read :meth:`to_bytes` output; raises ProtocolError."""
        try:
            value = json.loads(data)
            expires = value["expires_at"]
            return cls(
                init=CopyInit.from_dict(value["init"]),
                request=Message.from_dict(value["request"]),
                expires_at=None if expires is None else float(expires),
            )
        except (ValueError, KeyError, TypeError, MessageFieldsError, RecursionError) as exc:
            raise ProtocolError(f"copy source record: {exc}") from None


def source_record_path(root: Path, copy_id: str) -> Path:
    """Where the source keeps its record of copy ``copy_id``."""
    return root / f"src-{copy_id}.json"


def save_source(root: Path, record: SourceRecord) -> None:
    """Store ``record`` durably."""
    root.mkdir(parents=True, exist_ok=True)
    write_atomically(source_record_path(root, record.init.copy_id), record.to_bytes())


def load_source(root: Path, copy_id: str) -> SourceRecord | None:
    """The record of ``copy_id``, or None when there is none (finished, expired, unknown)."""
    try:
        return SourceRecord.from_bytes(source_record_path(root, copy_id).read_bytes())
    except FileNotFoundError:
        return None


def remove_source(root: Path, copy_id: str) -> bool:
    """Forget ``copy_id`` on the source; True when this call removed the record."""
    try:
        source_record_path(root, copy_id).unlink()
    except FileNotFoundError:
        return False
    return True


def expired_sources(root: Path, now: float) -> list[SourceRecord]:
    """Source records whose copy ran out of time. Unreadable records are removed."""
    found: list[SourceRecord] = []
    for path in sorted(root.glob("src-*.json")) if root.is_dir() else []:
        try:
            record = SourceRecord.from_bytes(path.read_bytes())
        except (OSError, ProtocolError):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if record.expires_at is not None and record.expires_at < now:
            found.append(record)
    return found


# --------------------------------------------------------------------------- destination side


class AssemblyError(Exception):
    """The chunks do not make the file the source hashed, or the file cannot be written."""


class DstSession:
    """The destination's resumable state of one copy (see the module docstring)."""

    def __init__(self, root: Path, copy_id: str) -> None:
        self.root = root
        self.copy_id = copy_id
        self.folder = root / f"dst-{copy_id}"
        self.result_path = root / f"dst-{copy_id}.result"

    @property
    def _init_path(self) -> Path:
        return self.folder / "init.json"

    @property
    def _abort_path(self) -> Path:
        return self.folder / "aborted.txt"

    def open(self, init: CopyInit, now: float) -> float:
        """Start (or continue) the session; returns the wall time it was first opened.

        Raises ProtocolError when a session of the same id holds a different record.
        """
        existing = self.load()
        if existing is not None:
            known, first_seen = existing
            if attrs.evolve(known, ack_timeout=1, retries=0) != attrs.evolve(
                init, ack_timeout=1, retries=0
            ):
                raise ProtocolError(f"copy {self.copy_id}: a different copy has the same id")
            return first_seen
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"init": init.to_dict(), "first_seen": now}
        write_atomically(self._init_path, json.dumps(record).encode())
        return now

    def load(self) -> tuple[CopyInit, float] | None:
        """The session's record and first-seen time, or None when there is no session."""
        try:
            text = self._init_path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            value = json.loads(text)
            init, first_seen = value["init"], float(value["first_seen"])
        except (ValueError, TypeError, KeyError) as exc:
            raise ProtocolError(f"copy {self.copy_id}: init.json is unreadable: {exc}") from None
        return CopyInit.from_dict(init), first_seen

    def _chunk_files(self) -> dict[int, tuple[Path, str]]:
        found: dict[int, tuple[Path, str]] = {}
        with contextlib.suppress(FileNotFoundError):
            for path in self.folder.iterdir():
                index, _, rest = path.name.partition(".")
                digest, _, suffix = rest.partition(".")
                if suffix == "chunk" and index.isdigit():
                    found[int(index)] = (path, digest)
        return found

    def verified(self) -> set[int]:
        """Indices of the chunks on disk (each was checked against its hash on arrival)."""
        return set(self._chunk_files())

    def discard_partial_writes(self, before: float) -> None:
        """Remove temporary files last written before ``before`` (wall time).

        They were left by writes a crash interrupted; younger ones may belong to a write
        going on right now.
        """
        with contextlib.suppress(FileNotFoundError):
            for path in self.folder.glob(".*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < before:
                        path.unlink()

    def store_chunk(self, index: int, digest: str, data: bytes) -> bool:
        """Keep a verified chunk; False when it was here already (a duplicate delivery).

        Raises FileNotFoundError when the session is gone (the copy ended meanwhile).
        """
        path = self.folder / f"{index}.{digest}.chunk"
        if path.exists():
            return False
        write_atomically(path, data)
        return True

    def abort(self, text: str) -> None:
        """Record that the source gave up (read by the driver, even after a restart)."""
        if self.folder.is_dir():
            write_atomically(self._abort_path, text.encode())

    def aborted(self) -> str | None:
        """The source's reason for giving up, or None."""
        try:
            return self._abort_path.read_text(errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def assemble(self, init: CopyInit, destination: Path) -> list[int]:
        """Join the chunks into ``destination``, verified, atomically; returns bad chunks.

        Every chunk is checked against its own hash again; bad ones are deleted and returned
        (nothing is written then). Otherwise the joined file must match the whole-file hash,
        gets the source's permission bits and is renamed into place; missing folders are
        created with ``folder_permission``. Raises AssemblyError.
        """
        plan = ChunkPlan(init.size, init.chunk_size)
        chunks = self._chunk_files()
        missing = [i for i in range(plan.count) if i not in chunks]
        if missing:
            return missing
        if destination.is_dir():
            raise AssemblyError(f"destination {destination} is a folder")
        try:
            make_folders(destination.parent, init.folder_permission)
        except OSError as exc:
            raise AssemblyError(f"cannot create folder {destination.parent}: {exc}") from exc
        part = destination.with_name(f".{destination.name}.copy-{self.copy_id}.part")
        bad: list[int] = []
        whole = hashlib.sha256()
        try:
            with part.open("wb") as out:
                for index in range(plan.count):
                    path, digest = chunks[index]
                    data = path.read_bytes()
                    if len(data) != plan.span(index)[1] or chunk_digest(data) != digest:
                        bad.append(index)
                        path.unlink()
                        continue
                    whole.update(data)
                    if not bad:
                        out.write(data)
                out.flush()
                os.fsync(out.fileno())
            if bad:
                part.unlink()
                return bad
            if whole.hexdigest() != init.sha256:
                part.unlink()
                raise AssemblyError(
                    f"the joined file's SHA-256 {whole.hexdigest()} is not the source's "
                    f"{init.sha256}: the source file changed while it was copied"
                )
            part.chmod(init.file_mode)
            part.replace(destination)
            fsync_folder(destination.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                part.unlink()
            raise AssemblyError(f"cannot write {destination}: {exc.strerror or exc}") from exc
        return []

    def finish(self, ok: bool, text: str, now: float) -> None:
        """Remember the result and remove the chunks."""
        self.root.mkdir(parents=True, exist_ok=True)
        value = {"ok": ok, "text": text, "finished_at": now}
        write_atomically(self.result_path, json.dumps(value).encode())
        shutil.rmtree(self.folder, ignore_errors=True)

    def result(self) -> tuple[bool, str] | None:
        """``(ok, text)`` of a finished copy, or None."""
        try:
            value: dict[str, Any] = json.loads(self.result_path.read_bytes())
            return bool(value["ok"]), str(value["text"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None


def make_folders(folder: Path, mode: int) -> None:
    """Create ``folder`` and missing parents with exactly ``mode`` (the umask not applied)."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
            path.chmod(mode)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")


def sweep_destination(root: Path, now: float, active: set[str]) -> list[str]:
    """Remove old results and abandoned sessions; returns the copy ids removed.

    A session is abandoned when its copy's time (plus grace) is over and no driver runs it
    (``active``); a result is dropped after :data:`RESULT_RETENTION` seconds.
    """
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for path in root.glob("dst-*"):
        copy_id = path.name.removeprefix("dst-").partition(".")[0]
        if copy_id in active:
            continue
        abandoned = False
        session = DstSession(root, copy_id)
        if path.suffix == ".result":
            with contextlib.suppress(OSError, ValueError, KeyError):
                finished = float(json.loads(path.read_bytes())["finished_at"])
                if finished + RESULT_RETENTION < now:
                    path.unlink()
                    removed.append(copy_id)
            continue
        try:
            loaded = session.load()
        except ProtocolError:
            loaded = None
        if loaded is None:
            # No readable record: abandoned, unless a driver is creating it right now.
            with contextlib.suppress(OSError):
                abandoned = path.stat().st_mtime + DRIVER_GRACE < now
        else:
            init, first_seen = loaded
            abandoned = init.max_time > 0 and first_seen + init.max_time + DRIVER_GRACE < now
        if abandoned:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(copy_id)
    return removed
