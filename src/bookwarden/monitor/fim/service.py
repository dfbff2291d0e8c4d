"""File-integrity baselines (signed, approved by a second operator) and the scans that compare with them.

**The baseline** is a full scan of the configured paths stored in `fim_pages`: one record per file, folder or link
(path, kind, content hash, size, mode, owner, group, inode, mtime, ctime), in path order, PAGE records a row.
It is signed with the platform's Ed25519 key (audit/signing.py, the key that signs audit checkpoints and backup
manifests) over a statement behind its own prefix, `bookwarden-fim-baseline-v1\\n`, so no other signature of that
key can pass for one: the baseline's id, algorithm, roots, entry count and the SHA-256 of the stored records, pages
in order (`entries_digest`): what is signed is byte for byte what is stored. Every scan reads the pages back and
checks the signature first: a record changed, added or removed in the database since the signing (say, to hide a
trojaned file by giving its record the new hash) is itself a finding (`fim.baseline_tampered`), and that scan
trusts no stored metadata: it re-hashes everything.

**Maker-checker.** `propose` scans and stores a baseline as `proposed`; it is compared with nothing until another
operator holding `platform.fim.manage` approves it (`decide`). The database refuses a decision by the proposing
credential or person (checker_is_not_maker, checker_is_not_maker_person), as approval_requests do. The approval
binds exactly what was proposed: the signature is checked again when it is approved. A proposal is open for
KEEP_OPEN (the approvals' period); approving supersedes the active baseline, whose pages are dropped.

**Scans** (`scan`, and the hourly job) compare with the active baseline; the fast path (monitor/fim/scan.py)
re-hashes only files whose inode, size, mtime or ctime moved, and a full scan re-hashes all of them when asked
(`--full`), when the last full scan is older than `fim_full_scan_hours`, or when the baseline does not verify.
Each scan is a `host_scans` row and an audit event (`fim.scanned`, outcome failed when it found anything); its
findings become monitor events (scan.findings_as_events) for the host rules.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bookwarden.access.approvals.service import KEEP_OPEN
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.signing import key_id, load_signing_key, trusted_public_keys
from bookwarden.core.authorize import authorize
from bookwarden.core.canonical import canonical_json
from bookwarden.core.config import Settings
from bookwarden.core.errors import Conflict, NotFound, SegregationOfDutiesError
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database, platform_session
from bookwarden.monitor.fim import scan as scanning
from bookwarden.monitor.fim.models import BaselineStatus, FimBaseline, FimPage, HostCheck, HostScan
from bookwarden.monitor.fim.scan import Entry, Finding, ScanResult

PREFIX = b"bookwarden-fim-baseline-v1\n"
KEPT_FINDINGS = 1000  # findings kept in a scan's row (all are counted, and all become events)
TARGET = "fim_baseline"
PAGE = 2000  # records a row of fim_pages


class NoBaseline(Conflict):
    """No approved baseline yet: nothing to compare with."""


def _settings_roots(settings: Settings) -> list[str]:
    return [str(root) for root in settings.fim_roots]


def _exclude(settings: Settings) -> list[str]:
    return [item.strip() for item in settings.fim_exclude.split(",") if item.strip()]


def _records(entries: Iterable[Entry]) -> list[bytes]:
    """The entries' records in path order (code points, not a collation): what is stored and signed."""
    return [entry.record() for entry in sorted(entries, key=lambda e: e.path)]


def entries_digest(entries: Iterable[Entry]) -> bytes:
    return hashlib.sha256(b"".join(_records(entries))).digest()


@dataclass
class Stored:
    """A baseline's pages read back: its entries by path, their count and the SHA-256 of the pages in order."""

    entries: dict[str, Entry]
    count: int
    digest: bytes
    malformed: str | None = None


def statement(baseline: FimBaseline) -> bytes:
    signed_at = baseline.signed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return PREFIX + canonical_json(
        {
            "id": str(baseline.id),
            "algorithm": baseline.algorithm,
            "roots": list(baseline.roots),
            "entries": baseline.entries,
            "entries_digest": baseline.entries_digest.hex(),
            "signed_at": signed_at,
        }
    )


