"""Output paths stay inside their folder on disk: no symlink escape, never the node's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from steward_otp.handlers.output import to_file
from steward_otp.handlers.paths import UnsafePath, safe_output_path
from steward_otp.message import Message
from tests.unit.handlers.fakes import FakeServices, context


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "node"
    for name in ("etc", "var/lib", "tmp", "data"):
        (home / name).mkdir(parents=True)
    (home / "etc" / "config.toml").write_text("node_name = 'ship1'\n")
    return home


def _path(home: Path, directory: str, file_name: str = "f.txt", data: Path | None = None) -> Path:
    message = Message(to_node="ship1", directory=directory, file_name=file_name)
    return safe_output_path(message, data_dir=data or home / "data", home=home)


def test_plain_relative_paths_are_inside_data(home: Path) -> None:
    assert _path(home, "logs/cli") == home / "data" / "logs" / "cli" / "ship1" / "f.txt"


def test_a_symlink_leading_out_of_data_is_refused(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (home / "data" / "escape").symlink_to(outside)
    with pytest.raises(UnsafePath, match=r'field "directory": value \'escape\' leads to .*outside'):
        _path(home, "escape")


def test_a_symlinked_file_leading_out_of_data_is_refused(home: Path, tmp_path: Path) -> None:
    target = home / "data" / "d" / "ship1"
    target.mkdir(parents=True)
    (target / "f.txt").symlink_to(tmp_path / "victim.txt")
    with pytest.raises(UnsafePath, match="symbolic link"):
        _path(home, "d")


def test_a_symlink_into_the_nodes_config_is_refused(home: Path) -> None:
    (home / "data" / "cfg").symlink_to(home / "etc")
    with pytest.raises(UnsafePath):
        _path(home, "cfg")


def test_a_symlink_that_stays_inside_data_is_fine(home: Path) -> None:
    (home / "data" / "real").mkdir()
    (home / "data" / "alias").symlink_to(home / "data" / "real")
    assert _path(home, "alias") == home / "data" / "alias" / "ship1" / "f.txt"


@pytest.mark.parametrize("directory", ["./etc", "./var/lib", "./tmp", "./etc/x", "./"])
def test_the_nodes_own_folders_are_refused(home: Path, directory: str) -> None:
    file_name = "etc" if directory == "./" else "config.toml"
    with pytest.raises(UnsafePath, match=r"the node's own folder; allowed: any folder but"):
        _path(home, directory, file_name)


def test_absolute_directories_work_but_not_into_the_nodes_own_folders(
    home: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    assert _path(home, str(elsewhere)) == elsewhere / "f.txt"
    with pytest.raises(UnsafePath, match="own folder"):
        _path(home, str(home / "etc"), "config.toml")
    (tmp_path / "sneaky").symlink_to(home / "var")
    with pytest.raises(UnsafePath, match="own folder"):
        _path(home, str(tmp_path / "sneaky" / "lib"), "steward.db")


def test_dot_slash_directories_outside_the_own_folders_work(home: Path) -> None:
    assert _path(home, "./logs") == home / "logs" / "f.txt"


def test_a_data_folder_inside_var_still_takes_writes(home: Path) -> None:
    data = home / "var" / "data"
    data.mkdir()
    assert _path(home, "out", data=data) == data / "out" / "ship1" / "f.txt"
    with pytest.raises(UnsafePath, match="own folder"):
        _path(home, "./var/lib", "steward.db", data=data)


def test_a_data_folder_that_is_itself_a_link_takes_writes(home: Path, tmp_path: Path) -> None:
    real = tmp_path / "big-disk"
    real.mkdir()
    link = home / "linked-data"
    link.symlink_to(real)
    assert _path(home, "out", data=link) == link / "out" / "ship1" / "f.txt"


@pytest.mark.parametrize(
    ("directory", "file_name"), [("d", "a\x1bb"), ("d\x00", "f"), ("d", "\x07")]
)
def test_control_characters_from_the_bus_are_refused(
    home: Path, directory: str, file_name: str
) -> None:
    with pytest.raises(UnsafePath, match=r"control|plain file name"):
        _path(home, directory, file_name)


async def test_req_to_file_into_etc_leaves_the_config_alone(home: Path) -> None:
    services = FakeServices(home=home)
    msg = Message(
        to_node="ship1", method="REQToFile", directory="./etc", file_name="config.toml", data=b"x"
    )
    with pytest.raises(UnsafePath, match="own folder"):
        await to_file(context(services, msg), msg)
    assert services.writes == []
    assert (home / "etc" / "config.toml").read_text() == "node_name = 'ship1'\n"
    assert os.path.exists(home / "etc" / "config.toml")
