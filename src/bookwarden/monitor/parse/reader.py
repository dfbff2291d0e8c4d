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
from bookwarden.monitor.parse import apache, jsonl, syslog
from bookwarden.monitor.parse.attempts import AttemptTracker


class Format(enum.StrEnum):
    SYSLOG = "syslog"
    JSONL = "jsonl"
    APACHE_ERROR = "apache-error"
    APACHE_ACCESS = "apache-access"


@dataclass(frozen=True)
class Unparsed:
    line_number: int
    raw: str
    reason: str


def read(lines: Iterable[str], fmt: Format, year: int | None = None) -> Iterator[Event | Unparsed]:
    """Every non-empty line as an Event or an Unparsed (blank lines are neither: they hold nothing)."""
    clock = syslog.YearClock(year if year is not None else datetime.now(UTC).year)
    tracker = AttemptTracker()
    for number, line in enumerate(lines, 1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        try:
            event = _parse(text, fmt, clock)
        except syslog.Unparsable as exc:
            yield Unparsed(number, text, str(exc))
            continue
        event.line_number = number
        tracker.observe(event)
        yield event


def _parse(text: str, fmt: Format, clock: syslog.YearClock) -> Event:
    if fmt is Format.SYSLOG:
        return syslog.parse(text, clock)
    if fmt is Format.JSONL:
        return jsonl.parse(text)
    if fmt is Format.APACHE_ERROR:
        return apache.parse_error(text)
    return apache.parse_access(text)
