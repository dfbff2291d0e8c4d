"""The outbox's jobs: deliver one message (queued with it); sweep up messages no live job will deliver.

Forgetting mail 90 days after it was sent (`notify.forget_old_mail`) is declared by privacy/retention/jobs.py:
each batch must be recorded in the institution's audit trail, and this layer sits beside the trail's."""

from __future__ import annotations

from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.notify import delivery
from bookwarden.notify.service import DELIVER

handler(DELIVER)(delivery.deliver)
handler(delivery.SWEEP)(delivery.sweep)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, delivery.SWEEP, delivery.SWEEP, delivery.SWEEP_EVERY)