def tampering(baseline: FimBaseline, stored: Stored, settings: Settings) -> str | None:
    """None when the baseline's signature verifies over its stored pages under a trusted key; else what is wrong."""
    keys = {key_id(public): public for public in trusted_public_keys(settings)}
    public = keys.get(baseline.key_id)
    if public is None:
        return f"signed by key {baseline.key_id}, which is not trusted (trusted: {', '.join(keys)})"
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(baseline.signature, statement(baseline))
    except InvalidSignature:
        return "its signature does not verify over its own header (id, algorithm, roots, count or digest changed)"
    if stored.digest != baseline.entries_digest:
        return "its stored records differ from those signed (a record was changed, added or removed)"
    if stored.malformed or stored.count != baseline.entries:
        return stored.malformed or f"it holds {stored.count} records, {baseline.entries} were signed"
    return None


def load(session: Session, baseline_id: uuid.UUID) -> Stored:
    pages = session.execute(
        select(FimPage.records).where(FimPage.baseline_id == baseline_id).order_by(FimPage.page)
    ).scalars()
    digest = hashlib.sha256()
    entries: dict[str, Entry] = {}
    count, malformed = 0, None
    for records in pages:
        digest.update(records)
        try:
            found = Entry.records(records)
        except (ValueError, UnicodeDecodeError) as exc:
            malformed = f"a page of its records is malformed ({exc})"
            continue
        count += len(found)
        entries.update((entry.path, entry) for entry in found)
    return Stored(entries, count, digest.digest(), malformed)


def _store(session: Session, baseline_id: uuid.UUID, entries: Iterable[Entry]) -> bytes:
    """Write the entries' records in pages; the SHA-256 of them all (what the signature covers)."""
    records = _records(entries)
    digest = hashlib.sha256()
    for page, start in enumerate(range(0, len(records), PAGE)):
        data = b"".join(records[start : start + PAGE])
        digest.update(data)
        session.add(FimPage(baseline_id=baseline_id, page=page, records=data))
    session.flush()
    return digest.digest()


def active(session: Session) -> FimBaseline | None:
    return session.scalars(select(FimBaseline).where(FimBaseline.status == BaselineStatus.ACTIVE)).first()


Tick = Callable[[int], None]


def propose(
    db: Database,
    actor: Principal,
    settings: Settings,
    *,
    progress: Tick | None = None,
    total: Tick | None = None,
    threads: int | None = None,
) -> tuple[FimBaseline, ScanResult]:
    """Scan every configured path in full and store it, signed, as a proposed baseline (a second operator
    approves it with `decide`). Returns the proposal and the scan, compared with the active baseline when
    there is one (what approving it would accept)."""
    authorize(actor, Permission.PLATFORM_FIM_MANAGE)
    roots = _settings_roots(settings)
    with platform_session(db) as session:
        current = active(session)
        known = load(session, current.id).entries if current is not None else None
    result = scanning.scan(
        roots,
        settings.fim_algorithm,
        full=True,
        exclude=_exclude(settings),
        progress=progress,
        total=total,
        threads=threads,
    )
    if known is not None:
        result.findings, result.touched = scanning.compare(known, result.entries)
    signer = load_signing_key(settings)
    with platform_session(db) as session:
        baseline = FimBaseline(
            id=uuid.uuid4(),
            status=BaselineStatus.PROPOSED,
            algorithm=settings.fim_algorithm,
            roots=roots,
            entries=len(result.entries),
            entries_digest=b"",
            key_id=signer.key_id,
            signature=b"",
            signed_at=datetime.now(UTC),
            proposed_by=actor.id,
            proposed_by_person=actor.person,
        )
        session.add(baseline)
        session.flush()
        baseline.entries_digest = _store(session, baseline.id, result.entries.values())
        baseline.signature = signer.sign(statement(baseline))
        session.flush()
        audit.record(
            session,
            Action.FIM_BASELINE_PROPOSED,
            (TARGET, baseline.id),
            details={
                "entries": baseline.entries,
                "algorithm": baseline.algorithm,
                "roots": roots,
                "differences": len(result.findings),
                "entries_digest": baseline.entries_digest.hex(),
            },
            actor=actor,
        )
    return baseline, result


