"""The built-in pack on the platform's own events and on web requests: each rule fires on what it names, not on
its near misses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bookwarden.monitor.parse.reader import Format
from bookwarden.monitor.replay import replay
from bookwarden.monitor.sigma.load import builtin_paths, load

PACK = load(builtin_paths())
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def rules_fired(records: list[dict], fmt: Format = Format.JSONL) -> list[str]:
    lines = [json.dumps({"time": (START + timedelta(seconds=r.pop("at", 0))).isoformat(), **r}) for r in records]
    return sorted(alert.rule for alert in replay(lines, fmt, PACK).alerts)


def failed(at: int, address: str, account: str) -> dict:
    return {
        "at": at,
        "action": "auth.sign_in.failed",
        "outcome": "denied",
        "source_address": address,
        "tenant_id": "7d3c4d38-58c5-4a47-9d8e-2f1f0d3d7a11",
        "target_id": account,
    }


def test_credential_stuffing_is_many_accounts_from_one_address():
    assert rules_fired([failed(i, "203.0.113.5", f"acc-{i}") for i in range(10)]) == ["platform_credential_stuffing"]
    assert rules_fired([failed(i, "203.0.113.5", f"acc-{i % 9}") for i in range(10)]) == []


def test_brute_force_on_one_account_from_many_addresses():
    fired = rules_fired([failed(i, f"192.0.2.{i}", "acc-1") for i in range(10)])
    assert fired == ["platform_brute_force_account"]


def test_role_grants_to_oneself_off_hours_and_privileged():
    grant = {"action": "role.granted", "outcome": "succeeded", "actor_id": "acc-1", "target_id": "acc-2"}
    assert rules_fired([dict(grant, details={"approval_id": None})]) == []
    assert rules_fired([dict(grant, details={"approval_id": "ap-9"})]) == ["platform_privileged_role_granted"]
    assert rules_fired([dict(grant, target_id="acc-1", details={})]) == ["platform_role_granted_to_self"]
    late = dict(grant, at=10 * 3600, details={})  # 20:00 UTC
    assert rules_fired([late]) == ["platform_role_granted_off_hours"]


def test_an_operator_reading_records_needs_a_grant_on_the_event():
    read = {"action": "patron.viewed", "outcome": "succeeded", "actor_kind": "operator", "actor_id": "op-1"}
    assert rules_fired([read]) == ["platform_operator_without_grant"]
    assert rules_fired([dict(read, grant_id="g-1")]) == []
    assert rules_fired([dict(read, actor_kind="account")]) == []


def test_audit_verification_failure_and_id_probing():
    assert rules_fired([{"action": "audit.verified", "outcome": "failed"}]) == ["platform_audit_verification_failed"]
    assert rules_fired([{"action": "audit.verified", "outcome": "succeeded"}]) == []
    # A failed restore drill reaches monitoring through the trail as every platform event does.
    assert rules_fired([{"action": "backup.drilled", "outcome": "failed"}]) == ["platform_backup_drill_failed"]
    assert rules_fired([{"action": "backup.drilled", "outcome": "succeeded"}]) == []
    probes = [
        {
            "at": i,
            "action": "request.failed",
            "outcome": "failed",
            "source_address": "198.51.100.7",
            "details": {"problem": "not-found", "route": "/api/v1/patrons/{id}"},
        }
        for i in range(20)
    ]
    assert rules_fired(probes) == ["platform_id_probing"]


def test_web_attacks_in_an_access_log():
    lines = [
        '192.0.2.9 - - [02/Mar/2026:10:00:00 +0000] "GET /search?q=1%27%20or%201=1-- HTTP/1.1" 200 5 "-" "curl/8"',
        '192.0.2.9 - - [02/Mar/2026:10:00:01 +0000] "GET /static/../../etc/passwd HTTP/1.1" 400 5 "-" "curl/8"',
        '192.0.2.9 - - [02/Mar/2026:10:00:02 +0000] "GET / HTTP/1.1" 200 5 "-" "Mozilla/5.0 (compatible; Nmap)"',
        '192.0.2.9 - - [02/Mar/2026:10:00:03 +0000] "GET /catalogue?q=selection HTTP/1.1" 200 5 "-" "Firefox"',
    ]
    alerts = replay(lines, Format.APACHE_ACCESS, PACK).alerts
    assert [(a.rule, a.lines) for a in alerts] == [
        ("web_sql_injection", (1,)),
        ("web_path_traversal", (2,)),
        ("web_scanner_user_agent", (3,)),
    ]
