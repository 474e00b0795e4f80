"""Where output methods write (spec 5.0), and what they refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_otp.handlers.paths import UnsafePath, output_path
from steward_otp.message import Message

DATA = Path("/home/n/data")
HOME = Path("/home/n")


def test_request_writes_under_data_directory_and_its_own_node() -> None:
    msg = Message(to_node="ship1", directory="cli", file_name="out.txt")
    assert output_path(msg, data_dir=DATA, home=HOME) == DATA / "cli" / "ship1" / "out.txt"


def test_reply_writes_where_the_request_said_under_the_node_that_ran_it() -> None:
    request = Message(to_node="ship1", directory="cli/result", file_name="out.txt")
    reply = Message(to_node="central", from_node="ship1", previous_message=request)
    assert output_path(reply, data_dir=DATA, home=HOME) == DATA / "cli/result/ship1/out.txt"


def test_reply_without_previous_to_node_uses_its_from_node() -> None:
    request = Message(directory="d", file_name="f")
    reply = Message(to_node="central", from_node="ship9", previous_message=request)
    assert output_path(reply, data_dir=DATA, home=HOME) == DATA / "d" / "ship9" / "f"


def test_absolute_and_dot_slash_directories_are_used_as_given() -> None:
    absolute = Message(to_node="a", directory="/var/log/x", file_name="f")
    relative = Message(to_node="a", directory="./logs", file_name="f")
    assert output_path(absolute, data_dir=DATA, home=HOME) == Path("/var/log/x/f")
    assert output_path(relative, data_dir=DATA, home=HOME) == HOME / "logs" / "f"


@pytest.mark.parametrize("directory", ["../etc", "a/../../b", "./../x", ".."])
def test_relative_directory_can_never_escape(directory: str) -> None:
    msg = Message(to_node="a", directory=directory, file_name="f")
    with pytest.raises(UnsafePath, match='field "directory"'):
        output_path(msg, data_dir=DATA, home=HOME)


@pytest.mark.parametrize("file_name", ["", "a/b", "..", ".", "../x"])
def test_file_name_must_be_a_plain_name(file_name: str) -> None:
    msg = Message(to_node="a", directory="d", file_name=file_name)
    with pytest.raises(UnsafePath, match='field "fileName"'):
        output_path(msg, data_dir=DATA, home=HOME)
