"""Active response: blocks enforced by every HTTP process, jails acting on the engine's alerts (real sign-in
failures, real sshd logs), growing bans, the allowlist, account locks and session revocation, expiry, the hook,
and the operator controls (API and console).

Time moves by rewriting timestamps in SQL: inside a test's transaction the database clock stands still.
"""

from __future__ import annotations

import ipaddress
import json
import stat
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from bookwarden.api.app import create_app
from bookwarden.audit.events import PLATFORM_CHAIN
from bookwarden.core.config import Settings, get_settings
from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, TENANT_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import SYSTEM, Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.jobs.models import Job
from bookwarden.monitor.alerts import subscribers
from bookwarden.monitor.alerts.service import record_engine_alert
from bookwarden.monitor.engine import Alert, Engine
from bookwarden.monitor.parse import jsonl
from bookwarden.monitor.parse.reader import Format, Unparsed, read
from bookwarden.monitor.response import blocks, jails
from bookwarden.monitor.response.addresses import Allowlist, client_address, parse_network
from bookwarden.monitor.response.hook import run_hook
from bookwarden.monitor.response.jails import Jail, Outcome, Responder, Response, respond
from bookwarden.monitor.response.jobs import expire_blocks, forget_ended_blocks
from bookwarden.monitor.response.models import AddressBlock, EndedWhy
from bookwarden.monitor.sigma.load import builtin_paths, load
from tests.identity.test_signin import PASSWORD, WRONG, _login, fast_hashing, make_account  # noqa: F401
from tests.monitor.helpers import LOGS

PROBLEM = "application/problem+json"
BLOCKS = "/api/v1/operator/blocks"
OPS = Principal(PrincipalKind.OPERATOR, uuid.uuid4(), None, BUILTIN_PERMISSIONS[BuiltinRole.OPERATOR_OPS])
PACK = load(builtin_paths())


def operator_client(app, operator_token, address: str = "192.0.2.200") -> TestClient:
    client = TestClient(app, raise_server_exceptions=False, client=(address, 40000))
    client.headers["Authorization"] = f"Bearer {operator_token}"
    return client


def visitor(app, address: str) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, client=(address, 40001))


def events(db, action: str | None = None) -> list:
    with tenant_session(db, PLATFORM_CHAIN) as session:  # the platform's chain, read as the app reads it
        query = "SELECT action, outcome, actor_kind, target_id, details FROM audit_events ORDER BY seq"
        rows = session.execute(text(query)).all()
    return [r for r in rows if action is None or r.action == action]


def active(db) -> list[AddressBlock]:
    with platform_session(db) as session:
        return list(
            session.scalars(
                select(AddressBlock).where(AddressBlock.ended_at.is_(None)).order_by(AddressBlock.created_at)
            )
        )


def age(db, network: str, by: timedelta) -> None:
    """Move a block (created and expiry) `by` into the past: its time ran out without waiting."""
    with platform_session(db) as session:
        session.execute(
            text(
                "UPDATE address_blocks SET created_at = created_at - :by, expires_at = expires_at - :by "
                "WHERE network = CAST(:n AS cidr)"
            ),
            {"by": by, "n": network},
        )
        # Every HTTP process would learn of a real change this way; this one is made behind the service's back.
        blocks.announce_change(session)


def alerts_of(lines: list[str], fmt: Format, tuning=None, year: int | None = None) -> list[Alert]:
    """Every alert the engine raises for `lines`, opening and final, in event time."""
    ruleset = load(builtin_paths(), tuning) if tuning else PACK
    parsed = sorted((e for e in read(lines, fmt, year) if not isinstance(e, Unparsed)), key=lambda e: e.time)
    engine = Engine(ruleset)
    return [alert for event in parsed for alert in engine.feed(event)] + engine.finish()


SSHD = "Mar  2 10:{m:02d}:{s:02d} host sshd[{pid}]: Failed password for root from {address} port 4242 ssh2"


