"""``--watch SECONDS`` for ``tree``, ``status`` and ``queue ls``: draw the view again every
few seconds until Ctrl-C.

On a terminal each frame replaces the last in place, drawn by rich's live display (rich
comes with typer); lines wider than the terminal are cut with an ellipsis rather than
wrapped, and a frame taller than the terminal is cut at its bottom. Into a pipe or a file the
frames follow each other, separated by a blank line, with no terminal control codes at all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


def watch(
    frame: Callable[[], str],
    seconds: float,
    *,
    out: TextIO | None = None,
    console: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Show ``frame()`` now and every ``seconds`` until interrupted (Ctrl-C ends quietly).

    ``console`` (a ``rich.console.Console``) draws in place; by default one is made when
    ``out`` (default: standard output) is a terminal. ``frame`` may end the watch by
    raising (e.g. ``typer.Exit`` when the node went away).
    """
    out = sys.stdout if out is None else out
    try:
        if console is None and out.isatty():
            console = _terminal(out)
        if console is None:
            while True:
                out.write(frame() + "\n\n")
                out.flush()
                sleep(seconds)
        _live(frame, seconds, console, sleep)
    except KeyboardInterrupt:
        return


def _terminal(out: TextIO) -> Any:
    try:
        from rich.console import Console  # noqa: PLC0415
    except ImportError:  # typer without rich (typer-slim): frames follow each other
        return None
    return Console(file=out, highlight=False, markup=False, emoji=False)


def _live(
    frame: Callable[[], str], seconds: float, console: Any, sleep: Callable[[float], None]
) -> None:
    from rich.live import Live  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    def text() -> Any:
        return Text(frame(), no_wrap=True, overflow="ellipsis")

    with Live(
        text(),
        console=console,
        auto_refresh=False,
        vertical_overflow="ellipsis",
        redirect_stdout=False,
        redirect_stderr=False,
    ) as live:
        while True:
            sleep(seconds)
            live.update(text(), refresh=True)
