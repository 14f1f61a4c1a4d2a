"""Terminal views with ``rich``: tables, the status view and its ``--watch`` refresh.

Everything here is for a terminal. When standard output is not one (a pipe, a file, CI), the
commands print the plain fixed-width text of :func:`rotator.commands.table` instead, which
scripts and tests read.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

# How a cell reads in colour: words of the state columns, as the status and outcome tables use.
_STYLES = {
    "ok": "green",
    "valid": "green",
    "active": "green",
    "FAILED": "bold red",
    "invalidated": "red",
    "expired": "red",
    "missing": "red",
    "unknown": "yellow",
    "retiring": "yellow",
    "no key": "yellow",
}


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (standard output when None) is an interactive terminal.

    ``TERM=dumb`` counts as no terminal, so the plain text is printed there too.
    """
    target = sys.stdout if stream is None else stream
    try:
        interactive = bool(target.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
    return interactive and os.environ.get("TERM") != "dumb"


def console(stream: TextIO | None = None) -> Console:
    """A console writing to ``stream`` (standard output when None), as wide as the terminal."""
    from rich.console import Console

    return Console(file=stream or sys.stdout, highlight=False, soft_wrap=False)


def render(renderable: RenderableType, width: int | None = None) -> str:
    """``renderable`` as terminal text (with colours), at the terminal's width by default."""
    from rich.console import Console

    out = io.StringIO()
    columns = width or shutil.get_terminal_size((120, 24)).columns
    Console(file=out, force_terminal=True, width=columns, highlight=False, soft_wrap=False).print(
        renderable
    )
    return out.getvalue().rstrip("\n")


def rich_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None
) -> Table:
    """A rich table of ``rows`` under ``headers``; state words are coloured."""
    from rich import box
    from rich.table import Table

    table = Table(
        *[str(h) for h in headers],
        title=title,
        box=box.SIMPLE_HEAD,
        header_style="bold",
        title_justify="left",
        pad_edge=False,
    )
    for row in rows:
        table.add_row(*[_cell(str(c)) for c in row])
    return table


def _cell(text: str) -> Any:
    from rich.text import Text

    style = _STYLES.get(text)
    if style is None and text.endswith("MISMATCH"):
        style = "bold red"
    return Text(text, style=style or "")


def table_text(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The table as the terminal shows it (what ``commands.table`` prints on a terminal)."""
    return render(rich_table(headers, rows))


def status_view(
    leader_line: str, entries: Sequence[dict[str, Any]], footer: str | None = None
) -> RenderableType:
    """``rotator status`` on a terminal: the lease, then the sources' table (or why empty)."""
    from rich.console import Group
    from rich.text import Text

    from rotator import commands

    parts: list[RenderableType] = [Text(leader_line)]
    if entries:
        parts.append(rich_table(commands.STATUS_HEADERS, commands.status_rows(entries)))
    else:
        parts.append(Text("no sources configured or recorded"))
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)
