"""What a caller with no credential can put in the permanent trail: nothing that looks like payment
data (User-Agent and X-Request-ID are screened), and no more than a budget of events per address
(past it, 429 with Retry-After and nothing recorded until the window ends)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from bookwarden.api.app import WITHHELD_USER_AGENT, user_agent_for
from bookwarden.audit.events import PLATFORM_CHAIN
from bookwarden.db.session import tenant_session
from bookwarden.identity import throttle
from tests.helpers import fresh_address

CARD = "4111111111111111"


def _platform_events(db) -> list[dict]:
    with tenant_session(db, PLATFORM_CHAIN) as session:
        rows = session.execute(
            # The address and user agent are kept apart from the hashed event (audit_event_contexts).
            text(
                "SELECT e.action, c.user_agent, e.request_id, c.source_address FROM audit_events e "
                "LEFT JOIN audit_event_contexts c USING (tenant_id, seq) ORDER BY e.seq"
            )
        )
        return [dict(r._mapping) for r in rows]


def _stranger(app, address: str) -> TestClient:
    return TestClient(app, client=(address, 50000), raise_server_exceptions=False)


def test_a_card_number_in_the_user_agent_or_request_id_never_reaches_the_trail(db, app):
    before = len(_platform_events(db))
    client = _stranger(app, fresh_address())
    response = client.get("/api/v1/auth/me", headers={"User-Agent": f"probe {CARD}", "X-Request-ID": CARD})
    assert response.status_code == 401
    assert not response.headers["x-request-id"].startswith(CARD)
    (event,) = _platform_events(db)[before:]
    assert event["user_agent"] == WITHHELD_USER_AGENT
    assert CARD not in (event["request_id"] or "") and CARD not in str(event)
    # An ordinary agent and id are kept as they were.
    client.get("/api/v1/auth/me", headers={"User-Agent": "curl/8.5", "X-Request-ID": "build-2026-0042"})
    last = _platform_events(db)[-1]
    assert last["user_agent"] == "curl/8.5" and last["request_id"].startswith("build-2026-0042-")


def test_anonymous_refusals_are_recorded_up_to_a_budget_then_refused_with_429(db, app, monkeypatch):
    monkeypatch.setattr(throttle, "ANONYMOUS_EVENTS", throttle.Budget("anonymous_events", 3, timedelta(minutes=5)))
    flooder, neighbour = fresh_address(), fresh_address()
    before = len(_platform_events(db))
    answers = [_stranger(app, flooder).get("/api/v1/patrons").status_code for _ in range(6)]
    assert answers == [401, 401, 401, 429, 429, 429]
    assert len(_platform_events(db)) == before + 3  # the flood added three events, then none
    refused = _stranger(app, flooder).get("/api/v1/patrons")
    assert int(refused.headers["Retry-After"]) > 0
    # Another address has its own budget; a caller with a credential is never budgeted.
    assert _stranger(app, neighbour).get("/api/v1/patrons").status_code == 401


@pytest.mark.parametrize("agent", ["Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", "python-httpx/0.27.0"])
def test_ordinary_user_agents_are_not_withheld(agent):
    assert user_agent_for(agent) == agent