def sshd_attack(address: str, minute: int, attempts: int = 5) -> list[str]:
    return [SSHD.format(m=minute, s=n * 3, pid=1000 + minute * 10 + n, address=address) for n in range(attempts)]


# -- enforcement in every process ----------------------------------------------------------------


def test_a_block_made_through_one_app_is_enforced_by_another_within_a_second(db, settings, operator_token):
    first, second = create_app(db, settings), create_app(db, settings)  # two processes: a cache each
    attacker, neighbour = visitor(second, "203.0.113.7"), visitor(second, "203.0.113.8")
    assert attacker.get("/healthz").status_code == 200  # the second app has loaded its (empty) blocks

    made = operator_client(first, operator_token).post(BLOCKS, json={"address": "203.0.113.7", "minutes": 30})
    assert made.status_code == 201, made.text
    assert made.json()["network"] == "203.0.113.7/32" and made.json()["created_by"] == "operator_token"

    time.sleep(settings.monitor_block_refresh_seconds + 0.05)
    refused = attacker.get("/api/v1/patrons")  # before authentication: no credential is even needed
    assert refused.status_code == 403
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["type"] == "urn:bookwarden:problem:address-blocked"
    assert "blocked until" in refused.json()["detail"]
    assert refused.headers["x-content-type-options"] == "nosniff"  # inside the security headers
    assert neighbour.get("/healthz").status_code == 200


def test_no_database_query_per_request_only_a_version_read_at_most_once_a_second(db, settings):
    app = create_app(db, settings)
    client = visitor(app, "198.51.100.1")
    started = time.monotonic()
    for _ in range(40):
        assert client.get("/healthz").status_code == 200
    elapsed = time.monotonic() - started
    assert app.state.blocks.version_reads <= 1 + int(elapsed / settings.monitor_block_refresh_seconds)


def test_a_cached_block_stops_applying_at_its_end_without_a_reload(db, settings):
    app = create_app(db, settings.model_copy(update={"monitor_block_refresh_seconds": 0.0}))
    with platform_session(db) as session:
        row = blocks.place(
            session, parse_network("198.51.100.20"), timedelta(hours=1), rule="manual", jail=None, offence=1, by=OPS
        )
        # Ends in a moment by the wall clock (the test transaction's own clock stands still).
        session.execute(
            text("UPDATE address_blocks SET expires_at = :at WHERE id = :id"),
            {"at": datetime.now(UTC) + timedelta(seconds=1), "id": row.id},
        )
        blocks.announce_change(session)
    client = visitor(app, "198.51.100.20")
    assert client.get("/healthz").status_code == 403
    version = app.state.blocks.version
    time.sleep(1.1)
    assert client.get("/healthz").status_code == 200
    assert app.state.blocks.version == version  # nothing was reloaded: the cached block knew its end


def test_an_expired_block_stops_applying_and_the_job_records_its_end(db, settings, operator_token):
    app = create_app(db, settings.model_copy(update={"monitor_block_refresh_seconds": 0.0}))
    ops = operator_client(app, operator_token)
    assert ops.post(BLOCKS, json={"address": "198.51.100.30", "minutes": 10}).status_code == 201
    assert visitor(app, "198.51.100.30").get("/healthz").status_code == 403
    age(db, "198.51.100.30/32", timedelta(minutes=11))

    assert visitor(app, "198.51.100.30").get("/healthz").status_code == 200  # ended by its time, before the job
    assert expire_blocks(db) == 1
    assert expire_blocks(db) == 0
    with platform_session(db) as session:
        ended = session.scalars(select(AddressBlock)).one()
    assert ended.ended_why == EndedWhy.EXPIRED and ended.ended_at is not None
    (expired,) = events(db, "monitor.address_block_expired")
    assert expired.actor_kind == "system" and expired.details["block_id"] == str(ended.id)
    assert ops.get(BLOCKS).json() == []


