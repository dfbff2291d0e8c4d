"""What text the API accepts: the one set of rules for every free-text field, written as patterns the
OpenAPI document shows, so a body the schema calls valid is accepted and one it calls invalid is
refused with a 422 naming the field, before anything is stored.

- A line (names, titles, subjects, versions, references, tickets): no control character at all. A
  NUL cannot be stored in PostgreSQL text, and the rest (escape sequences, backspaces, bidi-free but
  invisible C0 and DEL) only ever serve to hide or rewrite what a reader sees in a page, a mail or a
  terminal.
- Lines (reasons, messages, addresses, documents): tab, line feed and carriage return too, nothing
  else of C0 or DEL.

Both need at least one visible character unless `blank_ok`. Explicit character classes, not \\s or
\\S: regex engines disagree on which Unicode characters are spaces.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

_LINE_CHAR = r"[^\x00-\x1f\x7f]"
_LINES_CHAR = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_VISIBLE = r"[^\x00-\x20\x7f]"

LINE = rf"^{_LINE_CHAR}*{_VISIBLE}{_LINE_CHAR}*$"
LINE_OR_BLANK = rf"^{_LINE_CHAR}*$"
LINES = rf"^{_LINES_CHAR}*{_VISIBLE}{_LINES_CHAR}*$"
LINES_OR_BLANK = rf"^{_LINES_CHAR}*$"


def line(max_length: int, *, blank_ok: bool = False) -> type[str]:
    return Annotated[str, StringConstraints(max_length=max_length, pattern=LINE_OR_BLANK if blank_ok else LINE)]


def lines(max_length: int, *, blank_ok: bool = False) -> type[str]:
    return Annotated[str, StringConstraints(max_length=max_length, pattern=LINES_OR_BLANK if blank_ok else LINES)]


def is_line(value: object, max_length: int) -> bool:
    """The same rule for services called from Python, not through the API schema."""
    return isinstance(value, str) and len(value) <= max_length and re.fullmatch(LINE, value) is not None


def is_lines(value: object, max_length: int) -> bool:
    return isinstance(value, str) and len(value) <= max_length and re.fullmatch(LINES, value) is not None
