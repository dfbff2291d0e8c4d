"""Blocks of source addresses: made by jails or operators, ended by operators or by their time; and the cache
every HTTP process enforces them from (api/blocking.py).

Every change (block, unblock, expiry) raises `address_block_version` in its own transaction, so the new version
becomes visible together with the rows. An HTTP process reads that one row at most once per
BOOKWARDEN_MONITOR_BLOCK_REFRESH_SECONDS (1 s) and reloads the active blocks only when it moved: a block made
through any process is enforced by all of them within about a second, with no query per request. Expiry needs no
reload: each cached block carries its end and stops applying at that moment, before the job marks it.

Audit: monitor.address_blocked, monitor.address_unblocked, monitor.address_block_expired and
monitor.address_blocks_listed in the platform's chain, each naming the block by id (the address stays in the
block's row, which goes after the look-back; the trail keeps no address in its details).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.authorize import authorize
from bookwarden.core.config import get_settings
from bookwarden.core.errors import InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.core.text import is_line
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import enqueue
from bookwarden.monitor.response.addresses import Allowlist, Matcher, Network, parse_network
from bookwarden.monitor.response.models import AddressBlock, EndedWhy

log = structlog.get_logger()

MANUAL = "manual"  # the rule of a block an operator made
HOOK_JOB = "monitor.block_hook"
LONGEST_MANUAL = timedelta(days=365)
REASON_MAX = 500


@dataclass(frozen=True)
class BlockView:
    id: uuid.UUID
    network: str
    rule: str
    jail: str | None
    reason: str | None
    offence: int
    created_at: datetime
    expires_at: datetime
    created_by_kind: str

    @classmethod
    def of(cls, row: AddressBlock) -> BlockView:
        return cls(
            row.id,
            str(row.network),
            row.rule,
            row.jail,
            row.reason,
            row.offence,
            row.created_at,
            row.expires_at,
            row.created_by_kind,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "network": self.network,
            "rule": self.rule,
            "jail": self.jail,
            "reason": self.reason,
            "offence": self.offence,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "created_by": self.created_by_kind,
        }


def announce_change(session: Session) -> None:
    """Raise the version every HTTP process polls, in the changing transaction (visible with the change)."""
    # An upsert, not an UPDATE: a database restored or emptied without the row must still announce changes.
    session.execute(
        text(
            "INSERT INTO address_block_version AS v (id, version) VALUES (1, 1) "
            "ON CONFLICT (id) DO UPDATE SET version = v.version + 1"
        )
    )


def _hook(session: Session, action: str, network: str, seconds: int | None = None) -> None:
    # Through the job queue, in this transaction: the command runs only once the block is committed, on a
    # worker, and its failure can never undo or delay the block in the platform.
    if not get_settings().monitor_block_hook:
        return
    enqueue(session, HOOK_JOB, {"action": action, "network": network, "seconds": seconds})


def active_covering(session: Session, network: Network) -> AddressBlock | None:
    """An active block that already covers all of `network`, the longest first."""
    return session.scalar(
        select(AddressBlock)
        .where(
            AddressBlock.ended_at.is_(None),
            AddressBlock.expires_at > func.now(),
            AddressBlock.network.op(">>=")(str(network)),
        )
        .order_by(AddressBlock.expires_at.desc())
        .limit(1)
    )


def earlier_blocks(session: Session, network: Network, lookback: timedelta) -> int:
    """Blocks of exactly this network that began within `lookback`: how many times it offended before."""
    return session.scalar(
        select(func.count())
        .select_from(AddressBlock)
        .where(AddressBlock.network == str(network), AddressBlock.created_at > func.now() - lookback)
    )


def place(
    session: Session,
    network: Network,
    duration: timedelta,
    *,
    rule: str,
    jail: str | None,
    offence: int,
    by: Principal,
    reason: str | None = None,
) -> AddressBlock:
    """Write one block (callers checked the allowlist and the permission), audited, hook queued."""
    row = AddressBlock(
        id=uuid.uuid4(),
        network=str(network),
        rule=rule,
        jail=jail,
        reason=reason,
        offence=offence,
        expires_at=func.now() + duration,
        created_by_kind=by.kind.value,
        created_by_id=by.person if by.kind is not PrincipalKind.SYSTEM else None,
    )
    session.add(row)
    session.flush()
    session.refresh(row)
    announce_change(session)
    details = {
        "block_id": str(row.id),
        "rule": rule,
        "jail": jail,
        "prefix_length": network.prefixlen,
        "ip_version": network.version,
        "offence": offence,
        "seconds": int(duration.total_seconds()),
        "expires_at": row.expires_at.astimezone(UTC).isoformat(),
    }
    record(session, Action.ADDRESS_BLOCKED, ("address_block", row.id), details=details, actor=by)
    _hook(session, "block", str(network), int(duration.total_seconds()))
    return row


def block(
    session: Session,
    actor: Principal,
    address: str,
    duration: timedelta,
    allowlist: Allowlist,
    reason: str | None = None,
) -> AddressBlock:
    """An operator blocks an address or network for `duration`; refused for an allowlisted one."""
    authorize(actor, Permission.PLATFORM_BLOCKS_MANAGE)
    network = parse_network(address)
    if not timedelta(minutes=1) <= duration <= LONGEST_MANUAL:
        raise InvalidInput("duration: a block lasts from 1 minute to 365 days; give minutes within that range")
    if reason is not None and not is_line(reason, REASON_MAX):
        raise InvalidInput(f"reason: one line of at most {REASON_MAX} characters, no control characters")
    allowed = allowlist.overlapping(network)
    if allowed is not None:
        raise InvalidInput(
            f"address: {network} touches {allowed}, which is never blocked (loopback, a trusted proxy or "
            "BOOKWARDEN_MONITOR_ALLOWLIST); nothing was stored"
        )
    offence = earlier_blocks(session, network, timedelta(days=365)) + 1
    return place(session, network, duration, rule=MANUAL, jail=None, offence=offence, by=actor, reason=reason)


def list_active(session: Session, actor: Principal) -> list[BlockView]:
    """Active blocks, soonest to end first (recorded as one listing with their ids)."""
    authorize(actor, Permission.PLATFORM_BLOCKS_READ)
    rows = session.scalars(
        select(AddressBlock)
        .where(AddressBlock.ended_at.is_(None), AddressBlock.expires_at > func.now())
        .order_by(AddressBlock.expires_at, AddressBlock.id)
    ).all()
    views = [BlockView.of(row) for row in rows]
    record(
        session,
        Action.ADDRESS_BLOCKS_LISTED,
        ("address_block", None),
        details={"count": len(views), "ids": [str(v.id) for v in views]},
        actor=actor,
    )
    return views


def unblock(session: Session, actor: Principal, block_id: uuid.UUID) -> BlockView:
    """An operator ends one active block before its time."""
    authorize(actor, Permission.PLATFORM_BLOCKS_MANAGE)
    row = session.scalar(
        select(AddressBlock)
        .where(AddressBlock.id == block_id, AddressBlock.ended_at.is_(None), AddressBlock.expires_at > func.now())
        .with_for_update()
    )
    if row is None:
        raise NotFound(f"no active block {block_id}: list them with GET /api/v1/operator/blocks")
    _end(session, row, EndedWhy.UNBLOCKED, actor)
    return BlockView.of(row)


def unblock_address(session: Session, actor: Principal, address: str) -> list[BlockView]:
    """An operator ends every active block covering `address` (an address or a network)."""
    authorize(actor, Permission.PLATFORM_BLOCKS_MANAGE)
    network = parse_network(address)
    rows = session.scalars(
        select(AddressBlock)
        .where(
            AddressBlock.ended_at.is_(None),
            AddressBlock.expires_at > func.now(),
            AddressBlock.network.op(">>=")(str(network)),
        )
        .with_for_update()
    ).all()
    if not rows:
        raise NotFound(f"no active block covers {network}: list them with `bookwarden monitor blocks`")
    for row in rows:
        _end(session, row, EndedWhy.UNBLOCKED, actor)
    return [BlockView.of(row) for row in rows]


def _end(session: Session, row: AddressBlock, why: EndedWhy, by: Principal) -> None:
    row.ended_at = func.now()
    row.ended_why = why
    row.ended_by_id = by.person if why is EndedWhy.UNBLOCKED else None
    session.flush()
    announce_change(session)
    action = Action.ADDRESS_UNBLOCKED if why is EndedWhy.UNBLOCKED else Action.ADDRESS_BLOCK_EXPIRED
    details = {"block_id": str(row.id), "rule": row.rule, "jail": row.jail, "offence": row.offence}
    record(session, action, ("address_block", row.id), details=details, actor=by)
    _hook(session, "unblock", str(row.network))


def expire_due(session: Session, by: Principal) -> int:
    """Mark the blocks whose time ran out as expired (each audited, hook told); returns how many."""
    rows = session.scalars(
        select(AddressBlock)
        .where(AddressBlock.ended_at.is_(None), AddressBlock.expires_at <= func.now())
        .order_by(AddressBlock.expires_at)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        _end(session, row, EndedWhy.EXPIRED, by)
    return len(rows)


def forget_ended(session: Session, lookback: timedelta) -> int:
    """Delete blocks that ended longer than `lookback` ago, and strikes as old: their addresses go with them."""
    removed = session.execute(
        text("DELETE FROM address_blocks WHERE ended_at IS NOT NULL AND ended_at < now() - :keep"), {"keep": lookback}
    ).rowcount
    removed += session.execute(
        text("DELETE FROM response_strikes WHERE window_start < now() - :keep"), {"keep": lookback}
    ).rowcount
    return removed


# -- what an HTTP process enforces -------------------------------------------------------------


class BlockCache:
    """The active blocks as one HTTP process sees them: reloaded when the version row moved, read at most once
    per `refresh` seconds. Thread-safe; a refresh in progress is never waited for (the others use what they
    have, at most `refresh` seconds old)."""

    def __init__(self, db: Database, refresh: float = 1.0) -> None:
        self.db = db
        self.refresh = refresh
        self.matcher = Matcher(())
        self.version: int | None = -1  # loaded at the first request, whatever the row says (even no row)
        self.checked_at = float("-inf")
        self.version_reads = 0  # how many times the version was read (tests and metrics)
        self._lock = threading.Lock()

    def due(self) -> bool:
        return time.monotonic() - self.checked_at >= self.refresh

    def refresh_now(self) -> None:
        if not self._lock.acquire(blocking=False):
            return
        try:
            self.checked_at = time.monotonic()
            with platform_session(self.db) as session:
                self.version_reads += 1
                version = session.execute(text("SELECT version FROM address_block_version WHERE id = 1")).scalar()
                if version == self.version:
                    return
                rows = session.execute(
                    select(AddressBlock.network, AddressBlock.expires_at).where(
                        AddressBlock.ended_at.is_(None), AddressBlock.expires_at > func.now()
                    )
                ).all()
            self.matcher = Matcher((parse_network(str(network)), expires) for network, expires in rows)
            self.version = version
            log.info("blocks.reloaded", version=version, active=len(self.matcher))
        except Exception as exc:  # enforcement goes on with the blocks last loaded
            # The database is unreachable: keep enforcing what was loaded (the routes will fail on their own).
            log.warning("blocks.refresh_failed", error_type=type(exc).__name__)
        finally:
            self._lock.release()

    def blocked_until(self, address) -> datetime | None:
        return self.matcher.blocked_until(address, datetime.now(UTC))
