"""A self-contained HTML report: figures embedded as base64 PNG, no external files or scripts."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pairsim._io import write_text_atomic


@dataclass(frozen=True)
class Figure:
    """A figure of the report: a title, PNG bytes and a caption."""

    title: str
    png: bytes
    caption: str


def metrics_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str]) -> str:
    """An HTML table with one row per model and one column per metric.

    Example:
        >>> "<td>0.500</td>" in metrics_table({"model": {"p": 0.5}}, ["p"])
        True
    """
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{values[c]:.3f}</td>" for c in columns) + "</tr>"
        for name, values in rows.items()
    )
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .3rem .7rem; text-align: right; }
figure { margin: 2rem 0; } img { max-width: 100%; } figcaption { color: #555; font-size: .9rem; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; } dt { font-weight: 600; }
"""


def write_report(
    path: str | Path,
    title: str,
    summary: str,
    table: str,
    facts: Mapping[str, str],
    figures: Sequence[Figure],
) -> Path:
    """Write the report to ``path`` and return it.

    Args:
        path: the ``.html`` file.
        title: page title.
        summary: one paragraph of plain text.
        table: HTML of the metrics table (from :func:`metrics_table`).
        facts: name -> value lines (data set, model, times...), shown as a list.
        figures: the figures, in order.
    """
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>",
        table,
        "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts.items()) + "</dl>",
    ]
    for figure in figures:
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(
            f"<figure><h2>{html.escape(figure.title)}</h2><img alt='{html.escape(figure.title)}' "
            f"src='data:image/png;base64,{data}'><figcaption>{html.escape(figure.caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    path = Path(path)
    write_text_atomic(path, "\n".join(parts))
    return path