def decide(
    session: Session, actor: Principal, baseline_id: uuid.UUID, settings: Settings, approve: bool
) -> FimBaseline:
    """Approve (the proposal becomes what scans compare with) or reject a proposed baseline: another operator
    than the one who proposed it, through any of their credentials."""
    authorize(actor, Permission.PLATFORM_FIM_MANAGE)
    baseline = session.get(FimBaseline, baseline_id)
    if baseline is None:
        raise NotFound(f"no file-integrity baseline {baseline_id}")
    if baseline.status != BaselineStatus.PROPOSED:
        raise Conflict(f"baseline {baseline_id} is {baseline.status} already")
    if actor.same_party(baseline.proposed_by, baseline.proposed_by_person):
        raise SegregationOfDutiesError(
            "the operator who proposed a baseline cannot decide it, through any of their credentials: another "
            "holder of platform.fim.manage must"
        )
    if approve and baseline.signed_at + KEEP_OPEN <= datetime.now(UTC):
        raise Conflict(f"baseline {baseline_id} was proposed more than {KEEP_OPEN.days} days ago; propose again")
    if approve and (problem := tampering(baseline, load(session, baseline.id), settings)):
        raise Conflict(f"baseline {baseline_id} was altered since it was proposed ({problem}); propose again")
    now = datetime.now(UTC)
    if approve:
        previous = active(session)
        if previous is not None:
            previous.status = BaselineStatus.SUPERSEDED
            session.flush()
            session.execute(delete(FimPage).where(FimPage.baseline_id == previous.id))
        # Older proposals decided nothing and now never will: dropped with their entries' rows.
        stale = select(FimBaseline.id).where(
            FimBaseline.status == BaselineStatus.PROPOSED, FimBaseline.id != baseline.id
        )
        session.execute(delete(FimPage).where(FimPage.baseline_id.in_(stale)))
        session.execute(
            update(FimBaseline)
            .where(FimBaseline.status == BaselineStatus.PROPOSED, FimBaseline.id != baseline.id)
            .values(status=BaselineStatus.REJECTED, decided_at=now)
        )
    else:
        session.execute(delete(FimPage).where(FimPage.baseline_id == baseline.id))
    baseline.status = BaselineStatus.ACTIVE if approve else BaselineStatus.REJECTED
    baseline.decided_by, baseline.decided_by_person, baseline.decided_at = actor.id, actor.person, now
    session.flush()
    audit.record(
        session,
        Action.FIM_BASELINE_APPROVED if approve else Action.FIM_BASELINE_REJECTED,
        (TARGET, baseline.id),
        details={"entries": baseline.entries, "proposed_by": baseline.proposed_by},
        actor=actor,
    )
    return baseline


@dataclass
class ScanOutcome:
    scan_id: uuid.UUID
    baseline_id: uuid.UUID
    full: bool
    result: ScanResult
    tampered: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.action] = counts.get(finding.action, 0) + 1
        return {
            "scan": str(self.scan_id),
            "baseline": str(self.baseline_id),
            "full": self.full,
            "files": self.result.files,
            "hashed": self.result.hashed,
            "touched": self.result.touched,
            "findings": len(self.findings),
            "by_action": counts,
            "baseline_tampered": self.tampered,
            "errors": self.result.errors[:20],
        }


def scan(
    db: Database,
    actor: Principal,
    settings: Settings,
    *,
    full: bool = False,
    progress: Tick | None = None,
    total: Tick | None = None,
    threads: int | None = None,
) -> ScanOutcome:
    """An operator's scan now (`bookwarden fim scan`)."""
    authorize(actor, Permission.PLATFORM_FIM_READ)
    return run_scan(db, settings, actor=actor, full=full, progress=progress, total=total, threads=threads)


