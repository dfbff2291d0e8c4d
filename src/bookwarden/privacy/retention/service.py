"""Retention: how long each category of an institution's data is kept, and the daily purge.

Periods. Each category (retention_models.RetentionCategory) has a default from the personal-data
registry's declared retention (privacy/registry.py POLICIES); an institution may set its own within
BOUNDS. Changing a period decides when personal data is destroyed, so it is handled like a password
policy: asked by one holder of privacy.retention.manage, carried out when another approves
(access/approvals/service.py), recorded, and mailed to the security contacts (a kind they cannot mute).
Audit segments never go earlier than the platform's BOOKWARDEN_AUDIT_RETENTION_DAYS.

Selection. `expired()` is the one function that decides what is past its period and not held
(privacy/retention/holds.py); the preview counts what it selects and the purge deletes it, batch by batch.

The purge. A run per institution (`run_purge`), daily (PURGE_JOB). The run fixes `as_of` when it
starts: every cutoff is `as_of - keep_days`. Each batch is its own transaction that deletes its rows,
adds their count to the run's report row of that category and records retention.purged, so the
report is exactly what was committed. A run that dies midway stays `running`; the next run of that
institution resumes it (same as_of, categories already done skipped), so nothing is removed twice
and nothing due is left. Inactive patrons go through the erasure path (`_remove_patron`).
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import structlog
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, Select, Table, and_, delete, exists, false, func, not_, or_, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction, require_approval
from bookwarden.access.roles.notices import EntitlementEvent, entitlement_changed
from bookwarden.audit import retention as audit_retention
from bookwarden.audit.checkpoints import chain_ids
from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.audit.record import record
from bookwarden.core.authorize import authorize
from bookwarden.core.classification import Category
from bookwarden.core.config import get_settings
from bookwarden.core.errors import BookwardenError, Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity.models import Account, SignInSession
from bookwarden.library import records as library
from bookwarden.library.models import Loan, Patron, Post, Search
from bookwarden.privacy.registry import POLICIES
from bookwarden.privacy.retention import holds
from bookwarden.privacy.retention.models import (
    RetentionCategory,
    RetentionPolicy,
    RetentionRun,
    RetentionRunCount,
    RunStatus,
)
from bookwarden.privacy.subjects import export as subject_export
from bookwarden.privacy.subjects.models import ErasurePolicy, SubjectExportPackage
from bookwarden.tenancy.models import Tenant

log = structlog.get_logger()
C = RetentionCategory

PURGE_JOB = "privacy.retention_purge"
BATCH = 500
PATRON_BATCH = 50  # each patron is erased on its own (key, files, certificate): smaller batches
RUNS_LISTED = 50
RUN_TARGET = "retention_run"
POLICY_TARGET = "retention_policy"

# Categories whose default is the registry's declared retention of a category of personal data.
REGISTRY_CATEGORY: dict[RetentionCategory, Category] = {
    C.LOAN_HISTORY: Category.CIRCULATION_HISTORY,
    C.SEARCHES: Category.SEARCH_HISTORY,
    C.POSTS: Category.USER_CONTENT,
    C.INACTIVE_PATRONS: Category.IDENTITY,
}
# The registry has no category of its own for these two: an access package's link lasts 7 days and the
# approval of a bulk export 24 hours, so 30 days leaves room to look into a download; audit segments
# default to the platform's period.
EXPORTS_DEFAULT_DAYS = 30


@dataclass(frozen=True)
class Bounds:
    least: int
    most: int
    forever: bool  # may be kept until deleted (no period)
    why: str


# Sane bounds for what an institution may set (days).
BOUNDS: dict[RetentionCategory, Bounds] = {
    C.LOAN_HISTORY: Bounds(30, 3650, False, "loans must be kept long enough to settle disputes, and not for ever"),
    C.SEARCHES: Bounds(1, 3650, False, "search history serves only the patron's recent searches"),
    C.POSTS: Bounds(30, 3650, True, "posts may also be kept until their author or a moderator deletes them"),
    C.INACTIVE_PATRONS: Bounds(180, 3650, False, "an account is inactive only after months without any activity"),
    C.EXPORTS: Bounds(7, 365, False, "an access package's download link lasts 7 days"),
    C.AUDIT_SEGMENTS: Bounds(1, 36500, False, "never shorter than the platform's audit retention"),
}


class RetentionBelowPlatformMinimum(BookwardenError):
    # 409: a valid request that a standing rule of the platform forbids (like notice-not-mutable).
    slug, status, title = "retention-below-platform-minimum", 409, "Below the platform's minimum"


def platform_audit_days() -> int:
    return get_settings().audit_retention_days


def default_days(category: RetentionCategory) -> int | None:
    if category in REGISTRY_CATEGORY:
        return POLICIES[REGISTRY_CATEGORY[category]].keep_days
    if category is C.EXPORTS:
        return EXPORTS_DEFAULT_DAYS
    return platform_audit_days()


class PeriodOut(BaseModel):
    """One category's period as the institution sees it: what applies, and where it comes from."""

    model_config = ConfigDict(frozen=True)

    category: RetentionCategory
    keep_days: int | None  # what applies; None: kept until deleted
    source: str  # "institution" or "default"
    default_days: int | None
    least_days: int
    most_days: int
    forever_allowed: bool
    changed_at: datetime | None


