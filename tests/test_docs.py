"""The repository stands alone: what users read (README, docs, --help, docstrings) never points to files a
clone does not have."""

from pathlib import Path

import pytest

from deepncheap.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("SPEC", "/".join(("..", "shared")))  # (spelled so that this file does not contain it)


@pytest.mark.parametrize(
    "path", sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("deepncheap/**/*.py")]), ids=str
)
def test_no_reference_to_files_outside_the_repository(path):
    text = path.read_text()
    assert not [word for word in FORBIDDEN if word in text]


def test_help_texts_stand_alone():
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in subcommands.values():
        assert not [word for word in FORBIDDEN if word in command.format_help()]


def test_the_method_is_documented_in_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "docs/method.md" in readme and (ROOT / "docs" / "method.md").is_file()
