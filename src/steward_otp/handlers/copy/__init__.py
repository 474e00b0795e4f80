"""File copy between nodes: REQCopySrc, REQCopyDst and the REQSUBCopy* protocol handlers.

The operator sends REQCopySrc to the **source** node (``methodArgs = [srcPath, dstNode,
dstPath, chunkSize?, maxTotalCopyTime?, folderPermission?]``). The source hashes the file,
records the copy and sends REQCopyDst to the destination. The destination *pulls*: it asks
for a window of chunks (REQSUBCopySrc ``want``), stores each chunk that matches its SHA-256
(REQSUBCopyDst ``chunk``), asks again for damaged ones, joins the file, checks the whole
file's SHA-256, renames it into place and sends the result (REQSUBCopySrc ``result``); the
source replies to the requester in ``<fileName>.copyreply`` or ``.copyerror``.

Guarantees:

* The destination file appears complete and verified, or not at all (temporary chunks live
  under ``<home>/var/copy``; the joined file is renamed into place).
* Every protocol message goes through the durable outbox, ACKed and retried for the copy's
  time: an outage of the link or of either node only delays the copy.
* A destination restart continues from the chunks it has verified; the source re-reads only
  the chunks asked for again.
* Memory stays bounded by the window (about 8 MiB of chunks, see ``copy.plan``), whatever
  the file size.

This package holds the copy methods: :func:`copy_handlers` here, and the modules
:mod:`.arguments` (REQCopySrc's arguments, copy paths), :mod:`.protocol` (records,
messages), :mod:`.plan` (chunks and the pull window), :mod:`.files` (disk), :mod:`.source`
(the source's handlers), :mod:`.target` (the destination's handlers), :mod:`.session` (one
copy's process on the destination), :mod:`.session_supervisor` (the ``copies`` supervisor)
and :mod:`.pull` (asking the source for chunks, sending it the result). See docs/copy.md.
"""

from __future__ import annotations

import attrs

from steward_otp.handlers.base import Handler, handler
from steward_otp.handlers.copy.protocol import (
    COPY_METHOD_DST,
    COPY_METHOD_SRC,
    SUB_METHOD_DST,
    SUB_METHOD_SRC,
)
from steward_otp.handlers.copy.session_supervisor import CopySessions
from steward_otp.handlers.copy.source import CopySource
from steward_otp.handlers.copy.target import CopyTarget

__all__ = ["CopySessions", "copy_handlers"]


def copy_handlers(sessions: CopySessions | None = None) -> tuple[Handler, ...]:
    """Fresh copy handlers for one node.

    Call once per node: the destination handlers hand their messages to the node's copy
    sessions, the children of ``sessions.supervisor`` (``copies`` in the node's tree; the
    node runs it).
    """
    source = CopySource()
    target = CopyTarget(sessions)
    return (
        handler(COPY_METHOD_SRC)(source.copy_src),
        attrs.evolve(
            handler(COPY_METHOD_DST)(target.copy_dst),
            info=target.info,
        ),
        attrs.evolve(
            handler(SUB_METHOD_SRC)(source.sub_src),
            info=source.info,
        ),
        handler(SUB_METHOD_DST)(target.sub_dst),
    )
