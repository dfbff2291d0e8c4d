"""A log file, line by line, into events in file order: each line is an event or an Unparsed with its reason.

The same stages serve a replay and (later) a live collector: parse the line, then let the sshd attempt tracker mark
the lines of failed attempts.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from bookwarden.monitor.events import Event
from bookwarden.monitor.parse import access, apache, jsonl, syslog
from bookwarden.monitor.parse.attempts import AttemptTracker


class Format(enum.StrEnum):
    SYSLOG = "syslog"
    JSONL = "jsonl"
    APACHE_ERROR = "apache-error"
    APACHE_ACCESS = "apache-access"
    ACCESS = "access"  # the platform's own access log (BOOKWARDEN_ACCESS_LOG): one JSON object per request


@dataclass(frozen=True)
class Unparsed:
    line_number: int
    raw: str
    reason: str


def read(lines: Iterable[str], fmt: Format, year: int | None = None) -> Iterator[Event | Unparsed]:
    """Every non-empty line as an Event or an Unparsed (blank lines are neither: they hold nothing)."""
    reader = LineReader(fmt, year)
    for number, line in enumerate(lines, 1):
        found = reader.parse(line, number)
        if found is not None:
            yield found


class LineReader:
    """One source's lines, one at a time, in file order: what `read` does for a whole file, for a live collector
    that gets its lines as they are written (the year clock and the sshd attempt tracker carry across calls)."""

    def __init__(self, fmt: Format, year: int | None = None) -> None:
        self.fmt = fmt
        self.clock = syslog.YearClock(year if year is not None else datetime.now(UTC).year)
        self.tracker = AttemptTracker()

    def parse(self, line: str, number: int | None = None) -> Event | Unparsed | None:
        """The line as an Event or an Unparsed; None for a blank line."""
        text = line.rstrip("\r\n")
        if not text.strip():
            return None
        try:
            event = _parse(text, self.fmt, self.clock)
        except syslog.Unparsable as exc:
            return Unparsed(number or 0, text, str(exc))
        event.line_number = number
        self.tracker.observe(event)
        return event


def _parse(text: str, fmt: Format, clock: syslog.YearClock) -> Event:
    if fmt is Format.SYSLOG:
        return syslog.parse(text, clock)
    if fmt is Format.JSONL:
        return jsonl.parse(text)
    if fmt is Format.APACHE_ERROR:
        return apache.parse_error(text)
    if fmt is Format.ACCESS:
        return access.parse(text)
    return apache.parse_access(text)
