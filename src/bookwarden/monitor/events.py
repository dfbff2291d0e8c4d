"""The one shape every monitored event takes, whatever log it came from.

A parser fills what it knows; what a rule asks for and the event does not hold is absent (None), never an empty
string, so `field: null` and `|exists` rules can tell the two apart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class LogSource:
    """Where an event comes from, in Sigma's terms: a rule applies to an event whose source matches its `logsource`.

    `services` is a set because one line can be several things at once: an sshd line read from syslog is both
    `service: sshd` and `service: syslog`.
    """

    product: str | None = None
    category: str | None = None
    services: frozenset[str] = frozenset()


@dataclass(slots=True)
class Event:
    """One log line or platform event, normalised.

    `time` is timezone-aware (event time: what the line says, not when it was read). `source_address` is the remote
    peer as the log names it: an IP address, or a host name when that is all the line holds (PAM's `rhost=` when
    sshd resolved the client). `fields` holds what is specific to the source (`auth_method`, `port`, `status`...).
    """

    time: datetime
    source: LogSource
    message: str
    raw: str
    host: str | None = None
    program: str | None = None
    pid: int | None = None
    user: str | None = None
    source_address: str | None = None
    outcome: Outcome | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    line_number: int | None = None

    def get(self, name: str) -> Any:
        """The value of a field by our name: a core attribute first, then `fields`; None when absent."""
        if name in _CORE:
            value = getattr(self, name)
            return value.value if isinstance(value, enum.Enum) else value
        return self.fields.get(name)


_CORE = frozenset({"time", "message", "raw", "host", "program", "pid", "user", "source_address", "outcome"})
