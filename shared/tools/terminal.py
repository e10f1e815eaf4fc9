"""Printing tables for people without losing data: fitted to a terminal, complete in a pipe.

On a terminal, the least important columns go first (the table's caption names them) and
what still does not fit wraps; piped or redirected, the output is as wide as the widest
table needs, so `tokenpool keys | grep three` finds the whole label.
"""
from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console, RenderableType

from shared.reports.render_terminal import fit_to_width, natural_width


def show(renderable: RenderableType, file: TextIO | None = None, *, console: Console | None = None) -> None:
    """Print `renderable` on `console` (default: a new one on `file` or standard output)."""
    console = console or Console(file=file or sys.stdout)
    if console.is_terminal:
        console.print(fit_to_width(renderable, console))
    else:
        width = max(console.width, natural_width(renderable, console))
        Console(file=console.file, width=width, no_color=console.no_color).print(renderable)
