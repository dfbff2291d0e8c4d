"""Retention's duties: the daily purge of each institution's data past its period, and the daily drop of
sealed audit segments past theirs (each institution's chain keeps its own period, never under the
platform's, and its legal holds), and the daily forgetting of the audit trail's source addresses and user
agents after at most 90 days (audit/contexts.py; the hashed events keep only a commitment to them).

Declared here for a lower layer, like the audit trail's retention: the outbox's mail is forgotten 90 days
after it was sent (notify/service.py `forget_settled_before`), each batch recorded in the institution's
trail, which the outbox's layer sits beside and cannot write to."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from bookwarden.audit import contexts as audit_contexts
from bookwarden.audit.events import PLATFORM_CHAIN
from bookwarden.audit.retention import RETENTION_JOB
from bookwarden.core.config import get_settings
from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.notify.service import FORGET_OLD_MAIL, KEEP_SETTLED, forget_settled_before
from bookwarden.privacy.retention.service import PURGE_JOB, drop_audit_segments, purge_all
from bookwarden.tenancy.periods import Period, enforce, institutions

OLD_MAIL = Period(FORGET_OLD_MAIL, "outbox", KEEP_SETTLED, forget_settled_before)
AUDIT_CONTEXTS = Period(
    audit_contexts.FORGET_JOB, audit_contexts.CONTEXTS_TABLE, audit_contexts.KEEP, audit_contexts.forget_before
)


@handler(PURGE_JOB)
def _purge_job(db: Database, payload: dict) -> None:
    purge_all(db)


@handler(RETENTION_JOB)
def _audit_retention_job(db: Database, payload: dict) -> None:
    drop_audit_segments(db, timedelta(days=get_settings().audit_retention_days))


@handler(FORGET_OLD_MAIL)
def _forget_old_mail_job(db: Database, payload: dict) -> None:
    enforce(db, OLD_MAIL, actor=SYSTEM)


@handler(audit_contexts.FORGET_JOB)
def _forget_audit_contexts_job(db: Database, payload: dict) -> None:
    forget_audit_contexts(db, timedelta(days=get_settings().audit_context_days))


def forget_audit_contexts(db: Database, keep: timedelta = audit_contexts.KEEP) -> None:
    """Every chain's source addresses and user agents older than `keep` (never more than the published
    period), the platform's chain included; each batch recorded in its chain."""
    with platform_session(db) as session:
        chains = [*institutions(session), PLATFORM_CHAIN]
    enforce(db, dataclasses.replace(AUDIT_CONTEXTS, keep=min(keep, audit_contexts.KEEP)), actor=SYSTEM, tenants=chains)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, PURGE_JOB, PURGE_JOB, timedelta(days=1))
        schedule(session, RETENTION_JOB, RETENTION_JOB, timedelta(days=1))
        schedule(session, FORGET_OLD_MAIL, FORGET_OLD_MAIL, timedelta(days=1))
        schedule(session, audit_contexts.FORGET_JOB, audit_contexts.FORGET_JOB, timedelta(days=1))
