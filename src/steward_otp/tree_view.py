"""Text rendering for the terminal: a supervision-tree snapshot, a node status, the outbox
and the audit log; durations and ages in human units (``45s``, ``2m05s``, ``3h07m``,
``2d04h``)."""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import Any

_SKIP_INFO = frozenset({"path"})


def human_duration(seconds: float | None) -> str:
    """``seconds`` in the two largest units: ``45s``, ``2m05s``, ``3h07m``, ``2d04h``; ``-``
    for None. A negative duration (a clock step) shows as ``0s``."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Container[int] = ()) -> str:
    """Aligned columns; the last column is not padded; columns in ``right`` align right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row[:-1])
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def render_drain(draining: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per destination with messages waiting: how many, how fast they leave (over
    the last minute) and about how long until none is left."""
    lines = []
    for node, figures in draining.items():
        rate = float(figures.get("per_second") or 0.0)
        if rate > 0:
            pace = (
                f"draining at {rate:g}/s, about {human_duration(figures.get('eta_seconds'))} left"
            )
        else:
            pace = "not draining (nothing delivered in the last minute)"
        lines.append(f"{node}: {figures.get('held')} waiting, {pace}")
    return "".join(line + "\n" for line in lines)


def render_queue(
    messages: Sequence[Mapping[str, Any]], draining: Mapping[str, Mapping[str, Any]] | None = None
) -> str:
    """``steward-otp queue ls``: one line per held message, ages in human units; then the
    drain progress of each destination with messages waiting (:func:`render_drain`)."""
    rows = [
        (
            str(m["id"]),
            str(m["toNode"]),
            str(m["method"]),
            str(m["state"]),
            str(m["attempts"]),
            human_duration(m.get("age")),
            str(m.get("reason") or ""),
        )
        for m in messages
    ]
    header = ("ID", "TO", "METHOD", "STATE", "TRIES", "AGE", "REASON")
    table = _table(header, rows, right={4, 5})
    drain = render_drain(draining or {})
    return f"{table}\n{drain.rstrip()}" if drain else table


def render_stream_queue(messages: Sequence[Mapping[str, Any]]) -> str:
    """``steward-otp queue ls --stream``: one line per message waiting in the JetStream
    stream for a node (a broadcast once per node it waits for)."""
    rows = [
        (
            str(m["seq"]),
            str(m.get("id") or "-"),
            str(m["toNode"]) + (" (all)" if m.get("broadcast") else ""),
            str(m.get("method") or ""),
            str(m.get("fromNode") or ""),
            str(m.get("storedAt") or ""),
        )
        for m in messages
    ]
    header = ("SEQ", "ID", "WAITS FOR", "METHOD", "FROM", "STORED")
    return _table(header, rows, right={0})


def render_audit(records: Sequence[Mapping[str, Any]], now: float) -> str:
    """``steward-otp audit``: one line per audit record, oldest first, with how long ago it
    was recorded; a reply names the message it answers."""
    rows = []
    for r in records:
        arrow = "->" if r.get("direction") == "out" else "<-"
        note = str(r.get("reason") or "")
        if r.get("replyTo"):
            note = (f"reply to {r['replyTo']} " + note).strip()
        rows.append(
            (
                human_duration(now - float(r.get("recorded") or now)) + " ago",
                str(r["id"]),
                f"{arrow} {r['node']}",
                str(r["method"]),
                str(r["outcome"]),
                "-" if r.get("attempts") is None else str(r["attempts"]),
                note,
            )
        )
    header = ("WHEN", "ID", "PEER", "METHOD", "OUTCOME", "TRIES", "NOTE")
    return _table(header, rows, right={0, 5})


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
            ago = human_duration(failure.get("seconds_ago"))
            extra = (extra + " " if extra else "") + f"last failure {ago} ago: {failure['reason']}"
        rows.append(
            (
                name,
                str(kind),
                str(entry.get("state", "")),
                str(entry.get("restart_count", 0)),
                human_duration(entry.get("uptime")),
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
    delivery = status.get("delivery") or {}
    if delivery:
        text = str(delivery.get("mode"))
        if delivery.get("mode") == "jetstream":
            text += ", stream ready" if delivery.get("stream_ready") else ", stream NOT ready"
            if delivery.get("problem"):
                text += f": {delivery['problem']}"
        lines.append(f"delivery:    {text}")
        if "waiting_per_node" in delivery:
            waiting = delivery["waiting_per_node"] or {}
            counts = ", ".join(f"{k} {v}" for k, v in sorted(waiting.items())) or "none"
            lines.append(f"in stream:   {counts}")
        elif delivery.get("waiting_problem"):
            lines.append(f"in stream:   unknown ({delivery['waiting_problem']})")
    security = status.get("security") or {}
    if security:
        checking = "on" if security.get("signature_check") else "OFF (anyone on the broker)"
        lines.append(
            f"signatures:  check {checking}; keys allowed {len(security.get('allowed', []))}, "
            f"pending {len(security.get('pending', []))}"
        )
        if "acl_check" in security:
            acl = security.get("acl_hash") or ""
            lines.append(
                f"acl:         check {'on' if security.get('acl_check') else 'off'}; "
                + (
                    f"ACL {acl[:12]}, sources {len(security.get('acl_sources', []))}"
                    if acl
                    else "no ACL"
                )
                + (", authority" if security.get("acl_authority") else "")
            )
    hellos = status.get("last_hello") or {}
    now = float(status.get("time") or 0)
    if hellos:
        lines.append("last hello:")
        for node, at in sorted(hellos.items()):
            lines.append(f"  {node:<20} {human_duration(now - float(at))} ago")
    return "\n".join(lines)