def _period(category: RetentionCategory, row: RetentionPolicy | None) -> PeriodOut:
    bounds = BOUNDS[category]
    keep = row.keep_days if row is not None else default_days(category)
    least = bounds.least
    if category is C.AUDIT_SEGMENTS:
        # The platform's minimum wins even over an older setting made when the minimum was lower.
        least = max(least, platform_audit_days())
        keep = max(keep or 0, least)
    return PeriodOut(
        category=category,
        keep_days=keep,
        source="institution" if row is not None else "default",
        default_days=default_days(category),
        least_days=least,
        most_days=max(bounds.most, least),
        forever_allowed=bounds.forever,
        changed_at=row.changed_at if row is not None else None,
    )


def periods(session: TenantSession) -> dict[RetentionCategory, PeriodOut]:
    rows = {row.category: row for row in session.scalars(select(RetentionPolicy))}
    return {category: _period(category, rows.get(category.value)) for category in RetentionCategory}


def view_periods(session: TenantSession, actor: Principal) -> list[PeriodOut]:
    authorize(actor, Permission.PRIVACY_RETENTION_MANAGE)
    found = list(periods(session).values())
    record(session, Action.RETENTION_POLICY_VIEWED, (POLICY_TARGET, None), actor=actor)
    return found


# What a period means for the registry's categories, as the records of processing say it.
PERIOD_TEXT: dict[RetentionCategory, str] = {
    C.LOAN_HISTORY: "{} after the item is returned",
    C.SEARCHES: "{} after the search",
    C.POSTS: "{} after posting",
    C.INACTIVE_PATRONS: "while the patron is active; erased after {} without any activity",
}
# The registry's categories a period governs: a patron's own record goes with an inactive patron.
GOVERNS: dict[Category, RetentionCategory] = {
    **{registry_category: category for category, registry_category in REGISTRY_CATEGORY.items()},
    Category.CONTACT: C.INACTIVE_PATRONS,
    Category.INSTITUTIONAL_ID: C.INACTIVE_PATRONS,
    Category.AFFILIATION: C.INACTIVE_PATRONS,
}


def institution_periods(session: TenantSession) -> dict[Category, tuple[int | None, str]]:
    """The registry's categories whose retention the institution set itself: (days, what it says)."""
    own = {c: p for c, p in periods(session).items() if p.source == "institution"}
    found = {}
    for registry_category, category in GOVERNS.items():
        if category in own:
            days = own[category].keep_days
            said = (
                "until deleted by the author or a moderator"
                if days is None
                else PERIOD_TEXT[category].format(_days_text(days))
            )
            found[registry_category] = (days, f"{said} (the institution's own period)")
    return found


# -- changing a period (maker-checker) -----------------------------------------------------------