def test_x_forwarded_for_cannot_step_around_a_block(db, settings, operator_token):
    """The block reads the address the server decided: the peer, unless the peer is a trusted proxy."""
    app = create_app(db, settings.model_copy(update={"monitor_block_refresh_seconds": 0.0}))
    assert operator_client(app, operator_token).post(BLOCKS, json={"address": "203.0.113.66"}).status_code == 201
    # As `bookwarden serve` runs it: believe X-Forwarded-For only from BOOKWARDEN_TRUSTED_PROXIES (here 10.0.0.5).
    served = ProxyHeadersMiddleware(app, trusted_hosts=["10.0.0.5"])

    def through(peer: str, forwarded: str) -> int:
        client = TestClient(served, raise_server_exceptions=False, client=(peer, 40002))
        return client.get("/healthz", headers={"X-Forwarded-For": forwarded}).status_code

    assert through("203.0.113.66", "198.51.100.1") == 403  # the blocked peer claims to be someone else
    assert through("203.0.113.66", "10.0.0.5") == 403  # ... or the trusted proxy itself
    assert through("10.0.0.5", "203.0.113.66") == 403  # the proxy forwards the blocked client
    assert through("10.0.0.5", "198.51.100.1") == 200  # ... and anyone else
    assert through("198.51.100.9", "203.0.113.66") == 200  # an untrusted peer's header is not believed either way


def test_ipv6_blocks_and_v4_mapped_addresses(db, settings, operator_token):
    app = create_app(db, settings.model_copy(update={"monitor_block_refresh_seconds": 0.0}))
    ops = operator_client(app, operator_token)
    assert ops.post(BLOCKS, json={"address": "2001:db8:1:2::/64"}).json()["network"] == "2001:db8:1:2::/64"
    assert ops.post(BLOCKS, json={"address": "::ffff:203.0.113.90"}).json()["network"] == "203.0.113.90/32"
    assert visitor(app, "2001:db8:1:2::abcd").get("/healthz").status_code == 403
    assert visitor(app, "2001:db8:1:3::1").get("/healthz").status_code == 200
    assert visitor(app, "203.0.113.90").get("/healthz").status_code == 403
    assert visitor(app, "::ffff:203.0.113.90").get("/healthz").status_code == 403


# -- operator controls -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("203.0.113.300", "not an IP address"),
        ("example.org", "not an IP address"),
        ("203.0.113.5/24", "host bits set"),
        ("10.0.0.0/4", "wider than a block may be"),
        ("2001:db8::/16", "wider than a block may be"),
        ("203.0.113.5; rm -rf /", "not an IP address"),
    ],
)
def test_malformed_addresses_are_refused_with_a_clear_error_and_nothing_stored(db, app, operator_token, address, words):
    refused = operator_client(app, operator_token).post(BLOCKS, json={"address": address})
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
    assert words in refused.json()["detail"]
    assert active(db) == []


def test_an_allowlisted_address_is_never_blocked(db, settings, operator_token):
    settings = settings.model_copy(
        update={"monitor_allowlist": "192.0.2.0/28", "trusted_proxies": "10.0.0.5", "monitor_block_refresh_seconds": 0}
    )
    app = create_app(db, settings)
    ops = operator_client(app, operator_token)
    for address in ("127.0.0.1", "::1", "192.0.2.3", "192.0.2.0/24", "10.0.0.5"):
        refused = ops.post(BLOCKS, json={"address": address})
        assert refused.status_code == 422, address
        assert "never blocked" in refused.json()["detail"]
    # A jail never blocks one either, however often it is seen.
    responder = Responder(jails.configured_jails(settings), jails.allowlist(settings))
    taken = [
        a
        for alert in alerts_of(sshd_attack("192.0.2.4", 1), Format.SYSLOG, year=2026)
        for a in responder.respond(db, alert)
    ]
    assert [(a.jail, a.outcome) for a in taken] == [("sshd", Outcome.ALLOWLISTED)]
    # And a row that slipped in (the allowlist grew after the block) is not enforced against it.
    with platform_session(db) as session:
        blocks.place(
            session, parse_network("192.0.2.5"), timedelta(hours=1), rule="manual", jail=None, offence=1, by=OPS
        )
    assert visitor(app, "192.0.2.5").get("/healthz").status_code == 200
    assert str(active(db)[0].network) == "192.0.2.5/32"
    assert len(active(db)) == 1


