"""Constraints for text stored as plain PostgreSQL text (names, reasons, tickets).

PostgreSQL text cannot hold a NUL character, so the schema refuses it up front (a 422 naming
the field, never a database error). Personal fields are stored encrypted and need no such rule.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

# At least one visible character, and no NUL anywhere.
NON_BLANK = r"^[^\x00]*[^\x00 \t\r\n][^\x00]*$"
NO_NUL = r"^[^\x00]*$"


def plain_text(max_length: int, *, blank_ok: bool = False) -> type[str]:
    return Annotated[str, StringConstraints(max_length=max_length, pattern=NO_NUL if blank_ok else NON_BLANK)]
