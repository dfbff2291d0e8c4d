"""Apache logs: the error log (2.2 and 2.4 forms) and the access log (Common and Combined Log Format)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from bookwarden.monitor.events import Event, LogSource, Outcome
from bookwarden.monitor.parse.syslog import MONTHS, Unparsable

# [Sun Dec 04 04:47:44 2005] [error] message      (2.2)
# [Sun Dec 04 04:47:44.123456 2005] [core:error] [pid 12:tid 34] [client 1.2.3.4:5] message      (2.4)
_ERROR = re.compile(
    r"^\[(?:\w{3}) (?P<month>\w{3}) (?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d)(?:\.\d+)? (?P<year>\d{4})\] "
    r"\[(?:(?P<module>[\w-]+):)?(?P<level>\w+)\](?: \[pid (?P<pid>\d+)(?::tid \d+)?\])?"
    r"(?: \[client (?P<client>[^\]]+?)(?::(?P<port>\d+))?\])? (?P<msg>.*)$"
)
_ACCESS = re.compile(
    r'^(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<stamp>[^\]]+)\] "(?P<request>[^"\\]*(?:\\.[^"\\]*)*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-)(?: "(?P<referer>[^"\\]*(?:\\.[^"\\]*)*)" "(?P<agent>[^"\\]*(?:\\.[^"\\]*)*)")?'
)


def parse_error(line: str) -> Event:
    found = _ERROR.match(line)
    if found is None:
        raise Unparsable("not an Apache error log line")
    month = MONTHS.get(found["month"])
    if month is None:
        raise Unparsable(f"{found['month']!r} is not a month")
    hour, minute, second = (int(part) for part in found["clock"].split(":"))
    time = datetime(int(found["year"]), month, int(found["day"]), hour, minute, second, tzinfo=UTC)
    event = Event(
        time=time,
        source=LogSource(None, None, frozenset({"apache"})),
        message=found["msg"],
        raw=line,
        program="httpd",
        pid=int(found["pid"]) if found["pid"] else None,
        source_address=found["client"],
    )
    event.fields["level"] = found["level"]
    if found["module"]:
        event.fields["module"] = found["module"]
    return event


def parse_access(line: str) -> Event:
    found = _ACCESS.match(line)
    if found is None:
        raise Unparsable("not a Common or Combined Log Format line")
    time = _access_time(found["stamp"])
    method, _, rest = found["request"].partition(" ")
    target, _, protocol = rest.rpartition(" ") if " " in rest else (rest, "", "")
    path, _, query = target.partition("?")
    status = int(found["status"])
    event = Event(
        time=time.astimezone(UTC),
        source=LogSource(None, "webserver", frozenset({"apache"})),
        message=found["request"],
        raw=line,
        program="httpd",
        source_address=found["client"],
        user=None if found["user"] == "-" else found["user"],
        outcome=Outcome.FAILURE if status >= 400 else Outcome.SUCCESS,
    )
    event.fields.update(
        method=method,
        path=path,
        query=query or None,
        target=target,
        protocol=protocol or None,
        status=status,
        bytes=None if found["bytes"] == "-" else int(found["bytes"]),
        referer=_dash(found["referer"]),
        user_agent=_dash(found["agent"]),
        extension=_extension(path),
    )
    return event


_STAMP = re.compile(r"^(\d{2})/(\w{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$")


def _access_time(stamp: str) -> datetime:
    """`10/Oct/2025:13:55:36 -0700` (strptime is most of the parse time, hence by hand)."""
    found = _STAMP.match(stamp)
    month = MONTHS.get(found.group(2)) if found else None
    if found is None or month is None:
        raise Unparsable(f"bad time stamp {stamp!r}")
    day, _, year, hour, minute, second, sign, zone_hours, zone_minutes = found.groups()
    offset = timedelta(hours=int(zone_hours), minutes=int(zone_minutes)) * (-1 if sign == "-" else 1)
    try:
        return datetime(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=timezone(offset))
    except ValueError as exc:
        raise Unparsable(f"bad time stamp {stamp!r}: {exc}") from None


def _extension(path: str) -> str | None:
    """The file extension a request names (Sigma's c-uri-extension), lower-cased: `/a/b.PHP` is `php`."""
    last = path.rsplit("/", 1)[-1]
    return last.rsplit(".", 1)[-1].lower() if "." in last.strip(".") else None


def _dash(value: str | None) -> str | None:
    return None if value in (None, "-") else value