def run_scan(
    db: Database,
    settings: Settings,
    *,
    actor: Principal | None = None,
    full: bool = False,
    progress: Tick | None = None,
    total: Tick | None = None,
    threads: int | None = None,
) -> ScanOutcome:
    """Compare the files with the active baseline (the job's entry: the caller authorized, or it is the
    platform's scheduled duty). NoBaseline when none is approved yet."""
    started = datetime.now(UTC)
    with platform_session(db) as session:
        baseline = active(session)
        if baseline is None:
            raise NoBaseline(
                "no approved file-integrity baseline: propose one with `bookwarden fim baseline`, and have "
                "another operator approve it with `bookwarden fim approve ID`"
            )
        stored = load(session, baseline.id)
        last_full = session.scalars(
            select(HostScan.started_at)
            .where(HostScan.check_kind == HostCheck.FIM, HostScan.full.is_(True), HostScan.baseline_id == baseline.id)
            .order_by(HostScan.started_at.desc())
            .limit(1)
        ).first()
    tampered = tampering(baseline, stored, settings)
    known = stored.entries
    due = (last_full or baseline.signed_at) + timedelta(hours=settings.fim_full_scan_hours) <= started
    # A baseline that does not verify vouches for no stored metadata: nothing goes through the fast path.
    full = full or due or tampered is not None
    result = scanning.scan(
        baseline.roots,
        baseline.algorithm,
        known,
        full=full,
        exclude=_exclude(settings),
        progress=progress,
        total=total,
        threads=threads,
    )
    findings = list(result.findings)
    if tampered is not None:
        findings.insert(0, Finding(scanning.TAMPERED, f"baseline {baseline.id}", ("signature",), {}, {}))
    outcome = ScanOutcome(uuid.uuid4(), baseline.id, full, result, tampered, findings)
    with platform_session(db) as session:
        session.add(
            HostScan(
                id=outcome.scan_id,
                check_kind=HostCheck.FIM,
                baseline_id=baseline.id,
                full=full,
                started_at=started,
                finished_at=datetime.now(UTC),
                files=result.files,
                hashed=result.hashed,
                findings=len(findings),
                details=[
                    {**f.as_json(), **({"problem": tampered} if f.action == scanning.TAMPERED else {})}
                    for f in findings[:KEPT_FINDINGS]
                ],
                run_by=actor.id if actor is not None else None,
            )
        )
        counts = outcome.summary()["by_action"]
        audit.record(
            session,
            Action.FIM_SCANNED,
            ("host_scan", outcome.scan_id),
            outcome=Outcome.FAILED if findings else Outcome.SUCCEEDED,
            details={
                "baseline": baseline.id,
                "full": full,
                "files": result.files,
                "hashed": result.hashed,
                "findings": len(findings),
                "added": counts.get(scanning.ADDED, 0),
                "removed": counts.get(scanning.REMOVED, 0),
                "changed": counts.get(scanning.CHANGED, 0),
                "baseline_tampered": tampered is not None,
            },
            actor=actor,
        )
    return outcome


def baselines(session: Session, actor: Principal, limit: int = 20) -> tuple[list[FimBaseline], list[HostScan]]:
    """The newest baselines (proposed, active, decided) and the newest host-check runs."""
    authorize(actor, Permission.PLATFORM_FIM_READ)
    found = list(session.scalars(select(FimBaseline).order_by(FimBaseline.signed_at.desc()).limit(limit)))
    runs = list(session.scalars(select(HostScan).order_by(HostScan.started_at.desc()).limit(limit)))
    audit.record(session, Action.FIM_STATUS_VIEWED, details={"baselines": len(found), "runs": len(runs)}, actor=actor)
    return found, runs


def signature_text(baseline: FimBaseline) -> str:
    return base64.b64encode(baseline.signature).decode()
