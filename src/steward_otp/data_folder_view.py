"""``expose_data_folder`` (``HOST:PORT``): the data folder, read-only, over HTTP.

The supervised process ``node/data_folder`` serves ``subscribers_data_folder`` (where
REQToFile, REQCopyDst and the central error log write) the way Steward's
``ExposeDataFolder`` did, so an operator can fetch a node's results with a browser or
``curl``:

* ``GET /path/to/file`` — the file's bytes (byte ranges honoured, ``Last-Modified`` and
  ``ETag`` set), served by Starlette's :class:`~starlette.staticfiles.StaticFiles`.
* ``GET /path/to/folder/`` — an HTML listing of the folder (folders first, then files with
  their sizes), or JSON (``[{"name", "folder", "size", "modified"}]``) when the request
  asks for ``application/json``.
* ``HEAD`` works for both; every other method is ``405 Method Not Allowed``.

Guarantees: nothing is ever written; no path outside the data folder is served, whether
named with ``..``, percent-encoded, or reached through a symbolic link inside the folder
(such a link is answered 404 like a missing file). There is no authentication, as in
Steward: bind it to 127.0.0.1 (or a management network) and put a proxy in front for
anything else; the node logs a warning when it listens on every interface.
"""

from __future__ import annotations

import datetime
import html
import logging
import os
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from steward_otp.asgi_serve import bind_spec, serve_asgi
from steward_otp.inputs.tcp import parse_listen_address

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger(__name__)

SETTING = "expose_data_folder"


def _inside(root: Path, candidate: Path) -> bool:
    """Whether ``candidate`` (already resolved) is ``root`` or below it."""
    return candidate == root or root in candidate.parents


def _resolve(root: Path, url_path: str) -> Path | None:
    """The folder or file a request names, or None when it is missing or not ours.

    ``root`` is resolved. Symbolic links are followed and the result must still be inside
    ``root``; a link that leads out is treated as missing.
    """
    relative = urllib.parse.unquote(url_path).lstrip("/")
    if "\x00" in relative:
        return None
    candidate = Path(os.path.realpath(root / relative))
    if not _inside(root, candidate) or not candidate.exists():
        return None
    return candidate


def _entries(folder: Path) -> list[dict[str, Any]]:
    """The folder's entries, folders first, each with name, kind, size and modification time."""
    rows: list[dict[str, Any]] = []
    for entry in os.scandir(folder):
        try:
            info = entry.stat()
        except OSError:
            continue  # vanished, or a dangling link
        rows.append(
            {
                "name": entry.name,
                "folder": entry.is_dir(),
                "size": None if entry.is_dir() else info.st_size,
                "modified": datetime.datetime.fromtimestamp(info.st_mtime, datetime.UTC)
                .isoformat(timespec="seconds")
                .replace("+00:00", "Z"),
            }
        )
    rows.sort(key=lambda row: (not row["folder"], row["name"]))
    return rows


def _listing_html(url_path: str, rows: list[dict[str, Any]]) -> str:
    title = html.escape(urllib.parse.unquote(url_path) or "/")
    lines = [
        "<!doctype html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{title}</title></head><body>",
        f"<h1>{title}</h1>",
        "<table><tr><th>name</th><th>size</th><th>modified (UTC)</th></tr>",
    ]
    if url_path.strip("/"):
        lines.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>')
    for row in rows:
        name = row["name"] + ("/" if row["folder"] else "")
        href = urllib.parse.quote(name)
        size = "" if row["size"] is None else str(row["size"])
        lines.append(
            f'<tr><td><a href="{href}">{html.escape(name)}</a></td>'
            f"<td>{size}</td><td>{row['modified']}</td></tr>"
        )
    lines.append("</table></body></html>")
    return "\n".join(lines) + "\n"


def data_folder_app(folder: Path) -> Any:
    """The ASGI application serving ``folder`` read-only (see the module docstring)."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.responses import (  # noqa: PLC0415
        HTMLResponse,
        JSONResponse,
        PlainTextResponse,
        RedirectResponse,
    )
    from starlette.routing import Route  # noqa: PLC0415
    from starlette.staticfiles import StaticFiles  # noqa: PLC0415

    root = Path(os.path.realpath(folder))
    files = StaticFiles(directory=root, follow_symlink=True, check_dir=False)

    async def serve(request: Request) -> Response:
        url_path = request.url.path
        target = _resolve(root, url_path)
        if target is None:
            return PlainTextResponse("not found\n", status_code=404)
        if target.is_dir():
            if not url_path.endswith("/"):
                return RedirectResponse(url_path + "/", status_code=301)
            rows = await trio.to_thread.run_sync(_entries, target)
            if "application/json" in request.headers.get("accept", ""):
                return JSONResponse(rows)
            return HTMLResponse(_listing_html(url_path, rows))
        # A file inside the folder (checked above): StaticFiles sends it, ranges included.
        relative = target.relative_to(root).as_posix()
        scope = dict(request.scope, path="/" + relative)
        response: Response = await files.get_response(relative, scope)
        return response

    return Starlette(routes=[Route("/{path:path}", serve, methods=["GET", "HEAD"])])


class DataFolderView:
    """Supervised process ``node/data_folder``: serves ``folder`` on ``address``.

    Ready once it listens. An address it cannot listen on fails the start with a
    :class:`~steward_otp.asgi_serve.ServeError` naming ``expose_data_folder``.
    Cancellation closes the listener.
    """

    def __init__(self, folder: Path, address: str) -> None:
        self.folder = folder
        self.address = parse_listen_address(address)
        self.urls: list[str] = []

    @property
    def info(self) -> dict[str, object]:
        """What the tree snapshot shows: the folder, the address and the bound URLs."""
        return {"folder": str(self.folder), "address": self.address.text, "urls": self.urls}

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled."""
        app = data_folder_app(self.folder)
        async with trio.open_nursery() as nursery:
            self.urls = await nursery.start(
                lambda task_status: serve_asgi(
                    app,
                    bind_spec(self.address.host, self.address.port),
                    setting=SETTING,
                    error_logger=logging.getLogger(f"{__name__}.http"),
                    task_status=task_status,
                )
            )
            if self.address.host in (None, "0.0.0.0", "::"):
                log.warning(
                    "%s = %r: the data folder is readable by anyone who can reach this "
                    "port, without authentication",
                    SETTING,
                    self.address.text,
                )
            log.info("data folder %s served at %s", self.folder, ", ".join(self.urls))
            task_status.started()


__all__ = ["DataFolderView", "data_folder_app"]