def checked_params(params: dict) -> dict:
    """The request's parameters, refused now if they could never be carried out (nobody approves a dud)."""
    try:
        category = RetentionCategory(params.get("category"))
    except ValueError:
        raise InvalidInput(f"category: one of {', '.join(RetentionCategory)}") from None
    keep_days = params.get("keep_days")
    bounds = BOUNDS[category]
    if keep_days is None:
        if not bounds.forever:
            raise InvalidInput(f"keep_days: {category} must have a period ({bounds.least} to {bounds.most} days)")
    elif isinstance(keep_days, bool) or not isinstance(keep_days, int):
        raise InvalidInput("keep_days: a whole number of days")
    elif not bounds.least <= keep_days <= bounds.most:
        raise InvalidInput(f"keep_days: {category} is kept {bounds.least} to {bounds.most} days ({bounds.why})")
    elif category is C.AUDIT_SEGMENTS and keep_days < platform_audit_days():
        raise RetentionBelowPlatformMinimum(
            f"keep_days: audit segments are kept at least {platform_audit_days()} days on this platform "
            "(BOOKWARDEN_AUDIT_RETENTION_DAYS); an institution may keep its trail longer, never shorter"
        )
    return {"category": category.value, "keep_days": keep_days}


def ask_change(
    session: TenantSession, actor: Principal, category: RetentionCategory, keep_days: int | None
) -> ApprovalRequest:
    params = {"category": RetentionCategory(category).value, "keep_days": keep_days}
    return approvals.ask(session, actor, SensitiveAction.CHANGE_RETENTION_POLICY, params)


def set_period(
    session: TenantSession,
    actor: Principal,
    category: RetentionCategory,
    keep_days: int | None,
    *,
    approval: ApprovalRequest | None = None,
) -> PeriodOut:
    """Carry out an approved change (access/approvals/service.py calls this when the second person approves)."""
    authorize(actor, Permission.PRIVACY_RETENTION_MANAGE)
    category = RetentionCategory(category)
    params = checked_params({"category": category.value, "keep_days": keep_days})
    require_approval(approval, SensitiveAction.CHANGE_RETENTION_POLICY, params, f"changing the {category} period")
    before = periods(session)[category]
    row = session.get(RetentionPolicy, (session.tenant_id, category.value), with_for_update=True)
    if row is None:
        row = RetentionPolicy(tenant_id=session.tenant_id, category=category.value)
        session.add(row)
    row.keep_days, row.approval_id, row.changed_by = keep_days, approval.id if approval else None, actor.id
    row.changed_at = session.scalar(select(func.now()))
    session.flush()
    after = _period(category, row)
    details = {"category": category.value, "keep_days": keep_days, "before": before.keep_days,
               "approval_id": approval.id if approval else None}  # fmt: skip
    record(session, Action.RETENTION_POLICY_CHANGED, (POLICY_TARGET, None), actor=actor, details=details)
    entitlement_changed(
        session,
        actor,
        EntitlementEvent.RETENTION_POLICY_CHANGED,
        f"retention of {category}",
        {"before": _days_text(before.keep_days), "now": _days_text(after.keep_days)},
    )
    return after


def _days_text(days: int | None) -> str:
    return "until deleted" if days is None else f"{days} days"


# -- selection: the one function that decides what goes ------------------------------------------


@dataclass(frozen=True)
class Source:
    """Rows of one table that a category's period applies to."""

    table: Table
    moment: ColumnElement[datetime]  # when the row's period started
    patron: ColumnElement[UUID] | None  # whose data it is (legal holds name patrons)
    where: tuple[ColumnElement[bool], ...] = ()
    # How a batch goes, when more than its rows must (a package's key); default: the rows are deleted.
    remove: Callable[[TenantSession, list[UUID]], int] | None = None


def _last_activity() -> ColumnElement[datetime]:
    """The latest sign of a patron we can see: registration, a loan or return, a search, a post, a sign-in.
    greatest() ignores nulls, so a patron with no activity at all counts from their registration. A sign-in
    is read from the account (last_signed_in_at) as well as from live sessions: sessions go a day after
    they end, and a patron who signed in last month is not inactive."""
    p, loans, searches, posts = Patron.__table__, Loan.__table__, Search.__table__, Post.__table__
    accounts, sessions = Account.__table__, SignInSession.__table__

    def latest(column, table, *where):
        return select(func.max(column)).where(table.c.tenant_id == p.c.tenant_id, *where).scalar_subquery()

    return func.greatest(
        p.c.created_at,
        latest(func.greatest(loans.c.borrowed_at, loans.c.returned_at), loans, loans.c.patron_id == p.c.id),
        latest(searches.c.searched_at, searches, searches.c.patron_id == p.c.id),
        latest(posts.c.created_at, posts, posts.c.patron_id == p.c.id),
        select(func.max(sessions.c.last_seen_at))
        .join(accounts, and_(accounts.c.tenant_id == sessions.c.tenant_id, accounts.c.id == sessions.c.account_id))
        .where(sessions.c.tenant_id == p.c.tenant_id, accounts.c.patron_id == p.c.id)
        .scalar_subquery(),
        latest(accounts.c.last_signed_in_at, accounts, accounts.c.patron_id == p.c.id),
    )


