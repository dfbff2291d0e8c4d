"""From Sigma's vocabulary to ours: field names, and which events a rule's `logsource` covers.

A rule names fields as its log source's taxonomy does (`c-useragent`, `cs-method` for web servers); the table below
says which of our event's fields each one is. A name the table does not hold is looked up as it is (our own names:
`action`, `outcome`, `user`, `source_address`, `auth_attempt`...), so the built-in pack and the SigmaHQ rules use the
same engine. Fieldless values (Sigma keywords) are searched for in the event's message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bookwarden.monitor.events import Event, LogSource

# Sigma web server and proxy taxonomy (W3C extended log names) -> our access-log fields.
SIGMA_TO_EVENT: dict[str, str] = {
    "cs-method": "method",
    "c-uri": "target",
    "cs-uri": "target",
    "cs-uri-stem": "path",
    "c-uri-stem": "path",
    "cs-uri-query": "query",
    "c-uri-query": "query",
    "c-uri-extension": "extension",
    "sc-status": "status",
    "c-useragent": "user_agent",
    "cs-user-agent": "user_agent",
    "cs-referer": "referer",
    "cs-referrer": "referer",
    "c-ip": "source_address",
    "src_ip": "source_address",
    "cs-username": "user",
    "sc-bytes": "bytes",
    # Generic names some Linux rules use.
    "User": "user",
    "Hostname": "host",
    "ProcessId": "pid",
}

# The log sources our parsers produce today, as (product, category, services). A rule none of them covers loads and
# is reported as having no source yet (process creation, auditd, proxies... come with later collectors).
PRODUCED: tuple[LogSource, ...] = (
    LogSource("linux", None, frozenset({"syslog", "auth", "sshd"})),
    LogSource(None, None, frozenset({"apache"})),
    LogSource(None, "webserver", frozenset({"apache"})),
    LogSource("bookwarden", None, frozenset({"audit"})),
    # Host checks: file integrity scans and rootcheck runs (monitor/fim, monitor/rootcheck).
    LogSource("bookwarden", None, frozenset({"fim"})),
    LogSource("bookwarden", None, frozenset({"rootcheck"})),
)

NOT_SYSLOG = frozenset({"auditd"})


def getter(name: str) -> Callable[[Event], Any]:
    """How to read the field a rule names from an event."""
    ours = SIGMA_TO_EVENT.get(name, name)
    return lambda event: event.get(ours)


def covers(product: str | None, category: str | None, service: str | None, source: LogSource) -> bool:
    """Whether a rule with this logsource applies to events from `source` (what a rule leaves out, it does not ask)."""
    return (
        (product is None or product == source.product)
        and (category is None or category == source.category)
        and (service is None or service in source.services)
    )


def produced(product: str | None, category: str | None, service: str | None) -> bool:
    """Whether any parser of ours produces events such a rule applies to. Services of one program (`vsftpd`...)
    count when a syslog line can carry them: every program's lines are `service: <program>`; auditd's records are
    not syslog lines and have no parser yet."""
    if product == "linux" and category is None and service is not None:
        return service not in NOT_SYSLOG
    return any(covers(product, category, service, source) for source in PRODUCED)
