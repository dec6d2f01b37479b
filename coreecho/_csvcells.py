"""CSV cells that a spreadsheet shows as text, never runs as a formula, and that read back exactly as written.

A spreadsheet treats a cell starting with ``=``, ``+``, ``-`` or ``@`` (and, in some programs, a tab or a carriage
return) as a formula: a video named ``=HYPERLINK(...).avi`` would become a live formula in the user's spreadsheet.
Every text cell coreecho writes to a CSV for users goes through :func:`escape_cell`, which puts one ``'`` in front
of such a cell (the usual convention: spreadsheets show the rest as text). A cell that already starts with ``'`` gets
one too, so that :func:`unescape_cell` (remove one leading ``'``) gives back exactly what was written: ``--resume``
matches file names exactly. Numbers and lists of numbers (``-3.5``, ``-1.0;2.5``) are left alone: not formulas.

Example:
    >>> escape_cell("=cmd.avi"), escape_cell("-3.5;2"), escape_cell("'quoted.avi"), escape_cell("a.avi")
    ("'=cmd.avi", '-3.5;2', "''quoted.avi", 'a.avi')
    >>> all(unescape_cell(escape_cell(s)) == s for s in ["=x", "+x", "-x", "@x", "\\tx", "'x", "''=x", "x", ""])
    True
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["FORMULA_PREFIXES", "escape_cell", "unescape_cell", "escape_row", "unescape_row"]

#: First characters that make a spreadsheet read a cell as a formula (or strip/shift it).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NUMBERS = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?([ ;] ?[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)*")


def escape_cell(value: Any) -> Any:
    """``value`` with a ``'`` in front when it is text starting with a formula prefix or a ``'`` (numbers and
    non-text values are returned as they are)."""
    if not isinstance(value, str) or not value:
        return value
    if value[0] == "'" or (value[0] in FORMULA_PREFIXES and not _NUMBERS.fullmatch(value)):
        return "'" + value
    return value


def unescape_cell(value: Any) -> Any:
    """The inverse of :func:`escape_cell`: one leading ``'`` removed from text."""
    if isinstance(value, str) and value.startswith("'"):
        return value[1:]
    return value


def escape_row(row: dict[str, Any]) -> dict[str, Any]:
    """Every cell of a CSV row through :func:`escape_cell`."""
    return {k: escape_cell(v) for k, v in row.items()}


def unescape_row(row: dict[str, Any]) -> dict[str, Any]:
    """Every cell of a row read from a CSV through :func:`unescape_cell`."""
    return {k: unescape_cell(v) for k, v in row.items()}