def _not_placeholder(patrons: Table) -> ColumnElement[bool]:
    """The erasure's "former member" placeholder (kept posts are moved to it) is nobody: never inactive."""
    placeholder = select(ErasurePolicy.anonymous_author_id).where(ErasurePolicy.anonymous_author_id.is_not(None))
    return patrons.c.id.not_in(placeholder)


def sources(category: RetentionCategory) -> list[Source]:
    """The tables a category's period applies to (audit segments are not rows: see `_audit_segment`)."""
    if category is C.LOAN_HISTORY:
        loans = Loan.__table__
        return [Source(loans, loans.c.returned_at, loans.c.patron_id, (loans.c.returned_at.is_not(None),))]
    if category is C.SEARCHES:
        searches = Search.__table__
        return [Source(searches, searches.c.searched_at, searches.c.patron_id)]
    if category is C.POSTS:
        posts = Post.__table__
        return [Source(posts, posts.c.created_at, posts.c.patron_id)]
    if category is C.INACTIVE_PATRONS:
        patrons, loans = Patron.__table__, Loan.__table__
        open_loan = exists().where(
            loans.c.tenant_id == patrons.c.tenant_id, loans.c.patron_id == patrons.c.id, loans.c.returned_at.is_(None)
        )
        return [Source(patrons, _last_activity(), patrons.c.id, (not_(open_loan), _not_placeholder(patrons)))]
    if category is C.EXPORTS:
        approvals = ApprovalRequest.__table__
        found = [
            Source(
                approvals,
                approvals.c.requested_at,
                None,
                # Decided, or lapsed undecided: either way nobody can use it any more.
                (
                    approvals.c.action == SensitiveAction.EXPORT_PATRONS.value,
                    or_(approvals.c.status != "pending", approvals.c.expires_at <= func.now()),
                ),
            )
        ]
        # Subject access packages: their chunks go with them and their keys are destroyed. The link lasts
        # 7 days and privacy/subjects/export.py purges expired ones hourly; this is the period's backstop.
        packages = SubjectExportPackage.__table__
        found.append(
            Source(packages, packages.c.created_at, packages.c.patron_id, remove=subject_export.remove_packages)
        )
        return found
    return []


def expired(
    source: Source,
    category: RetentionCategory,
    cutoff: datetime,
    *,
    held: bool = False,
) -> Select:
    """Ids (and their moment) of `source` rows past `cutoff`: those no hold covers, or with `held`,
    those a hold on their patron keeps. A hold on the whole category is the caller's (`category_held`)."""
    by_hold = source.patron.in_(holds.held_patrons(category)) if source.patron is not None else false()
    query = select(source.table.c.id, source.moment.label("moment")).where(
        source.moment < cutoff, *source.where, by_hold if held else not_(by_hold)
    )
    return query


# -- preview -------------------------------------------------------------------------------------


class CategoryPreview(BaseModel):
    model_config = ConfigDict(frozen=True)

    category: RetentionCategory
    keep_days: int | None
    cutoff: datetime | None
    due: int  # what the next run would remove
    held: int  # past the period, kept by a legal hold
    oldest: datetime | None  # the oldest moment among what is due