def test_blocks_are_an_operator_control_no_institution_can_list_or_lift(db, app, tenant, client_for, operator_token):
    ops = operator_client(app, operator_token)
    made = ops.post(BLOCKS, json={"address": "203.0.113.44", "reason": "scanner"}).json()
    institution = client_for(tenant, permissions=TENANT_PERMISSIONS)  # every permission an institution can hold
    assert institution.delete(f"{BLOCKS}/{made['id']}").status_code == 403
    assert institution.get(BLOCKS).status_code == 403
    assert institution.post(BLOCKS, json={"address": "203.0.113.45"}).status_code == 403
    assert [b["id"] for b in ops.get(BLOCKS).json()] == [made["id"]]
    assert ops.delete(f"{BLOCKS}/{uuid.uuid4()}").status_code == 404

    lifted = ops.delete(f"{BLOCKS}/{made['id']}")
    assert lifted.status_code == 200 and lifted.json()["network"] == "203.0.113.44/32"
    assert ops.get(BLOCKS).json() == []
    assert ops.delete(f"{BLOCKS}/{made['id']}").status_code == 404  # ended already
    (unblocked,) = events(db, "monitor.address_unblocked")
    assert unblocked.actor_kind == "operator_token" and unblocked.details["block_id"] == made["id"]
    (blocked,) = events(db, "monitor.address_blocked")
    assert "203.0.113.44" not in json.dumps(blocked.details)  # the trail names the block, not the address


def test_unblock_by_address_ends_every_block_covering_it(db):
    with platform_session(db) as session:
        for network in ("2001:db8:5:6::/64", "203.0.113.0/24"):
            blocks.place(
                session, parse_network(network), timedelta(hours=1), rule="manual", jail=None, offence=1, by=OPS
            )
        assert [v.network for v in blocks.unblock_address(session, OPS, "2001:db8:5:6::99")] == ["2001:db8:5:6::/64"]
        with pytest.raises(InvalidInput, match="not an IP address"):
            blocks.unblock_address(session, OPS, "2001:db8:5:6::zz")
    assert [str(b.network) for b in active(db)] == ["203.0.113.0/24"]


# -- jails on real events ----------------------------------------------------------------------------


def test_sshd_brute_force_in_a_real_log_blocks_the_addresses_and_never_host_names(db):
    lines = (LOGS / "Linux_2k.log").read_text().splitlines()
    openings = [a for a in alerts_of(lines, Format.SYSLOG, year=2005) if a.rule == "sshd_brute_force"]
    taken = [action for alert in openings for action in respond(db, alert)]
    done = {a.target for a in taken if a.outcome is Outcome.DONE}
    addresses = {a.source_address for a in openings if client_address(a.source_address) is not None}
    assert done == {f"{address}/32" for address in addresses} and len(done) >= 10
    assert {a.why for a in taken if a.outcome is Outcome.NOT_APPLICABLE} == {
        "the source is a host name, not an address"
    }
    assert all(a.outcome is not Outcome.DONE or a.until is not None for a in taken)
    # Each address blocked once (an episode's final alert is not acted on again; a second episode finds it blocked).
    assert sorted(str(b.network) for b in active(db)) == sorted(done)
    assert len(events(db, "monitor.address_blocked")) == len(done)
    assert {b.jail for b in active(db)} == {"sshd"} and {b.rule for b in active(db)} == {"sshd_brute_force"}


