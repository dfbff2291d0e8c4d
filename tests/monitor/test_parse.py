"""Parsing: syslog (RFC 3164 and 5424), sshd and PAM messages, Apache logs, the platform's JSON lines; and the real
loghub samples, where every line is either parsed or listed as unparsed with its reason."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime

import msgspec
import pytest

from bookwarden.audit import bundle
from bookwarden.monitor.events import Outcome
from bookwarden.monitor.parse import apache, jsonl, syslog
from bookwarden.monitor.parse.reader import Format, Unparsed, read
from tests.monitor.helpers import LOGS


def one(line: str, year: int = 2026):
    return syslog.parse(line, syslog.YearClock(year))


def test_rfc3164_with_the_year_given_and_the_new_year_crossed():
    clock = syslog.YearClock(2025)
    december = syslog.parse(
        "<38>Dec 31 23:59:59 web1 sshd[77]: Connection from 192.0.2.7 port 5 on 10.0.0.1 port 22", clock
    )
    january = syslog.parse("Jan  1 00:00:01 web1 cron[9]: (root) CMD (true)", clock)
    assert december.time == datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert january.time == datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert (december.host, december.program, december.pid) == ("web1", "sshd", 77)
    assert december.fields["action"] == "connection.opened" and december.source_address == "192.0.2.7"
    assert (january.program, january.message) == ("cron", "(root) CMD (true)")
    assert {"syslog", "auth", "sshd"} <= december.source.services


def test_rfc5424_with_structured_data():
    event = one(
        '<34>1 2026-03-01T12:00:00.123Z web1 sshd 4242 ID47 [origin@32473 ip="192.0.2.1" note="a \\"q\\""] '
        "Failed password for root from 192.0.2.9 port 2200 ssh2"
    )
    assert event.time == datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert (event.host, event.program, event.pid, event.fields["msgid"]) == ("web1", "sshd", 4242, "ID47")
    assert event.fields["structured_data"] == {"origin@32473": {"ip": "192.0.2.1", "note": 'a "q"'}}
    assert (event.fields["action"], event.user, event.source_address, event.fields["port"]) == (
        "auth.failed",
        "root",
        "192.0.2.9",
        2200,
    )
    nil = one("<13>1 2026-03-01T12:00:00+01:00 - - - - - just text")
    assert nil.message == "just text" and nil.host is None and nil.time.utcoffset().total_seconds() == 3600


def test_rfc3339_stamps_in_place_of_bsd_ones():
    event = one("2026-03-01T12:00:00.5+00:00 web1 sudo[3]: pam_unix(sudo:session): session opened for user root")
    assert event.program == "sudo" and event.fields["action"] == "session.opened" and event.user == "root"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Invalid user admin from 192.0.2.1 port 41000",
            {
                "action": "user.invalid",
                "user": "admin",
                "source_address": "192.0.2.1",
                "port": 41000,
                "invalid_user": True,
            },
        ),
        ("Illegal user test from 192.0.2.1", {"action": "user.invalid", "user": "test", "source_address": "192.0.2.1"}),
        (
            "Failed password for invalid user admin from 192.0.2.1 port 41000 ssh2",
            {"action": "auth.failed", "auth_method": "password", "user": "admin", "invalid_user": True},
        ),
        (
            "Failed publickey for git from 2001:db8::5 port 50000 ssh2: RSA SHA256:abc",
            {
                "action": "auth.failed",
                "auth_method": "publickey",
                "source_address": "2001:db8::5",
                "detail": "RSA SHA256:abc",
            },
        ),
        (
            "Failed keyboard-interactive/pam for root from 192.0.2.1 port 2 ssh2",
            {"action": "auth.failed", "auth_method": "keyboard-interactive/pam", "user": "root"},
        ),
        ("Failed none for invalid user x from 192.0.2.1 port 2 ssh2", {"action": "auth.failed", "auth_method": "none"}),
        (
            "Accepted publickey for deploy from 192.0.2.3 port 9 ssh2: ED25519 SHA256:x",
            {"action": "auth.succeeded", "user": "deploy", "outcome": "success"},
        ),
        (
            "error: PAM: Authentication failure for illegal user x from evil.example",
            {"action": "pam.failed", "user": "x", "source_address": "evil.example"},
        ),
        (
            "error: maximum authentication attempts exceeded for root from 192.0.2.1 port 5 ssh2 [preauth]",
            {"action": "auth.max_attempts", "user": "root"},
        ),
        (
            "Connection closed by invalid user oracle 192.0.2.1 port 41000 [preauth]",
            {"action": "connection.closed", "user": "oracle", "source_address": "192.0.2.1"},
        ),
        ("Disconnected from user alice 192.0.2.4 port 3", {"action": "connection.closed", "user": "alice"}),
        ("Received disconnect from 192.0.2.1 port 4:11: Bye Bye [preauth]", {"action": "connection.closed"}),
        (
            "Did not receive identification string from 192.0.2.8 port 7",
            {"action": "connection.no_identification", "source_address": "192.0.2.8"},
        ),
        (
            "PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.1  user=root",
            {"action": "pam.more_failures", "failures": 2, "user": "root", "source_address": "192.0.2.1"},
        ),
        (
            "pam_unix(sshd:auth): authentication failure; tty=ssh ruser= rhost=192.0.2.1  user=root",
            {
                "action": "pam.failed",
                "pam_module": "pam_unix",
                "pam_service": "sshd",
                "user": "root",
                "outcome": "failure",
            },
        ),
        ("pam_unix(sshd:auth): check pass; user unknown", {"action": "pam.user_unknown"}),
        ("Server listening on 0.0.0.0 port 22.", {"action": None}),
    ],
)
def test_sshd_and_pam_messages(message, expected):
    event = one(f"Mar  1 12:00:00 web1 sshd[100]: {message}")
    for name, value in expected.items():
        assert event.get(name) == value, (name, event)


def test_the_older_pam_tag_names_the_module():
    event = one(
        "Jun 15 02:04:59 combo sshd(pam_unix)[20882]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh "
        "ruser= rhost=220-135-151-1.hinet-ip.hinet.net  user=root"
    )
    assert (event.program, event.pid, event.fields["pam_module"]) == ("sshd", 20882, "pam_unix")
    assert (event.fields["action"], event.user, event.source_address) == (
        "pam.failed",
        "root",
        "220-135-151-1.hinet-ip.hinet.net",
    )
    assert event.outcome is Outcome.FAILURE and "auth" in event.source.services


def test_lines_that_are_not_syslog_are_unparsed_with_the_reason():
    items = list(read(["not a log line", "", "Foo 12 10:00:00 h p: x", "Mar  1 12:00:00 h p: fine"], Format.SYSLOG))
    assert [type(item).__name__ for item in items] == ["Unparsed", "Unparsed", "Event"]
    assert items[0].line_number == 1 and "RFC 3164" in items[0].reason
    assert items[1].line_number == 3 and "'Foo' is not a month" in items[1].reason


def test_apache_error_log_both_versions():
    old = apache.parse_error("[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6")
    assert old.time == datetime(2005, 12, 4, 4, 47, 44, tzinfo=UTC) and old.fields["level"] == "error"
    assert old.message == "mod_jk child workerEnv in error state 6" and old.source.services == {"apache"}
    new = apache.parse_error(
        "[Wed Oct 11 14:32:52.123456 2023] [core:error] [pid 1234:tid 5678] [client 192.0.2.4:5000] AH00037: x"
    )
    assert (new.fields["module"], new.pid, new.source_address, new.message) == ("core", 1234, "192.0.2.4", "AH00037: x")


def test_apache_access_log():
    event = apache.parse_access(
        '192.0.2.9 - bob [10/Oct/2025:13:55:36 -0700] "GET /search?q=1%27%20or%201=1 HTTP/1.1" 404 2326 '
        '"http://ref.example/" "sqlmap/1.7"'
    )
    assert event.time == datetime(2025, 10, 10, 20, 55, 36, tzinfo=UTC)
    assert (event.source_address, event.user, event.outcome) == ("192.0.2.9", "bob", Outcome.FAILURE)
    assert (
        event.fields.items()
        >= {
            "method": "GET",
            "path": "/search",
            "query": "q=1%27%20or%201=1",
            "status": 404,
            "bytes": 2326,
            "referer": "http://ref.example/",
            "user_agent": "sqlmap/1.7",
            "protocol": "HTTP/1.1",
            "extension": None,
        }.items()
    )
    assert (
        apache.parse_access('192.0.2.9 - - [10/Oct/2025:13:55:36 +0000] "GET /a/b.PHP?x HTTP/1.1" 200 1').fields[
            "extension"
        ]
        == "php"
    )
    assert event.source.category == "webserver"
    common = apache.parse_access('192.0.2.9 - - [10/Oct/2025:13:55:36 +0000] "GET / HTTP/1.0" 200 -')
    assert common.user is None and common.fields["user_agent"] is None and common.fields["bytes"] is None
    with pytest.raises(syslog.Unparsable, match="bad time stamp"):
        apache.parse_access('192.0.2.9 - - [32/Oct/2025:13:55:36 +0000] "GET / HTTP/1.0" 200 -')


def test_flat_json_events():
    event = jsonl.parse(
        json.dumps(
            {
                "time": "2026-03-01T12:00:00Z",
                "action": "auth.sign_in.failed",
                "outcome": "denied",
                "source_address": "192.0.2.1",
                "target_id": "acc-1",
                "details": {"reason": "bad password"},
            }
        )
    )
    assert (event.get("action"), event.outcome, event.source_address) == (
        "auth.sign_in.failed",
        Outcome.FAILURE,
        "192.0.2.1",
    )
    assert event.get("details.reason") == "bad password" and event.source.product == "bookwarden"
    for bad in ("[1]", "{", json.dumps({"action": "x"})):
        with pytest.raises(syslog.Unparsable):
            jsonl.parse(bad)


def test_audit_bundle_lines_as_the_platform_exports_them():
    fields = bundle.EventFields(
        action="role.granted",
        actor_id="acc-admin",
        actor_kind="account",
        details={"role": "admin", "approval_id": "ap1"},
        grant_id=None,
        id="ev-1",
        occurred_at="2026-03-01T23:10:00.250000+00:00",
        outcome="succeeded",
        request_id="rq",
        source_address="192.0.2.5",
        target_id="acc-new",
        target_kind="account",
        user_agent="ua",
    )
    unmapped = bundle.Unmapped(
        event=msgspec.Raw(msgspec.json.encode(fields)), seq=7, body_digest="d", prev_hash="p", hash="h"
    )
    line = bundle.render_line("tenant-1", fields, unmapped).decode()
    event = jsonl.parse(line)
    assert event.time == datetime(2026, 3, 1, 23, 10, 0, 250000, tzinfo=UTC)
    assert (event.get("action"), event.outcome, event.source_address) == ("role.granted", Outcome.SUCCESS, "192.0.2.5")
    assert (event.get("actor_kind"), event.get("actor_id"), event.get("target_id")) == (
        "account",
        "acc-admin",
        "acc-new",
    )
    assert (event.get("tenant_id"), event.get("grant_id"), event.get("details.approval_id")) == (
        "tenant-1",
        None,
        "ap1",
    )


def test_every_line_of_the_linux_sample_is_parsed():
    lines = (LOGS / "Linux_2k.log").read_text().splitlines()
    items = list(read(lines, Format.SYSLOG, year=2005))
    assert len(items) == len(lines) == 2000
    assert [item for item in items if isinstance(item, Unparsed)] == []
    # Independently of the parser: the program tag as a plain reading of each line sees it.
    tags = Counter(
        m.group(1) for line in lines if (m := re.match(r"^\w{3} [ \d]\d [\d:]{8} combo (\w[\w.-]*)(?:\(|\[|:)", line))
    )
    parsed = Counter(item.program for item in items if item.program)
    assert parsed == tags
    assert all(item.time.year == 2005 for item in items)
    sshd = [item for item in items if item.program == "sshd"]
    assert Counter(item.fields.get("action") for item in sshd) == {
        "pam.failed": sum("sshd(pam_unix)" in line and "authentication failure" in line for line in lines),
        "pam.user_unknown": sum("sshd(pam_unix)" in line and "check pass; user unknown" in line for line in lines),
        "session.opened": sum("sshd(pam_unix)" in line and "session opened" in line for line in lines),
        "session.closed": sum("sshd(pam_unix)" in line and "session closed" in line for line in lines),
    }


def test_every_line_of_the_apache_sample_is_parsed():
    lines = (LOGS / "Apache_2k.log").read_text().splitlines()
    items = list(read(lines, Format.APACHE_ERROR))
    assert len(items) == 2000 and not any(isinstance(item, Unparsed) for item in items)
    levels = Counter(re.match(r"^\[[^]]+\] \[(\w+)\]", line).group(1) for line in lines)
    assert Counter(item.fields["level"] for item in items) == levels
    # As access log, the same file is refused line by line, each with the reason: never silently dropped.
    refused = list(read(lines, Format.APACHE_ACCESS))
    assert len(refused) == 2000 and all(isinstance(item, Unparsed) and item.reason for item in refused)
