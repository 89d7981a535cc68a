"""Shared CLI plumbing: one-line user errors, JSON output, console."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from edge_sent.errors import EdgeSentError

PIPE_WIDTH = 1000  # columns when the output is not a terminal


def _console(stderr: bool = False) -> Console:
    """At a terminal, its width; in a pipe, a file or a CI log, wide enough that no table is cut (rich would assume
    80 columns there and shorten cells to "agreem…"). COLUMNS, when set, still wins."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPE_WIDTH if wide else None)


console = _console()
err_console = _console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def error_line(message: str) -> None:
    """One plain line on stderr (never wrapped, so scripts and logs see the whole reason)."""
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    sys.stderr.flush()


def fail(message: str, code: int = 2) -> typer.Exit:
    error_line(message)
    return typer.Exit(code)


def user_errors(func: F) -> F:
    """Turn user errors into a one-line message and a non-zero exit (never a traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EdgeSentError as exc:
            raise fail(str(exc)) from None
        except (TypeError, ValueError) as exc:
            if getattr(exc, "edge_sent_user_error", False):
                raise fail(str(exc)) from None
            raise
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]


def readable_help() -> None:
    """`--help` that reads at 100 columns: typer's type column shows neither `<bool>` for a flag nor a number's
    range (`<float range> [0.0<=x<=1.0]` took a third of the width from the descriptions; the help text states a
    range where it matters, and the range is still enforced)."""
    from typer import rich_utils
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "edge_sent", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        label = shown(self, ctx)
        return label.replace(" range>", ">") if label else label

    def fix_linebreaks(paragraphs: list[str], markup_mode: Any) -> str:
        """A docstring's paragraphs reflowed to the terminal (typer keeps the source's line breaks, so a paragraph
        wrapped at 120 columns in the code read as ragged lines at 80 or 100); a paragraph that starts with \b
        keeps its lines."""
        return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)

    display_type_rich.edge_sent = True  # type: ignore[attr-defined]
    setattr(TyperOption, "display_type_rich", display_type_rich)  # noqa: B010
    setattr(TyperOption, "_get_number_range_help_str", lambda self: None)  # noqa: B010
    setattr(rich_utils, "_fix_linebreaks", fix_linebreaks)  # noqa: B010


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def split_choices(values: list[str] | None) -> tuple[str, ...]:
    """`--quantize int8 --quantize fp16` and `--quantize int8,fp16` both work."""
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return tuple(dict.fromkeys(out))