def preview(session: TenantSession, actor: Principal, *, as_of: datetime | None = None) -> list[CategoryPreview]:
    """What a run starting now would remove, per category (the same selection as the purge)."""
    authorize(actor, Permission.PRIVACY_RETENTION_MANAGE)
    as_of = as_of or session.scalar(select(func.now()))
    found = []
    for category, period in periods(session).items():
        cutoff = _cutoff(as_of, period.keep_days)
        if cutoff is None:
            found.append(CategoryPreview(category=category, keep_days=None, cutoff=None, due=0, held=0, oldest=None))
            continue
        if category is C.AUDIT_SEGMENTS:
            segment = _audit_segment(session, period.keep_days, as_of)
            due, held, oldest = segment.due, segment.held, segment.oldest
        else:
            due, held, oldest = _count(session, category, cutoff)
        found.append(
            CategoryPreview(
                category=category, keep_days=period.keep_days, cutoff=cutoff, due=due, held=held, oldest=oldest
            )
        )
    details = {f"{p.category}_due": p.due for p in found} | {f"{p.category}_held": p.held for p in found}
    record(session, Action.RETENTION_PREVIEWED, (RUN_TARGET, None), actor=actor, details=details)
    return found


def _cutoff(as_of: datetime, keep_days: int | None) -> datetime | None:
    return None if keep_days is None else as_of - timedelta(days=keep_days)


def _count(session: TenantSession, category: RetentionCategory, cutoff: datetime) -> tuple[int, int, datetime | None]:
    """(due, held, oldest due) over the category's sources."""
    due, held, oldest = 0, 0, None
    everything_held = holds.category_held(session, category)
    for source in sources(category):
        for is_held in (False, True):
            chosen = expired(source, category, cutoff, held=is_held).subquery()
            count, first = session.execute(select(func.count(), func.min(chosen.c.moment)).select_from(chosen)).one()
            if is_held or everything_held:
                held += count
            else:
                due += count
                oldest = first if oldest is None or (first is not None and first < oldest) else oldest
    return due, held, None if everything_held else oldest


# -- audit segments ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    keep_from: int | None  # the first seq a legal hold keeps
    upto: int | None  # the end of the sealed segment that may go
    due: int
    held: int
    oldest: datetime | None


def _audit_segment(session: TenantSession, keep_days: int, as_of: datetime) -> Segment:
    """What of the tenant's chain may go: the sealed segment past `keep_days`, stopped before the first
    event about a held patron (or nothing at all when the category is held)."""
    retention = timedelta(days=keep_days)
    free = audit_retention.expired_segment(session, retention, now=as_of)
    if free is None:
        return Segment(None, None, 0, 0, None)
    after, free_upto = free
    if holds.category_held(session, C.AUDIT_SEGMENTS):
        return Segment(after + 1, None, 0, _events(session, after, free_upto)[0], None)
    keep_from = _first_held_event(session, after, free_upto)
    bounded = audit_retention.expired_segment(session, retention, now=as_of, keep_from=keep_from)
    upto = bounded[1] if bounded is not None else None
    due, oldest = _events(session, after, upto) if upto is not None else (0, None)
    return Segment(keep_from, upto, due, _events(session, after, free_upto)[0] - due, oldest)


def _first_held_event(session: TenantSession, after: int, upto: int) -> int | None:
    held = [str(p) for p in session.scalars(holds.held_patrons(C.AUDIT_SEGMENTS))]
    if not held:
        return None
    return session.execute(
        text(
            "SELECT min(seq) FROM audit_events WHERE tenant_id = :t AND seq > :after AND seq <= :upto "
            "AND (CAST(target_id AS text) = ANY(:held) OR details->>'patron_id' = ANY(:held))"
        ),
        {"t": session.tenant_id, "after": after, "upto": upto, "held": held},
    ).scalar()


def _events(session: TenantSession, after: int, upto: int) -> tuple[int, datetime | None]:
    return session.execute(
        text("SELECT count(*), min(occurred_at) FROM audit_events WHERE tenant_id = :t AND seq > :a AND seq <= :u"),
        {"t": session.tenant_id, "a": after, "u": upto},
    ).one()


def drop_audit_segment(session: TenantSession, keep_days: int, as_of: datetime) -> tuple[int, int]:
    """Drop the tenant's due segment (never under the platform's period, never past a hold): (removed, held)."""
    keep_days = max(keep_days, platform_audit_days())
    segment = _audit_segment(session, keep_days, as_of)
    if segment.upto is None:
        return 0, segment.held
    drop = audit_retention.drop_expired_segment(
        session, timedelta(days=keep_days), now=as_of, keep_from=segment.keep_from
    )
    return (drop.events if drop is not None else 0), segment.held


