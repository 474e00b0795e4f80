"""`--watch` of tree, status and queue ls: frames drawn in place on a terminal (rich's live
display, no hand-written escape codes), one after the other into a pipe."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from steward_otp.cli import app
from steward_otp.cli.watch import watch


def frames() -> Callable[[], str]:
    count = 0

    def frame() -> str:
        nonlocal count
        count += 1
        return f"frame {count}\n" + "x" * 100

    return frame


def stop_after(calls: int) -> Callable[[float], None]:
    """A sleep that is interrupted (as by Ctrl-C) at its ``calls``-th call."""
    made: list[float] = []

    def sleep(seconds: float) -> None:
        made.append(seconds)
        if len(made) >= calls:
            raise KeyboardInterrupt

    return sleep


def test_into_a_pipe_frames_follow_each_other_without_control_codes() -> None:
    out = io.StringIO()
    watch(frames(), 2.0, out=out, sleep=stop_after(3))
    text = out.getvalue()
    assert text.count("frame ") == 3 and "frame 3\n" in text
    assert "\x1b" not in text
    assert text.endswith("x" * 100 + "\n\n")


def test_on_a_terminal_each_frame_replaces_the_last() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=40, height=10, color_system=None)
    watch(frames(), 1.0, console=console, sleep=stop_after(3))
    text = screen.getvalue()
    assert "frame 1" in text and "frame 3" in text
    assert "\x1b[2J" not in text  # the screen is never cleared: the frame is redrawn in place
    assert text.count("\x1b[1A") >= 2  # (rich moves back up over the last frame)
    assert "x" * 41 not in text and "…" in text  # wide lines are cut, not wrapped


def test_a_frame_that_fails_ends_the_watch() -> None:
    def frame() -> str:
        raise typer.Exit(3)

    with pytest.raises(typer.Exit):
        watch(frame, 1.0, out=io.StringIO(), sleep=stop_after(5))


@pytest.mark.parametrize("command", [["tree"], ["status"], ["queue", "ls"]])
def test_tree_status_and_queue_ls_take_watch(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "--watch" in result.stdout