def test_alerts_the_pipeline_stores_reach_the_jails_through_the_subscribers(db):
    """No call to respond here: storing the alerts and telling the subscribers, as `monitor run` does, is what
    blocks (monitor/response/hooks.py subscribed the jails)."""
    lines = (LOGS / "Linux_2k.log").read_text().splitlines()
    alerts = [a for a in alerts_of(lines, Format.SYSLOG, year=2005) if a.rule == "sshd_brute_force"]
    with platform_session(db) as session:
        recorded = [record_engine_alert(session, alert) for alert in alerts]
    assert active(db) == []
    subscribers.tell(db, recorded)
    expected = {f"{a.source_address}/32" for a in alerts if client_address(a.source_address) is not None}
    assert {str(b.network) for b in active(db)} == expected and len(expected) >= 10


def test_repeat_offenders_are_banned_longer_each_time_up_to_the_cap(db):
    responder = Responder([Jail("sshd", ("sshd_brute_force",), (Response.BLOCK,), timedelta(minutes=10),
                                max_bantime=timedelta(minutes=35))], Allowlist([]))  # fmt: skip
    bans = []
    for attack in range(4):
        (opening,) = [a for a in alerts_of(sshd_attack("203.0.113.99", 10), Format.SYSLOG, year=2026) if not a.final]
        (action,) = responder.respond(db, opening)
        assert action.outcome is Outcome.DONE and action.offence == attack + 1
        (row,) = active(db)
        bans.append(row.expires_at - row.created_at)
        # Blocked already: the same alert again blocks nothing more.
        assert responder.respond(db, opening)[0].outcome is Outcome.ALREADY
        age(db, "203.0.113.99/32", timedelta(hours=1))
        assert expire_blocks(db) == 1
    assert bans == [timedelta(minutes=m) for m in (10, 20, 35, 35)]
    # Outside the look-back, an address starts again from the first bantime.
    age(db, "203.0.113.99/32", timedelta(days=8))
    (opening,) = [a for a in alerts_of(sshd_attack("203.0.113.99", 10), Format.SYSLOG, year=2026) if not a.final]
    assert responder.respond(db, opening)[0].offence == 1


def test_an_ipv6_offender_is_blocked_by_its_64(db, settings):
    lines = sshd_attack("2001:db8:aa:bb::7", 5)
    (opening,) = [a for a in alerts_of(lines, Format.SYSLOG, year=2026) if not a.final]
    (action,) = respond(db, opening)
    assert action.target == "2001:db8:aa:bb::/64"
    app = create_app(db, settings)
    assert visitor(app, "2001:db8:aa:bb:1:2:3:4").get("/healthz").status_code == 403


def test_a_jail_on_detections_counts_maxretry_within_findtime(db):
    access = (
        '203.0.113.12 - - [02/Mar/2026:10:00:{s:02d} +0000] "GET /search?q=1%27%20or%201=1-- HTTP/1.1" 200 5 "-" "x"'
    )
    injections = [a for a in alerts_of([access.format(s=n) for n in range(3)], Format.APACHE_ACCESS)]
    assert [a.rule for a in injections] == ["web_sql_injection"] * 3
    outcomes = [respond(db, alert)[0].outcome for alert in injections]
    assert outcomes == [Outcome.COUNTED, Outcome.COUNTED, Outcome.DONE]
    assert [b.jail for b in active(db)] == ["web-attacks"]


