"""`edge-sent --help` and every command's `--help` read at 100 columns: the command list shows each summary whole,
descriptions get the width (no type label like `<float range> [0.0<=x<=1.0]`, no `<bool>` for a flag), and no
help text describes `auto` from before it was decided on the host."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
import typer.main
from typer.testing import CliRunner

from edge_sent.cli import app

COMMANDS = sorted(getattr(typer.main.get_command(app), "commands", {}))
WIDTH = 100
DESCRIPTION_COLUMN = 52  # the options' descriptions start no further right than this (was 66: 34 columns left)


def help_text(*args: str) -> str:
    done = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(WIDTH), "TERMINAL_WIDTH": str(WIDTH)})
    assert done.exit_code == 0, done.output
    return done.output


def help_problems(text: str) -> list[str]:
    problems = [f"cut: {line.strip()}" for line in text.splitlines() if "…" in line]
    problems += [f"wider than {WIDTH}: {line}" for line in text.splitlines() if len(line) > WIDTH]
    problems += [f"{label!r} shown" for label in ("<bool>", " range>", "<=x<=", "recorded agreement") if label in text]
    prose = text.split("╭", 1)[0].splitlines()  # the description, above the first box
    problems += [
        f"ragged: {line.strip()!r} breaks before {after.strip()!r}"
        for line, after in pairwise(prose)
        if line.strip() and after.strip() and len(line.rstrip()) + len(after.split()[0]) + 1 < WIDTH - 2
    ]  # a line of a paragraph ends early only where the next word would not have fitted
    return problems


def test_the_command_list_shows_every_summary_whole() -> None:
    text = help_text()
    assert not help_problems(text), help_problems(text)
    for name in COMMANDS:
        row = next(line for line in text.splitlines() if line.startswith(f"│ {name} "))
        assert row.rstrip(" │").endswith("."), f"{name}'s summary wraps or is cut: {row}"


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_reads_at_100_columns(command: str) -> None:
    text = help_text(command)
    assert not help_problems(text), help_problems(text)
    column = next(line.index("Show this") for line in text.splitlines() if re.match(r"│\s+--help\s", line))
    assert column <= DESCRIPTION_COLUMN, f"descriptions start at column {column} of {WIDTH}"