def drop_audit_segments(db: Database, platform: timedelta) -> None:
    """The audit retention job (audit/retention.py): the platform's chain at the platform's period, each
    institution's at its own."""
    now = datetime.now(UTC)
    for chain in chain_ids(db):
        with tenant_session(db, chain) as session:
            if chain == PLATFORM_CHAIN:
                audit_retention.drop_expired_segment(session, platform, now=now)
            else:
                keep = periods(session)[C.AUDIT_SEGMENTS].keep_days or platform.days
                drop_audit_segment(session, max(keep, platform.days), now)


# -- the purge -----------------------------------------------------------------------------------


class CategoryCountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    category: RetentionCategory
    keep_days: int | None
    cutoff: datetime | None
    removed: int
    held: int
    errors: int
    last_error: str | None
    done: bool


class RunOut(BaseModel):
    id: UUID
    triggered_by: str
    status: RunStatus
    as_of: datetime
    started_at: datetime
    finished_at: datetime | None
    resumed: int
    categories: list[CategoryCountOut]


def run_purge(
    db: Database,
    tenant_id: UUID,
    *,
    triggered_by: str = "schedule",
    as_of: datetime | None = None,
    batch: int = BATCH,
) -> UUID:
    """Remove what is past its period in one institution; resumes the institution's unfinished run."""
    run_id = _open_run(db, tenant_id, triggered_by, as_of)
    for category in RetentionCategory:
        _purge_category(db, tenant_id, run_id, category, batch)
    with tenant_session(db, tenant_id) as session:
        run = session.get(RetentionRun, (tenant_id, run_id), with_for_update=True)
        if run.status == RunStatus.RUNNING:
            run.status, run.finished_at = RunStatus.COMPLETED.value, session.scalar(select(func.now()))
            counts = _counts(session, run_id)
            details = {"as_of": run.as_of.isoformat(), "resumed": run.resumed}
            details |= {f"{c.category}_removed": c.removed for c in counts}
            details |= {f"{c.category}_held": c.held for c in counts}
            details |= {f"{c.category}_errors": c.errors for c in counts}
            record(session, Action.RETENTION_RUN_COMPLETED, (RUN_TARGET, run_id), actor=SYSTEM, details=details)
    log.info("retention.run_completed", tenant_id=str(tenant_id), run_id=str(run_id))
    return run_id


def _open_run(db: Database, tenant_id: UUID, triggered_by: str, as_of: datetime | None) -> UUID:
    """The institution's unfinished run (resumed), or a new one with its periods fixed now."""
    for _ in range(2):
        try:
            with tenant_session(db, tenant_id) as session:
                return _resume_or_start(session, triggered_by, as_of)
        except IntegrityError:
            continue  # another worker started one at the same moment: resume theirs
    raise Conflict("a retention run of this institution is starting elsewhere; try again")


def _resume_or_start(session: TenantSession, triggered_by: str, as_of: datetime | None) -> UUID:
    running = session.scalars(
        select(RetentionRun).where(RetentionRun.status == RunStatus.RUNNING.value).with_for_update()
    ).first()
    if running is not None:
        running.resumed += 1
        record(session, Action.RETENTION_RUN_STARTED, (RUN_TARGET, running.id), actor=SYSTEM,
               details={"resumed": running.resumed, "as_of": running.as_of.isoformat()})  # fmt: skip
        log.warning("retention.run_resumed", tenant_id=str(session.tenant_id), run_id=str(running.id))
        return running.id
    as_of = as_of or session.scalar(select(func.now()))
    run = RetentionRun(
        tenant_id=session.tenant_id, id=uuid.uuid4(), triggered_by=triggered_by, as_of=as_of,
        status=RunStatus.RUNNING.value, resumed=0,
    )  # fmt: skip
    session.add(run)
    for category, period in periods(session).items():
        session.add(
            RetentionRunCount(
                tenant_id=session.tenant_id,
                run_id=run.id,
                category=category.value,
                keep_days=period.keep_days,
                cutoff=_cutoff(as_of, period.keep_days),
                removed=0,
                held=0,
                errors=0,
                done=False,
            )
        )
    session.flush()
    details = {"as_of": as_of.isoformat(), "triggered_by": triggered_by}
    record(session, Action.RETENTION_RUN_STARTED, (RUN_TARGET, run.id), actor=SYSTEM, details=details)
    return run.id