def test_repeated_failed_sign_ins_lock_the_account_in_its_institution(db, app, browser, make_account, tenant):  # noqa: F811
    account = make_account(tenant, "ann")
    for _ in range(5):
        assert _login(browser(), "ann", WRONG).status_code == 401  # each from another address: no throttle
    # The platform's own audit events, as a collector emits them, through the engine (tuned: five failures).
    with tenant_session(db, tenant.id) as session:
        rows = session.execute(
            text(
                "SELECT e.occurred_at, e.action, e.outcome, e.target_id, c.source_address FROM audit_events e "
                "LEFT JOIN audit_event_contexts c USING (tenant_id, seq) WHERE e.action = 'auth.sign_in.failed'"
            )
        ).all()
    lines = [
        json.dumps({"time": r.occurred_at.isoformat(), "action": r.action, "outcome": r.outcome,
                    "tenant_id": str(tenant.id), "target_id": str(r.target_id), "source_address": r.source_address})
        for r in rows
    ]  # fmt: skip
    assert all(jsonl.parse(line).source_address for line in lines)
    tuned = {"platform_brute_force_account": {"gte": 5}}
    (opening,) = [a for a in alerts_of(lines, Format.JSONL, tuned) if not a.final]
    assert opening.rule == "platform_brute_force_account"
    (action,) = respond(db, opening)
    assert action.response is Response.LOCK_ACCOUNT and action.outcome is Outcome.DONE
    assert action.target == str(account.id) and action.until is not None

    assert _login(browser(), "ann").status_code == 401  # the right password, refused while locked
    with tenant_session(db, tenant.id) as session:
        locked = session.execute(
            text("SELECT actor_kind, details FROM audit_events WHERE action = 'auth.account.locked'")
        ).one()
    assert locked.actor_kind == "system" and locked.details["by"] == "monitor"
    assert locked.details["rule"] == "platform_brute_force_account"


def test_mfa_fatigue_revokes_the_accounts_sessions_and_locks_it(
    db,
    app,
    browser,
    make_account,  # noqa: F811 - fixture
    tenant,
    other_tenant,
):
    account = make_account(tenant, "bo")
    signed_in = browser()
    assert _login(signed_in, "bo").status_code == 200
    assert signed_in.get("/api/v1/auth/me").status_code == 200
    failures = [
        json.dumps({"time": f"2026-03-02T10:00:0{n}Z", "action": "auth.mfa.failed", "outcome": "denied",
                    "tenant_id": str(tenant.id), "target_id": str(account.id), "source_address": "198.51.100.3"})
        for n in range(5)
    ]  # fmt: skip
    (opening,) = [a for a in alerts_of(failures, Format.JSONL) if not a.final]
    taken = respond(db, opening)
    assert [(a.response, a.outcome) for a in taken] == [
        (Response.LOCK_ACCOUNT, Outcome.DONE),
        (Response.REVOKE_SESSIONS, Outcome.DONE),
    ]
    assert signed_in.get("/api/v1/auth/me").status_code == 401
    with tenant_session(db, tenant.id) as session:
        (revoked,) = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'monitor.sessions_revoked'")
        ).scalars()
    assert revoked["sessions_ended"] == 1
    # An alert naming the account under another institution reaches nothing.
    forged = Alert(**{**opening.__dict__, "group": {"tenant_id": str(other_tenant.id), "target_id": str(account.id)}})
    assert {a.outcome for a in respond(db, forged)} == {Outcome.NOT_APPLICABLE}


def test_jails_are_configured_by_name_and_bad_settings_are_refused():
    settings = Settings(
        monitor_jails={"sshd": {"bantime": "1h", "maxretry": 2}, "web-attacks": {"enabled": False},
                       "probes": {"rules": ["web_not_found_burst"], "actions": ["block"], "bantime": 600}}
    )  # fmt: skip
    configured = {jail.name: jail for jail in jails.configured_jails(settings)}
    assert configured["sshd"].bantime == timedelta(hours=1) and configured["sshd"].maxretry == 2
    assert "web-attacks" not in configured and configured["probes"].bantime == timedelta(minutes=10)
    for bad, words in (
        ({"sshd": {"bantime": "soon"}}, "not a span"),
        ({"sshd": {"actions": ["shoot"]}}, "actions are among"),
        ({"new": {"rules": ["x"]}}, "needs rules and actions"),
        ({"sshd": {"colour": "red"}}, "unknown key"),
    ):
        with pytest.raises(ValueError, match=words):
            jails.configured_jails(Settings(monitor_jails=bad))


# -- the hook ------------------------------------------------------------------------------------------


