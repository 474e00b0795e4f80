"""Every shipped example parses cleanly; every legacy Steward file parses or is refused with
errors that name a field; none crashes the parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_otp.message import parse_messages, validate_message

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples" / "messages"
LEGACY = REPO.parent / "shared" / "examples" / "steward-legacy"

example_files = sorted(p for p in EXAMPLES.iterdir() if p.is_file())
legacy_files = sorted(p for p in LEGACY.iterdir() if p.is_file()) if LEGACY.is_dir() else []
needs_legacy = pytest.mark.skipif(
    not LEGACY.is_dir(), reason=f"legacy Steward examples not found at {LEGACY}"
)

# Legacy files refused on purpose, and the field each error must name.
REFUSED = {
    "cli-command-tree.json": "data",  # old list form of methodArgs
    "cli-command.json": "data",
    "http-get-ex2.json": "data",
    "http-get.json": "data",
    "tail-file.json": "data",
    "echo-request.json": "method",  # ECHORequest is not a method
}


def test_examples_folder_is_not_empty() -> None:
    names = {p.name for p in example_files}
    assert {"hello-central.json", "ping-ship1.json", "cli-command-ship1.yaml"} <= names


@pytest.mark.parametrize("path", example_files, ids=lambda p: p.name)
def test_example_parses_without_errors(path: Path) -> None:
    result = parse_messages(path.read_bytes())
    assert result.errors == [], [str(e) for e in result.errors]
    assert result.messages
    for message in result.messages:
        assert validate_message(message) == []


@needs_legacy
@pytest.mark.parametrize("path", legacy_files, ids=lambda p: p.name)
def test_legacy_file_parses_or_errors_name_a_field(path: Path) -> None:
    result = parse_messages(path.read_bytes())
    assert result.messages or result.errors
    for error in result.errors:
        assert error.index is not None, str(error)
        assert error.field, str(error)
        assert error.reason and str(error)


@needs_legacy
@pytest.mark.parametrize("path", legacy_files, ids=lambda p: p.name)
def test_legacy_file_outcome_is_the_decided_one(path: Path) -> None:
    result = parse_messages(path.read_bytes())
    if path.name in REFUSED:
        assert result.messages == []
        assert {e.field for e in result.errors} == {REFUSED[path.name]}
    else:
        assert result.errors == [], [str(e) for e in result.errors]
        assert (EXAMPLES / path.name).read_bytes() == path.read_bytes()


@needs_legacy
def test_every_accepted_legacy_file_is_shipped_as_an_example() -> None:
    accepted = {p.name for p in legacy_files if p.name not in REFUSED}
    assert accepted <= {p.name for p in example_files}