def _purge_category(db: Database, tenant_id: UUID, run_id: UUID, category: RetentionCategory, batch: int) -> None:
    with tenant_session(db, tenant_id) as session:
        count = _count_row(session, run_id, category)
        if count.done:
            return
        if count.cutoff is None:  # kept until deleted
            count.done = True
            return
        if category is C.AUDIT_SEGMENTS:
            as_of = session.get(RetentionRun, (tenant_id, run_id)).as_of
            try:
                with session.begin_nested():
                    removed, held = drop_audit_segment(session, count.keep_days, as_of)
            except (BookwardenError, SQLAlchemyError) as exc:
                removed, held = 0, 0
                count.errors, count.last_error = count.errors + 1, _error_kind(exc)
            count.removed, count.held, count.done = count.removed + removed, held, True
            if removed:
                _record_batch(session, run_id, category, removed, [], table="audit_events")
            return
        # Held rows are counted at each (re)start of the category: what stays, not a running sum.
        if holds.category_held(session, category):
            count.held, count.done = _count(session, category, count.cutoff)[1], True
            return
        count.held = _held_only(session, category, count.cutoff)
    for source in sources(category):
        after = _purge_batch(db, tenant_id, run_id, category, source, batch, None)
        while after is not None:
            after = _purge_batch(db, tenant_id, run_id, category, source, batch, after)
    with tenant_session(db, tenant_id) as session:
        _count_row(session, run_id, category).done = True


def _held_only(session: TenantSession, category: RetentionCategory, cutoff: datetime) -> int:
    total = 0
    for source in sources(category):
        chosen = expired(source, category, cutoff, held=True).subquery()
        total += session.scalar(select(func.count()).select_from(chosen))
    return total


def _purge_batch(
    db: Database,
    tenant_id: UUID,
    run_id: UUID,
    category: RetentionCategory,
    source: Source,
    batch: int,
    after: UUID | None,
) -> UUID | None:
    """Remove one batch in one transaction with its count and its event; the last id it looked at (the
    next batch starts after it: a walk along the primary key, each row looked at once), None at the end."""
    patrons = category is C.INACTIVE_PATRONS
    with tenant_session(db, tenant_id) as session:
        count = _count_row(session, run_id, category)
        query = expired(source, category, count.cutoff)
        if after is not None:
            query = query.where(source.table.c.id > after)
        query = query.order_by(source.table.c.id).limit(PATRON_BATCH if patrons else batch)
        if not patrons and source.remove is None:
            # One statement chooses and deletes: no list of ids travels to the server and back.
            table, chosen = source.table, query.subquery()
            removed = list(
                session.scalars(
                    delete(table)
                    .where(table.c.tenant_id == tenant_id, table.c.id.in_(select(chosen.c.id)))
                    .returning(table.c.id)
                )
            )
            if not removed:
                return None
            count.removed += len(removed)
            _record_batch(session, run_id, category, len(removed), removed, table=table.name)
            return max(removed)
        ids = [row.id for row in session.execute(query)]
        if not ids:
            return None
        if patrons:
            removed = []
            for patron_id in ids:
                try:
                    with session.begin_nested():
                        _remove_patron(session, patron_id)
                    removed.append(patron_id)
                except (BookwardenError, SQLAlchemyError) as exc:
                    # Left for the next run (this one walks on past it).
                    count.errors, count.last_error = count.errors + 1, _error_kind(exc)
                    log.warning("retention.patron_not_removed", patron_id=str(patron_id), error=_error_kind(exc))
        else:
            removed = ids if source.remove(session, ids) == len(ids) else _still_gone(session, source, ids)
        count.removed += len(removed)
        _record_batch(session, run_id, category, len(removed), removed, table=source.table.name)
    return ids[-1]


def _still_gone(session: TenantSession, source: Source, ids: list[UUID]) -> list[UUID]:
    """Of `ids`, those no longer there (another remover, such as the package expiry, took some first)."""
    table = source.table
    left = set(session.scalars(select(table.c.id).where(table.c.tenant_id == session.tenant_id, table.c.id.in_(ids))))
    return [i for i in ids if i not in left]


