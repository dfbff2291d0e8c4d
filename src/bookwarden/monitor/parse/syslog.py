"""Syslog lines, RFC 3164 (BSD: `Jun 14 15:16:01 host tag[pid]: message`) and RFC 5424 (`<34>1 2026-... host app
procid msgid [sd] message`), into events; the message itself is read by the program's parser (auth.py for sshd and PAM).

An RFC 3164 stamp has no year and no zone: the year is the caller's (`--year`), advanced by one when the months run
backwards (a file spanning New Year), and the time is read as UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from bookwarden.monitor.events import Event, LogSource
from bookwarden.monitor.parse import auth

MONTHS = {
    name: number
    for number, name in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}

_BSD = re.compile(
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<month>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d) "
    r"(?P<host>\S+) {1,2}(?P<rest>.*)$"
)
# rsyslog's high-precision template: an RFC 3339 stamp in place of the BSD one.
_ISO = re.compile(
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) "
    r"(?P<host>\S+) (?P<rest>.*)$"
)
_5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<stamp>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$"
)
_SD_ELEMENT = re.compile(r"\[(?P<id>[^\s\]]+)(?P<params>(?:\s+[^=\s\]]+=\"(?:[^\"\\]|\\.)*\")*)\s*\]")
_SD_PARAM = re.compile(r"([^=\s\]]+)=\"((?:[^\"\\]|\\.)*)\"")
# `sshd[123]: ...`, and the older PAM tag `sshd(pam_unix)[123]: ...` (the module in parentheses).
_TAG = re.compile(
    r"^(?P<program>[A-Za-z0-9_.\-/]+)(?:\((?P<module>[A-Za-z0-9_]+)\))?(?:\[(?P<pid>\d+)\])?: ?(?P<msg>.*)$"
)

# Programs whose lines belong to Sigma's `service: auth` (what /var/log/auth.log holds).
AUTH_PROGRAMS = frozenset(
    {
        "sshd",
        "su",
        "sudo",
        "login",
        "gdm",
        "gdm-binary",
        "passwd",
        "useradd",
        "userdel",
        "usermod",
        "groupadd",
        "chpasswd",
        "systemd-logind",
        "klogind",
        "vsftpd",
        "cron",
        "CRON",
    }
)


class Unparsable(ValueError):
    """A line that is not syslog: the reason says which shape was expected."""


@dataclass
class YearClock:
    """The year an RFC 3164 stamp belongs to: the one given, plus one each time the months run backwards."""

    year: int
    last_month: int | None = None

    def stamp(self, month: int, day: int, clock: str) -> datetime:
        if self.last_month is not None and month < self.last_month:
            self.year += 1
        self.last_month = month
        hour, minute, second = (int(part) for part in clock.split(":"))
        return datetime(self.year, month, day, hour, minute, second, tzinfo=UTC)


def parse(line: str, clock: YearClock) -> Event:
    """One syslog line as an event; Unparsable with the reason when it is neither RFC 3164 nor RFC 5424."""
    if line.startswith("<") and (found := _5424.match(line)):
        return _from_5424(line, found)
    if found := _BSD.match(line):
        month = MONTHS.get(found["month"])
        if month is None:
            raise Unparsable(f"{found['month']!r} is not a month")
        try:
            time = clock.stamp(month, int(found["day"]), found["clock"])
        except ValueError as exc:
            raise Unparsable(f"bad time stamp: {exc}") from None
        return _from_tagged(line, time, found["host"], found["rest"])
    if found := _ISO.match(line):
        return _from_tagged(line, _iso_time(found["stamp"]), found["host"], found["rest"])
    raise Unparsable("neither an RFC 3164 nor an RFC 5424 syslog line")


def _iso_time(stamp: str) -> datetime:
    try:
        time = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        raise Unparsable(f"bad time stamp {stamp!r}") from None
    return time if time.tzinfo is not None else time.replace(tzinfo=UTC)


def _from_tagged(line: str, time: datetime, host: str, rest: str) -> Event:
    tag = _TAG.match(rest)
    # A line with no program tag (`-- MARK --`, `syslogd 1.4.1: restart.`): the whole rest is the message.
    if tag is None:
        return Event(
            time=time, source=LogSource("linux", None, frozenset({"syslog"})), message=rest, raw=line, host=host
        )
    module = tag["module"]
    return _event(line, time, host, tag["program"], int(tag["pid"]) if tag["pid"] else None, tag["msg"], module)


def _from_5424(line: str, found: re.Match[str]) -> Event:
    app = None if found["app"] == "-" else found["app"]
    pid = int(found["procid"]) if found["procid"].isdigit() else None
    message = (found["msg"] or "").removeprefix("\ufeff")  # the BOM RFC 5424 allows before a UTF-8 message
    event = _event(line, _iso_time(found["stamp"]), None if found["host"] == "-" else found["host"], app, pid, message)
    if found["msgid"] != "-":
        event.fields["msgid"] = found["msgid"]
    if found["sd"] != "-":
        event.fields["structured_data"] = {
            element["id"]: {
                key: value.replace('\\"', '"').replace("\\]", "]").replace("\\\\", "\\")
                for key, value in _SD_PARAM.findall(element["params"])
            }
            for element in _SD_ELEMENT.finditer(found["sd"])
        }
    return event


def _event(
    line: str,
    time: datetime,
    host: str | None,
    program: str | None,
    pid: int | None,
    message: str,
    module: str | None = None,
) -> Event:
    services = {"syslog"}
    if program:
        services.add(program)
        if program in AUTH_PROGRAMS or module is not None:
            services.add("auth")
    event = Event(
        time=time,
        source=LogSource("linux", None, frozenset(services)),
        message=message,
        raw=line,
        host=host,
        program=program,
        pid=pid,
    )
    auth.read(event, module)
    return event