@pytest.fixture
def hook(tmp_path, monkeypatch):
    """A hook command that appends its arguments to a file, configured as an operator would."""
    record = tmp_path / "calls.jsonl"
    script = tmp_path / "hook.py"
    script.write_text(
        "import json, sys\n"
        f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "sys.exit(3 if sys.argv[2].startswith('198.51.100.77') else 0)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("BOOKWARDEN_MONITOR_BLOCK_HOOK", json.dumps([sys.executable, str(script)]))
    get_settings.cache_clear()
    yield record
    get_settings.cache_clear()


def run_hook_jobs(db) -> None:
    with platform_session(db) as session:
        queued = session.scalars(select(Job).where(Job.kind == blocks.HOOK_JOB).order_by(Job.id)).all()
        payloads = [job.payload for job in queued]
        for job in queued:
            session.delete(job)
    for payload in payloads:
        run_hook(db, get_settings(), payload)


def test_the_hook_gets_the_address_as_an_argument_and_its_failure_never_undoes_a_block(db, hook):
    with platform_session(db) as session:
        first = blocks.block(session, OPS, "2001:db8::1", timedelta(minutes=5), Allowlist([]))
        blocks.block(session, OPS, "198.51.100.77", timedelta(minutes=5), Allowlist([]))
        blocks.unblock(session, OPS, first.id)
    run_hook_jobs(db)
    calls = [json.loads(line) for line in hook.read_text().splitlines()]
    assert calls == [
        ["block", "2001:db8::1/128", "300"],
        ["block", "198.51.100.77/32", "300"],
        ["unblock", "2001:db8::1/128"],
    ]
    ran = events(db, "monitor.block_hook_ran")
    assert [r.outcome for r in ran] == ["succeeded", "failed", "succeeded"]
    assert ran[1].details["exit_code"] == 3 and ran[1].details["failure"] == "exited non-zero"
    assert [str(b.network) for b in active(db)] == ["198.51.100.77/32"]  # the failed hook left the block in place


def test_a_hook_that_hangs_is_stopped_and_recorded(db, tmp_path, monkeypatch):
    script = tmp_path / "slow.py"
    script.write_text("import time\ntime.sleep(30)\n")
    settings = Settings(monitor_block_hook=[sys.executable, str(script)], monitor_block_hook_timeout=1)
    started = time.monotonic()
    assert run_hook(db, settings, {"action": "block", "network": "203.0.113.1/32", "seconds": 60}) is False
    assert time.monotonic() - started < 10
    (ran,) = events(db, "monitor.block_hook_ran")
    assert ran.outcome == "failed" and "timed out" in ran.details["failure"]
    missing = Settings(monitor_block_hook=[str(tmp_path / "absent")])
    assert run_hook(db, missing, {"action": "unblock", "network": "203.0.113.1/32"}) is False
    assert "could not start" in events(db, "monitor.block_hook_ran")[-1].details["failure"]


def test_ended_blocks_are_forgotten_after_the_look_back(db):
    with platform_session(db) as session:
        blocks.place(
            session, parse_network("203.0.113.3"), timedelta(minutes=10), rule="manual", jail=None, offence=1, by=SYSTEM
        )
    age(db, "203.0.113.3/32", timedelta(hours=1))
    expire_blocks(db)
    assert forget_ended_blocks(db) == 0  # ended within the look-back: kept, to grow the next ban
    with platform_session(db) as session:
        session.execute(text("UPDATE address_blocks SET ended_at = now() - interval '8 days'"))
    assert forget_ended_blocks(db) == 1
    with platform_session(db) as session:
        assert session.scalar(select(AddressBlock)) is None
    assert events(db, "retention.period_enforced")[-1].details["table"] == "address_blocks"


def test_the_networks_blocked_are_real_networks():
    assert str(parse_network(" 203.0.113.5 ")) == "203.0.113.5/32"
    assert parse_network("2001:DB8::1").compressed == "2001:db8::1/128"
    assert isinstance(parse_network("203.0.113.0/24"), ipaddress.IPv4Network)
