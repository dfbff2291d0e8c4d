"""Offboarding killed at each of its steps (backup/offboarding.py): the next run carries it on to exactly one
certificate, every row and file of the institution gone and nothing of another's; the export's link that
reached the administrators opens the export, and the destruction notice arrives at least once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from bookwarden.access.approvals import service as approvals
from bookwarden.backup import offboarding, snapshot
from bookwarden.backup.models import OffboardingState
from bookwarden.db.session import tenant_session
from tests.backup.test_offboarding import ASKER, CHECKER, _counts, _delivered, _state, institution  # noqa: F401
from tests.conftest import TEST_DATABASE
from tests.crash.kill import die_at

# Until the export is mailed (run at once), then after the grace period (run `later`).
EARLY = [
    "offboarding.approval_taken",
    "offboarding.suspended",
    "offboarding.export.written",
    "offboarding.export.mailed",
]
LATE = [
    "offboarding.keys.counted",
    "offboarding.keys.mailed",
    "offboarding.keys.destroyed",
    "offboarding.rows.keyring_deleted",
    "offboarding.rows.deleting",
    "offboarding.rows.deleted",
    "offboarding.files.first_wiped",
    "offboarding.files.wiped",
    "offboarding.certificate.signing",
]
POINTS = EARLY + LATE


@pytest.mark.usefixtures("audit_holds")
@pytest.mark.parametrize("point", POINTS)
def test_an_offboarding_killed_at_any_step_ends_in_exactly_one_certificate(
    committed_db,
    committed_tenant,
    settings,
    admin_url,
    institution,  # noqa: F811 - the fixture imported above
    smtp_server,
    point,
):
    tenant_id, _, _ = institution
    other = committed_tenant()
    other_before = _counts(admin_url, other)
    row = offboarding.request_offboarding(committed_db, ASKER, settings, tenant_id, grace_days=1)
    with tenant_session(committed_db, tenant_id) as session:  # approved in the institution's queue
        approvals.approve(session, CHECKER, row.approval_id)

    def advance(at: datetime | None = None):
        return lambda db: offboarding.advance(db, settings, admin_url, row.id, now=at)

    if point in EARLY:
        die_at(point, advance(), committed_db)
        assert _state(committed_db, row.id).state != OffboardingState.EXPORTED
    assert advance()(committed_db).state == OffboardingState.EXPORTED  # and it waits for the grace period

    # Every export link that reached the administrators opens the export (one mailed again after a kill too).
    links = [
        line.strip().rsplit("/", 1)[1]
        for mail in _delivered(committed_db, smtp_server)
        if "final export" in mail.message["Subject"]
        for line in mail.message.get_content().splitlines()
        if "/api/v1/offboarding/export/" in line
    ]
    assert 1 <= len(links) <= (2 if point == "offboarding.export.mailed" else 1)
    for token in links:
        assert offboarding.open_export(committed_db, settings, token)[1].exists()

    later = datetime.now(UTC) + timedelta(days=2)
    if point in LATE:
        die_at(point, advance(later), committed_db)
        assert _state(committed_db, row.id).certificate is None
    done = advance(later)(committed_db)

    assert done.state == OffboardingState.CERTIFIED
    assert advance(later)(committed_db).certificate == done.certificate
    assert _counts(admin_url, tenant_id) == {"tenants": 0}
    assert _counts(admin_url, other) == other_before
    with psycopg.connect(snapshot.url_of(admin_url, TEST_DATABASE)) as conn:
        issued = conn.execute(
            "SELECT count(*) FROM audit_events WHERE action = 'offboarding.certified' AND target_id = %s", (row.id,)
        ).fetchone()[0]
    assert issued == 1
    notices = [m.message for m in smtp_server.messages if "being destroyed now" in m.message["Subject"]]
    assert notices and len({m["Message-ID"] for m in notices}) == 1  # at least once, recognisably one mail
    assert not (settings.resolved_home / "tenants" / str(tenant_id)).exists()
    assert not offboarding.export_dir(settings, row.id).exists()
