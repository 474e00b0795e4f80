"""Text rendering of a supervision-tree snapshot and a node status, for the terminal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_SKIP_INFO = frozenset({"path"})


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _info_text(info: Mapping[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in info.items() if k not in _SKIP_INFO and v not in (None, "")]
    return " ".join(parts)


def render_tree(tree: Mapping[str, Any]) -> str:
    """The tree as aligned text lines, one per process, like a terminal ``observer``.

    Columns: process (indented by depth), kind or strategy, state, restarts, uptime, then the
    last failure and the live info the process publishes (connection state, queue depth).
    """
    rows: list[tuple[str, str, str, str, str, str]] = []

    def visit(entry: Mapping[str, Any], prefix: str, last: bool, depth: int) -> None:
        branch = "" if depth == 0 else ("└── " if last else "├── ")
        name = prefix + branch + str(entry["id"])
        kind = entry.get("strategy") or entry.get("kind") or ""
        failure = entry.get("last_failure")
        extra = _info_text(entry.get("info") or {})
        if failure:
            ago = _duration(failure.get("seconds_ago"))
            extra = (extra + " " if extra else "") + f"last failure {ago} ago: {failure['reason']}"
        rows.append(
            (
                name,
                str(kind),
                str(entry.get("state", "")),
                str(entry.get("restart_count", 0)),
                _duration(entry.get("uptime")),
                extra,
            )
        )
        children = list(entry.get("children") or [])
        child_prefix = prefix + ("" if depth == 0 else ("    " if last else "│   "))
        for i, child in enumerate(children):
            visit(child, child_prefix, i == len(children) - 1, depth + 1)

    visit(tree, "", True, 0)
    header = ("PROCESS", "KIND", "STATE", "RESTARTS", "UPTIME", "INFO")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = []
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) for i in range(5)]
        lines.append("  ".join(cells) + ("  " + row[5] if row[5] else ""))
    return "\n".join(line.rstrip() for line in lines)


def render_status(status: Mapping[str, Any]) -> str:
    """The node status as ``key: value`` lines."""
    lines = [
        f"node:        {status.get('node')}",
        f"broker:      {status.get('broker')}",
        f"connection:  {status.get('connection')}",
    ]
    outbox = status.get("outbox") or {}
    lines.append("outbox:      " + ", ".join(f"{k} {v}" for k, v in outbox.items()))
    queued = status.get("queued_per_node") or {}
    if queued:
        lines.append("queued for:  " + ", ".join(f"{k} {v}" for k, v in sorted(queued.items())))
    hellos = status.get("last_hello") or {}
    now = float(status.get("time") or 0)
    if hellos:
        lines.append("last hello:")
        for node, at in sorted(hellos.items()):
            lines.append(f"  {node:<20} {_duration(now - float(at))} ago")
    return "\n".join(lines)
