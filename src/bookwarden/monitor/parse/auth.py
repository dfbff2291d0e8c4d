"""sshd and PAM messages into fields: who (`user`), from where (`source_address`, `port`), how (`auth_method`),
what happened (`action`) and whether it worked (`outcome`).

Both PAM spellings are read: the modern `sshd[7]: pam_unix(sshd:auth): authentication failure; ...` and the older
`sshd(pam_unix)[7]: authentication failure; ...` where the module sits in the tag.
"""

from __future__ import annotations

import re

from bookwarden.monitor.events import Event, Outcome

# Methods whose failure is an authentication attempt (`none` is a client asking which methods exist; hostbased
# and GSSAPI failures are the host's configuration, not a guess at a secret).
ATTEMPT_METHODS = frozenset({"password", "publickey", "keyboard-interactive"})

_ADDR = r"(?P<addr>[0-9A-Fa-f:.]+|\S+?)"
_PORT = r"(?: port (?P<port>\d+))?"
_SSHD = [
    ("user.invalid", Outcome.FAILURE, re.compile(rf"^(?:Invalid|Illegal) user (?P<user>.*?) from {_ADDR}{_PORT}\s*$")),
    (
        "auth.failed",
        Outcome.FAILURE,
        re.compile(
            rf"^Failed (?P<method>[\w/-]+) for (?:(?P<invalid>invalid|illegal) user )?(?P<user>.*?) from {_ADDR}{_PORT}"
            r"(?: ssh\d?)?(?:: (?P<detail>.*))?\s*$"
        ),
    ),
    (
        "auth.succeeded",
        Outcome.SUCCESS,
        re.compile(
            rf"^Accepted (?P<method>[\w/-]+) for (?P<user>.*?) from {_ADDR}{_PORT}(?: ssh\d?)?(?:: (?P<detail>.*))?\s*$"
        ),
    ),
    (
        "pam.failed",
        Outcome.FAILURE,
        re.compile(
            r"^error: PAM: Authentication failure for (?:(?P<invalid>invalid|illegal) user )?(?P<user>.*?) from "
            rf"{_ADDR}\s*$"
        ),
    ),
    (
        "auth.max_attempts",
        Outcome.FAILURE,
        re.compile(
            r"^error: maximum authentication attempts exceeded for "
            rf"(?:(?P<invalid>invalid|illegal) user )?(?P<user>.*?) from {_ADDR}{_PORT}"
        ),
    ),
    (
        "connection.closed",
        None,
        re.compile(
            r"^(?:Connection closed|Disconnected|Connection reset) (?:by|from) "
            rf"(?:(?:invalid|authenticating) user (?P<user>\S*) |user (?P<known>\S+) )?{_ADDR}{_PORT}"
        ),
    ),
    ("connection.closed", None, re.compile(rf"^Received disconnect from {_ADDR}{_PORT}")),
    ("connection.opened", None, re.compile(rf"^Connection from {_ADDR}{_PORT} on ")),
    (
        "connection.no_identification",
        Outcome.FAILURE,
        re.compile(rf"^Did not receive identification string from {_ADDR}{_PORT}"),
    ),
]
_PAM_PREFIX = re.compile(r"^(?P<module>pam_[\w]+)\((?P<service>[^:)]+):(?P<kind>\w+)\): (?P<msg>.*)$")
_PAM_FAILURE = re.compile(r"^authentication failure; (?P<kv>.*)$")
_PAM_MORE = re.compile(r"^PAM (?P<count>\d+) more authentication failures?; (?P<kv>.*)$")
_PAM_SESSION = re.compile(r"^session (?P<what>opened|closed) for user (?P<user>[^\s(]+)")
_PAM_UNKNOWN = re.compile(r"^check pass; user unknown\s*$")
_KV = re.compile(r"(\w+)=(\S*)")


def read(event: Event, module: str | None) -> None:
    """Fill the fields of an sshd or PAM line; other programs' lines are left as they are."""
    message = event.message
    if module is None and (prefixed := _PAM_PREFIX.match(message)):
        module, message = prefixed["module"], prefixed["msg"]
        event.fields["pam_service"] = prefixed["service"]
    if module is not None:
        event.fields["pam_module"] = module
        _pam(event, message)
    elif event.program == "sshd":
        _sshd(event, message)


def _pam(event: Event, message: str) -> None:
    if found := _PAM_FAILURE.match(message):
        _pam_pairs(event, found["kv"])
        event.fields["action"], event.outcome = "pam.failed", Outcome.FAILURE
    elif _PAM_UNKNOWN.match(message):
        event.fields["action"], event.outcome = "pam.user_unknown", Outcome.FAILURE
    elif found := _PAM_SESSION.match(message):
        event.user = found["user"]
        event.fields["action"] = f"session.{found['what']}"
        event.outcome = Outcome.SUCCESS if found["what"] == "opened" else None


def _pam_pairs(event: Event, pairs: str) -> None:
    values = dict(_KV.findall(pairs))
    if values.get("rhost"):
        event.source_address = values["rhost"]
    if values.get("user"):
        event.user = values["user"]
    if values.get("ruser"):
        event.fields["remote_user"] = values["ruser"]
    if values.get("tty"):
        event.fields["tty"] = values["tty"]


def _sshd(event: Event, message: str) -> None:
    if found := _PAM_MORE.match(message):
        # A summary PAM leaves when a connection ends: its failures were each logged already.
        _pam_pairs(event, found["kv"])
        event.fields.update(action="pam.more_failures", failures=int(found["count"]))
        event.outcome = Outcome.FAILURE
        return
    for action, outcome, pattern in _SSHD:
        if found := pattern.match(message):
            groups = found.groupdict()
            event.fields["action"] = action
            event.outcome = outcome
            event.source_address = groups.get("addr")
            if groups.get("port"):
                event.fields["port"] = int(groups["port"])
            if user := groups.get("user") or groups.get("known"):
                event.user = user
            if groups.get("invalid") or action == "user.invalid":
                event.fields["invalid_user"] = True
            if method := groups.get("method"):
                event.fields["auth_method"] = method
            if groups.get("detail"):
                event.fields["detail"] = groups["detail"]
            return


def attempt_method(event: Event) -> str | None:
    """The method of a failed authentication, as one of ATTEMPT_METHODS (`keyboard-interactive/pam` is
    keyboard-interactive), or None."""
    method = event.fields.get("auth_method")
    if method is None:
        return None
    base = method.split("/", 1)[0]
    return base if base in ATTEMPT_METHODS else None
