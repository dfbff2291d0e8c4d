"""CSV cells a spreadsheet shows as text, never runs: the guard every CSV the platform writes goes through.

A spreadsheet runs a cell that starts with one of FORMULA_STARTS as a formula (tab and CR may shift it
into one). Patron fields, user agents and audit details are typed by whoever they like, so a text cell
starting so gets a leading apostrophe, which Excel, LibreOffice and Sheets read as "this is text".
Numbers stay numbers: -1 is data, not a formula.

Not defusedcsv (on PyPI): it also prefixes "|" and "%", rewrites "|" inside a cell, and lets through text
that reads as a number ("-1") and text starting with tab or CR. Every export would change; this is the
guard the exports always had.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cells: Iterable[Any]) -> list[Any]:
    """A CSV row's cells, each text cell a spreadsheet would run as a formula prefixed with '.

    One call per row, not per cell: the subject export runs it on every cell of every table.
    """
    starts = FORMULA_STARTS
    return ["'" + cell if isinstance(cell, str) and cell.startswith(starts) else cell for cell in cells]
