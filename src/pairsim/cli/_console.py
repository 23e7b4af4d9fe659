"""What every command prints: tables through rich, and the one-line form of a user's mistake."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print ``rows`` under ``columns`` as a table on stdout (numbers right-aligned).

    Example:
        >>> print_table(None, ("id", "score"), [(3, "0.9877")])
        ┏━━━━┳━━━━━━━━┓
        ┃ id ┃  score ┃
        ┡━━━━╇━━━━━━━━┩
        │  3 │ 0.9877 │
        └────┴────────┘
    """
    table = Table(title=title, title_justify="left")
    numeric = [bool(rows) and all(_is_number(row[j]) for row in rows) for j in range(len(columns))]
    for name, right in zip(columns, numeric, strict=True):
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    # A console per call: it writes to the sys.stdout of the moment (pytest's capture, a pipe, a terminal).
    Console(soft_wrap=False, highlight=False).print(table)


def _is_number(value: object) -> bool:
    if isinstance(value, int | float):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True