def _remove_patron(session: TenantSession, patron_id: UUID) -> None:
    """The one call point for removing an inactive patron: the erasure (privacy/subjects/erasure.py: rows, files,
    subject key, certificate) when that area is installed; otherwise the patron's deletion, which
    removes every row about them (foreign keys cascade) and destroys their subject key."""
    try:
        erasure = importlib.import_module("bookwarden.privacy.subjects.erasure")
    except ImportError:
        erasure = None
    if erasure is not None and hasattr(erasure, "erase_patron"):
        erasure.erase_patron(session, patron_id)
        return

    library.delete(session, library.PATRONS, patron_id)


def _record_batch(session, run_id, category, removed: int, ids: list, table: str | None = None) -> None:
    details = {"run_id": run_id, "category": category.value, "count": removed, "ids": ids, "table": table}
    record(session, Action.RETENTION_PURGED, (RUN_TARGET, run_id), actor=SYSTEM, details=details)


def _error_kind(exc: Exception) -> str:
    # The kind only: a message may quote a value.
    return exc.slug if isinstance(exc, BookwardenError) else type(exc).__name__


def _count_row(session: TenantSession, run_id: UUID, category: RetentionCategory) -> RetentionRunCount:
    return session.get(RetentionRunCount, (session.tenant_id, run_id, category.value), with_for_update=True)


def _counts(session: TenantSession, run_id: UUID) -> list[RetentionRunCount]:
    order = {c.value: i for i, c in enumerate(RetentionCategory)}
    rows = session.scalars(select(RetentionRunCount).where(RetentionRunCount.run_id == run_id)).all()
    return sorted(rows, key=lambda r: order[r.category])


# -- reports -------------------------------------------------------------------------------------


def _report(session: TenantSession, run: RetentionRun) -> RunOut:
    return RunOut(
        id=run.id,
        triggered_by=run.triggered_by,
        status=RunStatus(run.status),
        as_of=run.as_of,
        started_at=run.started_at,
        finished_at=run.finished_at,
        resumed=run.resumed,
        categories=[CategoryCountOut.model_validate(c) for c in _counts(session, run.id)],
    )


def list_runs(session: TenantSession, actor: Principal, *, limit: int = RUNS_LISTED) -> list[RunOut]:
    authorize(actor, Permission.PRIVACY_RETENTION_MANAGE)
    runs = session.scalars(select(RetentionRun).order_by(RetentionRun.started_at.desc()).limit(limit)).all()
    ids = [run.id for run in runs]
    details = {"ids": ids, "count": len(ids)}
    record(session, Action.RETENTION_RUN_LISTED, (RUN_TARGET, None), actor=actor, details=details)
    return [_report(session, run) for run in runs]


def view_run(session: TenantSession, actor: Principal, run_id: UUID) -> RunOut:
    authorize(actor, Permission.PRIVACY_RETENTION_MANAGE)
    run = session.get(RetentionRun, (session.tenant_id, run_id))
    if run is None:
        raise NotFound(f"no retention run {run_id}")
    record(session, Action.RETENTION_RUN_VIEWED, (RUN_TARGET, run.id), actor=actor)
    return _report(session, run)


# -- the daily job ---------------------------------------------------------------------------------


def tenant_ids(db: Database) -> list[UUID]:
    with platform_session(db) as session:
        return list(session.scalars(select(Tenant.id).order_by(Tenant.created_at, Tenant.id)))


def purge_all(db: Database, *, run: Callable[[Database, UUID], UUID] = run_purge) -> list[UUID]:
    """Every institution's run; one institution's failure does not stop the others, and fails the job
    at the end (its unfinished run resumes when the job is tried again)."""
    done, failed = [], []
    for tenant_id in tenant_ids(db):
        try:
            done.append(run(db, tenant_id))
        except Exception as exc:
            log.error("retention.run_failed", tenant_id=str(tenant_id), error_type=type(exc).__name__)
            failed.append(tenant_id)
    if failed:
        raise RuntimeError(f"the retention run of {len(failed)} institution(s) failed; it resumes on the next try")
    return done


