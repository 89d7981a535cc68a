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


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def split_choices(values: list[str] | None) -> tuple[str, ...]:
    """`--quantize int8 --quantize fp16` and `--quantize int8,fp16` both work."""
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return tuple(dict.fromkeys(out))
