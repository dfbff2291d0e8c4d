"""Mail in the crash suite: a reset link mailed to an account holder, delivered by workers to the real SMTP
server, and what must hold of what arrived."""

from __future__ import annotations

import re

from sqlalchemy import select, text

from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import links
from bookwarden.jobs.worker import Worker
from bookwarden.notify.models import OutboxMessage, OutboxStatus

NEW_PASSWORD = "copper lantern meadow 71 quartz"


def lease_expires(db) -> None:
    """Time passes for a job whose worker died: its lease runs out (as `claim_next` sees it)."""
    with platform_session(db) as session:
        session.execute(text("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE status = 'running'"))


def send_reset(db, holder) -> None:
    tenant_id, account_id, admin = holder
    with tenant_session(db, tenant_id) as session:
        links.send_reset(session, db.master, admin, account_id)


def drain(db) -> None:
    lease_expires(db)
    worker = Worker(db, "after")
    while worker.run_one():
        pass


def the_link_works(db, smtp_server, holder, copies: int) -> None:
    """`copies` mails arrived, one Message-ID among them; the reset link they carry sets a new password."""
    received = [m.message for m in smtp_server.messages]
    assert len(received) == copies and len({m["Message-ID"] for m in received}) == 1
    [token] = set(re.findall(r"#token=([A-Za-z0-9_\-.]+)", received[-1].get_content()))
    assert links.reset_with_link(db, token, NEW_PASSWORD) == holder[1]
    tenant_id = holder[0]
    with tenant_session(db, tenant_id) as session:
        assert [m.status for m in session.scalars(select(OutboxMessage))] == [OutboxStatus.SENT]
