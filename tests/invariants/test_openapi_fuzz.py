"""Schemathesis over the whole OpenAPI document: no server error, no response that breaks the schema.

Every route of every later area falls under this test automatically. Each operation gets a
bounded number of generated requests, authenticated with a token holding every permission its
kind of caller can have (a tenant token for tenant routes, an operator token otherwise).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, date, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bookwarden.core.permissions import TENANT_PERMISSIONS
from tests.e2e.saml_idp import sample_metadata
from tests.privacy.test_publisher_reports import catalogue_files

EXAMPLES_PER_OPERATION = 25
# An operation without a body or a query (a GET of a list, a GET or an action on one record): its generated
# requests differ only in random ids that reach the same "not found" each time, or not at all.
EXAMPLES_WITHOUT_INPUT = 5
# The operations in parts that pytest-xdist runs side by side (one test over all would be the longest one).
SHARDS = 4
SENSITIVE = "urn:bookwarden:problem:sensitive-data-refused"

# Values whose validity no JSON Schema can state get a valid sample as positive data, so that a
# 422 for them still means good input refused: an IdP's SAML metadata (identity/saml/routes.py).
schemathesis.openapi.format("saml-metadata", st.builds(sample_metadata))
# A catalogue upload (privacy/reports/routes.py): CSV, each item id once.
schemathesis.openapi.format("catalogue-csv", catalogue_files())
# Dates and times as the API keeps them (library/schemas.py): the schema's pattern states the years,
# but "born by today" no schema can state; drawn in range here instead of filtered from any year.
schemathesis.openapi.format("date", st.dates(date(1800, 1, 1), date.today()).map(date.isoformat))
schemathesis.openapi.format(
    "date-time",
    st.datetimes(datetime(1900, 1, 2), datetime(2099, 12, 30), timezones=st.just(UTC)).map(datetime.isoformat),
)


# An address or network to block (monitor/response/routes.py): real, no host bits set, not too wide, not loopback.
schemathesis.openapi.format(
    "ip-network",
    st.one_of(
        st.integers(0, 2**17 - 1).map(lambda n: str(ipaddress.ip_address(0xC6120000 + n))),  # 198.18.0.0/15
        st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.ip_network(((0x20010DB8 << 96) + (n << 64), 64)))),
    ),
)


@pytest.mark.parametrize("shard", range(SHARDS))
def test_no_server_error_and_responses_match_the_schema(db, app, tenant, issue_token, operator_token, shard):
    tenant_token = issue_token(tenant, permissions=TENANT_PERMISSIONS)
    # The app builds its document at the first request: past schemathesis's 10 s when other tests run beside.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, timeout=120)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30, "the whole API should be under test"
    failures = []
    for operation in operations[shard::SHARDS]:
        headers = {"Authorization": f"Bearer {operator_token if '/operator/' in operation.path else tenant_token}"}
        # Each operation's requests are undone before the next: in one long transaction every audit
        # append would walk the chain head's row versions of all earlier requests (quadratic time).
        savepoint = db.bind.begin_nested()
        try:
            _fuzz(operation, headers)
        except Exception as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
        finally:
            savepoint.rollback()
    assert not failures, "\n\n".join(failures)


def examples_for(operation) -> int:
    """Generated requests for one operation: fewer where it takes no body and no query, only ids in its path
    and credentials (the Authorization header, which `case.call` replaces with the test's own token, and
    the session cookie, which the token outranks)."""
    headers = [p for p in operation.headers if p.name.lower() != "authorization"]
    if len(operation.body) or len(operation.query) or headers:
        return EXAMPLES_PER_OPERATION
    return EXAMPLES_WITHOUT_INPUT


def _fuzz(operation, headers: dict) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=examples_for(operation), deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def check(case):
        response = case.call(headers=headers)
        if response.status_code == 422 and SENSITIVE in response.text:
            # A string the schema allows that reads as a payment card or bank number (a long phone
            # number can be Luhn-valid with a card prefix): refused by the one screen every body passes
            # (api/bodies.py), a rule no JSON Schema can state. The answer must still say which field.
            assert response.json()["errors"], response.text
            return
        case.validate_response(response, headers=headers)

    check()
