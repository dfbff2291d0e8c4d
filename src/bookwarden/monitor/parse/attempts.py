"""sshd authentication attempts: the several lines one guess leaves, counted once.

One failed password guess on an unknown account leaves up to four lines, all with the pid of the sshd process
serving that connection: `Invalid user x from A`, PAM's `check pass; user unknown` and `authentication failure`, then
`Failed password for invalid user x from A`. A brute-force rule must count it once. The tracker marks every line
that belongs to a failed attempt with `auth_attempt`: `started` on the first line of an attempt (the one rules count),
`continued` on the others.

Per connection (host, sshd pid) an attempt collects at most one line of each part: `Invalid user`, PAM's
`authentication failure`, sshd's `error: PAM: Authentication failure` and the `Failed <method>` line, which is always
the last line of an attempt and closes it. A line whose part the open attempt already holds starts the next attempt.
So:

- `Invalid user` alone (the client gave up, or only probed the name) is one attempt;
- three password guesses in one connection are three attempts, whichever of the lines each left;
- logs that hold only PAM's lines (older sshd, or sshd logging elsewhere) count one attempt per PAM failure.

A connection's pre-authentication phase is bounded by sshd's LoginGraceTime (120 s by default), so lines of one
attempt are never further apart: an open attempt older than that is closed, which keeps a pid reused days later from
joining an old attempt. `PAM N more authentication failures` sums failures already logged and counts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bookwarden.monitor.events import Event
from bookwarden.monitor.parse.auth import attempt_method

LOGIN_GRACE = timedelta(seconds=120)
# Lines after which the connection is over: its next line (the pid reused) is a new connection.
_ENDS = frozenset({"connection.closed", "auth.succeeded", "session.opened"})


@dataclass
class _Attempt:
    started: datetime
    parts: set[str] = field(default_factory=set)


class AttemptTracker:
    """Marks the lines of failed sshd authentication attempts; feed it every event, in file order."""

    def __init__(self, grace: timedelta = LOGIN_GRACE) -> None:
        self.grace = grace
        self._open: dict[tuple[str | None, int], _Attempt] = {}

    def observe(self, event: Event) -> None:
        if event.program != "sshd" or event.pid is None:
            return
        key = (event.host, event.pid)
        action = event.fields.get("action")
        part = _part(event, action)
        if part is None:
            if action in _ENDS:
                self._open.pop(key, None)
            return
        attempt = self._open.get(key)
        if attempt is not None and (part in attempt.parts or event.time - attempt.started > self.grace):
            attempt = None
        if attempt is None:
            attempt = self._open[key] = _Attempt(started=event.time)
            event.fields["auth_attempt"] = "started"
        else:
            event.fields["auth_attempt"] = "continued"
        attempt.parts.add(part)
        if part == "failed":
            del self._open[key]


def _part(event: Event, action: str | None) -> str | None:
    if action == "user.invalid":
        return "invalid"
    if action == "pam.failed":
        return "pam" if "pam_module" in event.fields else "pam_error"
    if action == "auth.failed" and attempt_method(event) is not None:
        return "failed"
    return None
