"""Authorization decisions per second, against a plain dictionary lookup of the same answers.

A tenant with 1,000 staff accounts and 50 custom roles (random permission sets), each account
holding one to three of them. Two decision paths are measured, both checked against the
dictionary's answer on every call:

- `authorize`: the one decision point, `authorize(principal, permission)`, with the principal
  already resolved (what every request after authentication runs; denials are logged).
- `resolve_and_authorize`: the account's permissions resolved from PostgreSQL in a tenant
  session (`access.roles.reads.account_permissions`), then `authorize` — what a request pays when
  nothing is cached.

Baseline: `answers[(account, permission)]`, a dict built from the same data.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import structlog

from bench import harness
from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest
from bookwarden.access.roles import reads
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Forbidden
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, TENANT_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import roles as access
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind
from bookwarden.tenancy import service as tenancy

NAME = "authorize"
SEED = 20_261_128


def _admin(tenant_id: uuid.UUID) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])


def _seed(env: harness.BenchEnv, n_accounts: int, n_roles: int, rng: random.Random) -> tuple[uuid.UUID, list]:
    with platform_session(env.db) as session:
        tenant = tenancy.create_tenant(session, env.db.keyring, env.home, "bench", "Bench University")
    admin, checker = _admin(tenant.id), _admin(tenant.id)
    # Without audit.verify, no random set straddles a separation of duties (access/roles/sod.py): every role
    # can be created and any of them held together.
    permissions = sorted(TENANT_PERMISSIONS - {Permission.AUDIT_VERIFY})
    with tenant_session(env.db, tenant.id) as session:
        roles = [f"role_{i:02d}" for i in range(n_roles)]
        for name in roles:
            # A role with administrative permissions is asked by one administrator and approved by another.
            made = access.create_or_ask(session, admin, name, set(rng.sample(permissions, rng.randint(1, 8))))
            if isinstance(made, ApprovalRequest):
                approvals.approve(session, checker, made.id)
    ids = []
    with harness.progress() as bar:
        task = bar.add_task("accounts", total=n_accounts)
        for start in range(0, n_accounts, 100):
            with tenant_session(env.db, tenant.id) as session:
                for n in range(start, min(start + 100, n_accounts)):
                    account = accounts.create_account(session, admin, kind=AccountKind.STAFF, username=f"staff{n}")
                    for role in rng.sample(roles, rng.randint(1, 3)):
                        granted = access.grant_or_ask(session, admin, account.id, role)
                        if isinstance(granted, ApprovalRequest):
                            approvals.approve(session, checker, granted.id)
                    ids.append(account.id)
                    bar.advance(task)
    return tenant.id, ids


def run(quick: bool) -> Iterator[dict[str, Any]]:
    n_accounts, n_roles, decisions, resolved = (100, 10, 20_000, 300) if quick else (1_000, 50, 500_000, 5_000)
    rng = random.Random(SEED)
    # Denials are logged; send them nowhere so the run measures the decision, not a terminal.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    with harness.bench_env() as env:
        started = time.perf_counter()
        tenant_id, ids = _seed(env, n_accounts, n_roles, rng)
        yield {
            "bench": NAME,
            "event": "seeded",
            "accounts": n_accounts,
            "custom_roles": n_roles,
            "seconds": round(time.perf_counter() - started, 2),
            "load_average_1m": harness.load_average(),
        }
        with tenant_session(env.db, tenant_id) as session:
            principals = {
                a: Principal(PrincipalKind.ACCOUNT, a, tenant_id, reads.account_permissions(session, a)) for a in ids
            }
        answers = {(a, p): p in principals[a].permissions for a in ids for p in Permission}
        sample = [(rng.choice(ids), rng.choice(list(Permission))) for _ in range(decisions)]
        denied = sum(not answers[pair] for pair in sample) / len(sample)

        def decide(pairs: list) -> None:
            for account, permission in pairs:
                try:
                    authorize(principals[account], permission)
                    allowed = True
                except Forbidden:
                    allowed = False
                if allowed is not answers[(account, permission)]:
                    raise RuntimeError("authorize disagrees with the expected answer")

        def look_up(pairs: list) -> None:
            for pair in pairs:
                answers[pair]  # the lookup is the work being timed

        def resolve_and_decide(pairs: list) -> None:
            for account, permission in pairs:
                with tenant_session(env.db, tenant_id) as session:
                    principal = Principal(
                        PrincipalKind.ACCOUNT, account, tenant_id, reads.account_permissions(session, account)
                    )
                if (permission in principal.permissions) is not answers[(account, permission)]:
                    raise RuntimeError("resolved permissions disagree with the expected answer")

        timings = {name: _time(fn, sample) for name, fn in (("dict", look_up), ("authorize", decide))}
        resolved_s = _time(resolve_and_decide, sample[:resolved])
        rates = {name: len(sample) / seconds for name, seconds in timings.items()}
        yield {
            "bench": NAME,
            "event": "resolve_and_authorize",
            "decisions": resolved,
            "per_second": round(resolved / resolved_s, 1),
            "mean_us": round(resolved_s / resolved * 1e6, 1),
            "note": "permissions read from PostgreSQL per decision (tenant session, one query)",
        }
        yield harness.summary(
            NAME,
            "authorization_decisions_per_s",
            rates["authorize"],
            rates["dict"],
            "decisions/s",
            decisions=len(sample),
            denied_fraction=round(denied, 3),
            accounts=n_accounts,
            custom_roles=n_roles,
            resolved_per_s=round(resolved / resolved_s, 1),
            load_average_1m=harness.load_average(),
        )


def _time(fn, pairs: list) -> float:
    started = time.perf_counter()
    fn(pairs)
    return time.perf_counter() - started
