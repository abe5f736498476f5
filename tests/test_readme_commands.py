"""Every command in README.md's ```bash blocks runs as written when pasted into bash: no placeholder that bash reads
as a redirection (``<date>``), and every ``python run.py`` line's arguments, split as bash splits them, parse with
Hydra's override parser and, for a single run, compose with the config tree (so a key needs its ``+`` where it is
new)."""

from __future__ import annotations

import re
import shlex

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from tests.conftest import ROOT, compose_config

BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def readme_commands() -> list[str]:
    """Each command of the README's bash blocks, continuation lines joined, comments left to bash's splitting."""
    commands = []
    for block in BASH_BLOCK.findall((ROOT / "README.md").read_text()):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(command.strip())
    return commands


def words(command: str) -> list[str]:
    """The words bash gives the command (a comment ends it), with each shell operator as a word of its own."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def run_py_arguments(command: str) -> list[str] | None:
    """The arguments of a ``python run.py`` command, up to a shell operator; None for other commands."""
    split = words(command)
    for position, word in enumerate(split):
        if word.endswith("run.py") and position and split[position - 1].endswith("python"):
            arguments = []
            for argument in split[position + 1 :]:
                if argument in ("&&", "||", ";", "|", ">", "2>&1", "&"):
                    break
                arguments.append(argument)
            return arguments
    return None


COMMANDS = readme_commands()
RUN_PY = [(command, run_py_arguments(command)) for command in COMMANDS if run_py_arguments(command) is not None]


def test_the_readme_has_run_py_commands():
    assert len(RUN_PY) >= 10


@pytest.mark.parametrize("command", COMMANDS)
def test_no_word_is_a_redirection_by_accident(command):
    """``multirun/<date>/<time>`` reads from a file named ``date`` in bash."""
    assert "<" not in words(command), f"bash reads '<' as a redirection: {command}"


@pytest.mark.parametrize("command, arguments", RUN_PY, ids=[command for command, _ in RUN_PY])
def test_run_py_overrides_parse(command, arguments):
    overrides = [argument for argument in arguments if argument != "-m"]
    OverridesParser.create().parse_overrides(overrides)  # raises OverrideParseException, naming the override


SINGLE_RUNS = [(command, arguments) for command, arguments in RUN_PY if "-m" not in arguments]


@pytest.mark.parametrize("command, arguments", SINGLE_RUNS, ids=[command for command, _ in SINGLE_RUNS])
def test_single_run_commands_compose(command, arguments, tmp_path):
    """A single run's overrides compose with conf/ as Hydra composes them for run.py (a key that is new needs its
    ``+``; a group option must exist)."""
    compose_config([argument for argument in arguments if not argument.startswith("hydra.")], tmp_path / "run",
                   tmp_path / "cache")
