"""The repository stands alone: what users read (README, docs, --help, docstrings) never points to files a
clone does not have."""

from pathlib import Path

import pytest
from helpers import instant_trial, stored_trials

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


def test_the_demo_space_file_and_the_readme_give_the_demo_s_true_number_of_trainings(tmp_path, monkeypatch):
    """`make demo`'s trainings, counted by running its search with instant fake trials, are the number the
    README and examples/demo_space.yaml state."""
    import re

    import deepncheap
    from deepncheap import trial
    from deepncheap.space import read_space_file

    monkeypatch.setattr(trial, "run_trial", instant_trial)
    command = (ROOT / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0].replace("\\\n", " ")
    option = dict(re.findall(r"--([a-z-]+) (\S+)", command))
    result = deepncheap.search(
        data=option["data"],
        network=option["network"],
        space=read_space_file(ROOT / option["space"]),
        method=option["method"],
        prior_points=int(option["prior-points"]),
        bo_steps=int(option["bo-steps"]),
        epochs=int(option["epochs"]),
        seed=int(option["seed"]),
        penalty="params",  # (the time baseline would train)
        out=tmp_path / "run",
        verbose=False,
        report=False,
    )
    trainings = len(stored_trials(result.run_dir))
    readme = int(re.search(r"about (\d+) trainings", (ROOT / "README.md").read_text()).group(1))
    space_file = int(re.search(r"(\d+) trainings", (ROOT / option["space"]).read_text()).group(1))
    assert space_file == readme and abs(trainings - readme) <= 1, (trainings, readme, space_file)
