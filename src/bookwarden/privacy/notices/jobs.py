"""The privacy notice's duty: mail patrons about a material change, queued when the version is published."""

from __future__ import annotations

from uuid import UUID

import structlog

from bookwarden.db.session import Database
from bookwarden.jobs.service import handler
from bookwarden.privacy.notices.service import MAIL_JOB, mail_change

log = structlog.get_logger()


@handler(MAIL_JOB)
def _change_mail_job(db: Database, payload: dict) -> None:
    progress = mail_change(db, UUID(payload["tenant_id"]), UUID(payload["version_id"]))
    log.info("privacy.notice_change_mailed", version_id=payload["version_id"], mailed=progress.mailed)


def declare_schedules(db: Database) -> None:
    """Nothing recurring: publishing a material version queues its own job."""
