"""A rootcheck run: every check on this machine, its findings kept (`host_scans`), audited, and made events.

Where each check looks: processes over the whole pid range (/proc/sys/kernel/pid_max); TCP and UDP ports 1-65535;
the shipped rootkit signatures under /; SUID/SGID files under the FIM paths and `rootcheck_suid_roots`, against the
SUID/SGID files of the approved FIM baseline and `rootcheck_suid_allowed`; world-writable entries under the FIM
paths (the protected ones); every interface in /sys/class/net.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action, Outcome
from bookwarden.core.authorize import authorize
from bookwarden.core.config import Settings
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database, platform_session
from bookwarden.monitor.events import Event, LogSource
from bookwarden.monitor.fim.models import HostCheck, HostScan
from bookwarden.monitor.fim.service import active, load
from bookwarden.monitor.rootcheck import checks
from bookwarden.monitor.rootcheck.checks import Finding

SOURCE = LogSource(product="bookwarden", services=frozenset({"rootcheck"}))
CHECKS = ("processes", "ports", "rootkit_files", "suid", "world_writable", "interfaces")


@dataclass
class Rootcheck:
    run_id: uuid.UUID
    findings: list[Finding]
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.action] = counts.get(finding.action, 0) + 1
        return {"run": str(self.run_id), "findings": len(self.findings), "by_action": counts, "seconds": self.seconds}


def _suid_baseline(session: Session) -> list[str]:
    """SUID/SGID files of the approved FIM baseline: those it has already accepted."""
    baseline = active(session)
    if baseline is None:
        return []
    bits = stat.S_ISUID | stat.S_ISGID
    return [entry.path for entry in load(session, baseline.id).entries.values() if entry.mode & bits]


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def check_machine(
    settings: Settings, allowed_suid: list[str], *, only: tuple[str, ...] = CHECKS
) -> tuple[list[Finding], dict[str, float]]:
    """Run the checks on this machine (no database): findings and the seconds each took."""
    protected = list(settings.fim_roots)
    runs: dict[str, Callable[[], list[Finding]]] = {
        "processes": lambda: checks.hidden_processes(),
        "ports": lambda: checks.hidden_ports(),
        "rootkit_files": lambda: checks.rootkit_files(),
        "suid": lambda: checks.suid_files(
            protected + [Path(p) for p in _items(settings.rootcheck_suid_roots)],
            allowed_suid + _items(settings.rootcheck_suid_allowed),
        ),
        "world_writable": lambda: checks.world_writable(protected),
        "interfaces": lambda: checks.promiscuous_interfaces(),
    }
    findings: list[Finding] = []
    seconds: dict[str, float] = {}
    for name in only:
        started = datetime.now(UTC)
        findings += runs[name]()
        seconds[name] = round((datetime.now(UTC) - started).total_seconds(), 3)
    return findings, seconds


def rootcheck(db: Database, actor: Principal, settings: Settings, only: tuple[str, ...] = CHECKS) -> Rootcheck:
    """An operator's run now (`bookwarden monitor rootcheck`)."""
    authorize(actor, Permission.PLATFORM_FIM_READ)
    return run_rootcheck(db, settings, actor=actor, only=only)


def run_rootcheck(
    db: Database, settings: Settings, *, actor: Principal | None = None, only: tuple[str, ...] = CHECKS
) -> Rootcheck:
    started = datetime.now(UTC)
    with platform_session(db) as session:
        allowed = _suid_baseline(session)
    findings, seconds = check_machine(settings, allowed, only=only)
    result = Rootcheck(uuid.uuid4(), findings, seconds)
    with platform_session(db) as session:
        session.add(
            HostScan(
                id=result.run_id,
                check_kind=HostCheck.ROOTCHECK,
                full=True,
                started_at=started,
                finished_at=datetime.now(UTC),
                files=0,
                hashed=0,
                findings=len(findings),
                details=[finding.as_json() for finding in findings[:1000]],
                run_by=actor.id if actor is not None else None,
            )
        )
        audit.record(
            session,
            Action.ROOTCHECK_RAN,
            ("host_scan", result.run_id),
            outcome=Outcome.FAILED if findings else Outcome.SUCCEEDED,
            details={
                "findings": len(findings),
                **{k.rsplit(".", 1)[1]: v for k, v in result.summary()["by_action"].items()},
            },
            actor=actor,
        )
    return result


def findings_as_events(
    findings: list[Finding], *, time: datetime | None = None, host: str | None = None
) -> list[Event]:
    """Each finding as a monitor event (`service: rootcheck`, `action: rootcheck.<kind>`) for the host rules."""
    moment = time or datetime.now(UTC)
    machine = host or os.uname().nodename
    return [
        Event(
            time=moment,
            source=SOURCE,
            message=finding.detail,
            raw=finding.detail,
            host=machine,
            fields={**finding.fields, "action": finding.action, "subject": finding.subject},
        )
        for finding in findings
    ]
