"""Jails: which alerts lead to which response, as fail2ban's jails do, and `respond(db, alert)`.

A jail names Sigma rules and the responses their alerts bring: `block` the alert's source address, `lock_account`
(the account the alert is grouped by, in its institution), `revoke_sessions` (every session of that account).

**Counting (findtime, maxretry).** Where the rule is a correlation, it has already counted: its timespan and
threshold are the findtime and maxretry (tuned with BOOKWARDEN_MONITOR_TUNING, e.g. `sshd_brute_force.gte`), and
the jail acts on the episode's opening alert (`final: false`, the real-time one), once per episode; the final
alert of the same episode is not acted on again. A jail on detection rules (one alert per matching event: SQL
injection, scanner user agents) counts itself: `maxretry` alerts from one network within `findtime`, counted in
PostgreSQL (`response_strikes`) so every process that responds shares the count.

**Growing bans.** A block lasts `bantime * factor ** n`, where n is the number of earlier blocks of the same
network within `lookback`, at most `max_bantime` (default: 10 minutes, then 20, 40, ... up to 7 days, over 7
days). An address already blocked is not blocked again (the alert is counted as "already blocked").

**Never blocked:** an allowlisted address (127.0.0.1, ::1, the trusted proxies, BOOKWARDEN_MONITOR_ALLOWLIST), or
a host name (only addresses are enforced). An IPv6 offender is blocked by its /64, as the sign-in throttle counts it.

**Account responses** reuse identity's: the sign-in lock (identity/throttle.py `lock_account_until`: sign-in
refused before any password check, ending by itself) and "sign out everywhere" (identity/sessions.py). They need
the alert grouped by `tenant_id` and `target_id`, as the pack's per-account correlations are.

`respond` opens its own transactions (one per response: a block in the platform's, an account's in its
institution's), each with its audit event; the pipeline calls it once per alert.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sigma.correlations import SigmaCorrelationTimespan
from sqlalchemy import text

from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.config import Settings, get_settings
from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.identity import sessions, throttle
from bookwarden.identity.models import Account
from bookwarden.monitor.engine import Alert
from bookwarden.monitor.response import blocks
from bookwarden.monitor.response.addresses import Allowlist, Network, offender_network

log = structlog.get_logger()


class Response(enum.StrEnum):
    BLOCK = "block"
    LOCK_ACCOUNT = "lock_account"
    REVOKE_SESSIONS = "revoke_sessions"


class Outcome(enum.StrEnum):
    DONE = "done"
    COUNTED = "counted"  # a strike, below maxretry
    ALREADY = "already"  # the address is blocked already
    ALLOWLISTED = "allowlisted"
    NOT_APPLICABLE = "not_applicable"  # no address, a host name, no account named, an unknown account


@dataclass(frozen=True)
class ResponseAction:
    """What `respond` did (or why not) for one jail and one response."""

    jail: str
    rule: str
    response: Response
    outcome: Outcome
    target: str | None = None  # the network, or the account id
    until: datetime | None = None
    offence: int | None = None
    block_id: uuid.UUID | None = None
    why: str | None = None


@dataclass(frozen=True)
class Jail:
    name: str
    rules: tuple[str, ...]
    responses: tuple[Response, ...]
    bantime: timedelta = timedelta(minutes=10)
    maxretry: int = 1
    findtime: timedelta = timedelta(minutes=10)
    factor: float = 2.0
    max_bantime: timedelta = timedelta(days=7)
    lookback: timedelta = timedelta(days=7)
    ipv6_prefix: int = throttle.IPV6_PREFIX

    def bantime_for(self, earlier: int) -> timedelta:
        """The ban for an offender blocked `earlier` times within the look-back."""
        seconds = self.bantime.total_seconds() * self.factor ** min(earlier, 64)
        return min(timedelta(seconds=seconds), self.max_bantime)


_ADDRESS_RULES = (
    "platform_brute_force_address",
    "platform_credential_stuffing",
    "platform_id_probing",
    "platform_denial_burst_address",
    "platform_password_reset_burst",
    "web_not_found_burst",
)
DEFAULT_JAILS: Mapping[str, Jail] = {
    jail.name: jail
    for jail in (
        Jail("sshd", ("sshd_brute_force",), (Response.BLOCK,), bantime=timedelta(minutes=10)),
        Jail("platform-address", _ADDRESS_RULES, (Response.BLOCK,), bantime=timedelta(hours=1)),
        Jail(
            "web-attacks",
            ("web_sql_injection", "web_path_traversal", "web_scanner_user_agent"),
            (Response.BLOCK,),
            bantime=timedelta(minutes=30),
            maxretry=3,
            findtime=timedelta(minutes=10),
        ),
        Jail("account-brute-force", ("platform_brute_force_account",), (Response.LOCK_ACCOUNT,), timedelta(minutes=15)),
        # Wrong second factors after a right password: the password is known to someone; end what they may hold.
        Jail(
            "mfa-fatigue",
            ("platform_mfa_fatigue",),
            (Response.LOCK_ACCOUNT, Response.REVOKE_SESSIONS),
            bantime=timedelta(hours=1),
        ),
    )
}
_DURATIONS = ("bantime", "findtime", "max_bantime", "lookback")


def configured_jails(settings: Settings | None = None) -> list[Jail]:
    """The built-in jails, with BOOKWARDEN_MONITOR_JAILS replacing or adding by name (`enabled: false` drops one)."""
    settings = settings or get_settings()
    jails = dict(DEFAULT_JAILS)
    for name, given in settings.monitor_jails.items():
        given = dict(given)
        if given.pop("enabled", True) is False:
            jails.pop(name, None)
            continue
        jails[name] = _jail(name, given, jails.get(name))
    return list(jails.values())


def _jail(name: str, given: dict[str, Any], base: Jail | None) -> Jail:
    values: dict[str, Any] = {}
    for key, value in given.items():
        if key in _DURATIONS:
            values[key] = _duration(name, key, value)
        elif key == "rules":
            values[key] = tuple(str(rule) for rule in value)
        elif key in ("responses", "actions"):
            try:
                values["responses"] = tuple(Response(r) for r in value)
            except ValueError:
                raise ValueError(
                    f"BOOKWARDEN_MONITOR_JAILS: jail {name}: actions are among {', '.join(Response)}"
                ) from None
        elif key in ("maxretry", "ipv6_prefix"):
            values[key] = int(value)
        elif key == "factor":
            values[key] = float(value)
        else:
            raise ValueError(f"BOOKWARDEN_MONITOR_JAILS: jail {name}: unknown key {key!r}")
    if base is not None:
        return replace(base, **values)
    if not values.get("rules") or not values.get("responses"):
        raise ValueError(f"BOOKWARDEN_MONITOR_JAILS: new jail {name} needs rules and actions")
    return Jail(name=name, **values)


def _duration(jail: str, key: str, value: Any) -> timedelta:
    try:
        return timedelta(seconds=SigmaCorrelationTimespan(value if isinstance(value, str) else f"{value}s").seconds)
    except Exception:  # pySigma raises its own error types for a bad span
        raise ValueError(
            f"BOOKWARDEN_MONITOR_JAILS: jail {jail}: {key} {value!r} is not a span like 90s, 10m, 1h, 7d"
        ) from None


def allowlist(settings: Settings | None = None) -> Allowlist:
    settings = settings or get_settings()
    return Allowlist([*settings.monitor_allowlist_items, *settings.trusted_proxy_list])


@dataclass
class Responder:
    """The jails and allowlist of one process, read from the settings once."""

    jails: list[Jail] = field(default_factory=configured_jails)
    allowed: Allowlist = field(default_factory=allowlist)

    def respond(self, db: Database, alert: Alert) -> list[ResponseAction]:
        if alert.kind == "correlation" and alert.final:
            return []  # the episode's opening alert was acted on already
        taken: list[ResponseAction] = []
        for jail in self.jails:
            if alert.rule not in jail.rules:
                continue
            for response in jail.responses:
                if response is Response.BLOCK:
                    taken.append(self._block(db, jail, alert))
                else:
                    taken.append(_account(db, jail, alert, response))
        for action in taken:
            log.info(
                "monitor.response", jail=action.jail, rule=action.rule, response=action.response.value,
                outcome=action.outcome.value, why=action.why,
            )  # fmt: skip
        return taken

    def _block(self, db: Database, jail: Jail, alert: Alert) -> ResponseAction:
        def skipped(outcome: Outcome, why: str, target: str | None = None) -> ResponseAction:
            return ResponseAction(jail.name, alert.rule, Response.BLOCK, outcome, target, why=why)

        if alert.source_address is None:
            return skipped(Outcome.NOT_APPLICABLE, "the alert names no source address")
        network = offender_network(alert.source_address, jail.ipv6_prefix)
        if network is None:
            return skipped(Outcome.NOT_APPLICABLE, "the source is a host name, not an address")
        allowed = self.allowed.overlapping(network)
        if allowed is not None:
            return skipped(Outcome.ALLOWLISTED, f"within {allowed}, which is never blocked", str(network))
        with platform_session(db) as session:
            # One response at a time per network, whichever process runs it: no two blocks for one offence.
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext('monitor.block:' || :n))"), {"n": str(network)})
            if jail.maxretry > 1:
                strikes = _strike(session, jail, network)
                if strikes < jail.maxretry:
                    return skipped(
                        Outcome.COUNTED, f"{strikes} of {jail.maxretry} within {jail.findtime}", str(network)
                    )
            existing = blocks.active_covering(session, network)
            if existing is not None:
                return ResponseAction(
                    jail.name, alert.rule, Response.BLOCK, Outcome.ALREADY, str(network), existing.expires_at,
                    existing.offence, existing.id, "blocked already",
                )  # fmt: skip
            earlier = blocks.earlier_blocks(session, network, jail.lookback)
            row = blocks.place(
                session, network, jail.bantime_for(earlier), rule=alert.rule, jail=jail.name, offence=earlier + 1,
                by=SYSTEM,
            )  # fmt: skip
            return ResponseAction(
                jail.name, alert.rule, Response.BLOCK, Outcome.DONE, str(network), row.expires_at, row.offence, row.id
            )


_STRIKE = text(
    """
    INSERT INTO response_strikes AS s (jail, network, window_start, strikes) VALUES (:jail, :network, now(), 1)
    ON CONFLICT (jail, network) DO UPDATE SET
        strikes = CASE WHEN s.window_start <= now() - :findtime THEN 1 ELSE s.strikes + 1 END,
        window_start = CASE WHEN s.window_start <= now() - :findtime THEN now() ELSE s.window_start END
    RETURNING s.strikes
    """
)


def _strike(session, jail: Jail, network: Network) -> int:
    """Count one alert against the network; the count starts again once `findtime` passed since its first."""
    strikes = session.execute(
        _STRIKE, {"jail": jail.name, "network": str(network), "findtime": jail.findtime}
    ).scalar_one()
    if strikes >= jail.maxretry:
        session.execute(
            text("DELETE FROM response_strikes WHERE jail = :jail AND network = :network"),
            {"jail": jail.name, "network": str(network)},
        )
    return strikes


def _account(db: Database, jail: Jail, alert: Alert, response: Response) -> ResponseAction:
    def skipped(why: str) -> ResponseAction:
        return ResponseAction(jail.name, alert.rule, response, Outcome.NOT_APPLICABLE, why=why)

    try:
        tenant_id = uuid.UUID(str(alert.group["tenant_id"]))
        account_id = uuid.UUID(str(alert.group["target_id"]))
    except (KeyError, ValueError):
        return skipped("the alert names no account of an institution (group-by tenant_id and target_id)")
    with tenant_session(db, tenant_id) as session:
        account = session.get(Account, (tenant_id, account_id))
        if account is None:
            return skipped("no such account in that institution")
        details: dict[str, Any] = {"by": "monitor", "rule": alert.rule, "jail": jail.name}
        if response is Response.LOCK_ACCOUNT:
            until = throttle.lock_account_until(session, account_id, jail.bantime)
            details["locked_until"] = until.isoformat()
            record(session, Action.ACCOUNT_LOCKED, ("account", account_id), details=details, actor=SYSTEM)
            return ResponseAction(jail.name, alert.rule, response, Outcome.DONE, str(account_id), until)
        ended = sessions.revoke_all_for_account(session, account_id)
        details["sessions_ended"] = ended
        record(session, Action.SESSIONS_REVOKED_BY_MONITOR, ("account", account_id), details=details, actor=SYSTEM)
        return ResponseAction(jail.name, alert.rule, response, Outcome.DONE, str(account_id), why=f"{ended} ended")


def respond(db: Database, alert: Alert) -> list[ResponseAction]:
    """Act on one alert with the configured jails (settings read at each call: cheap, and tests change them)."""
    return Responder().respond(db, alert)
