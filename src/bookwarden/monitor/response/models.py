"""Blocked source addresses, the version HTTP processes poll to learn of a change, and jail strikes.

Platform tables: a block belongs to no institution (an address attacks the platform) and is seen only by a
transaction without tenant context. An address is personal data (device and network): kept in plain because
every HTTP process must compare it, and kept only while a block is active and for the repeat-offender
look-back after it ends (monitor/response/jobs.py deletes it then).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, Text, Uuid, func
from sqlalchemy.dialects.postgresql import CIDR
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import (
    COUNTER,
    MACHINE,
    STATE,
    Category,
    Protection,
    SubjectKind,
    not_personal,
    personal,
    pseudonymous,
)
from bookwarden.db.base import Base

# About whoever used the address: a person named by nothing but the row itself (no account, no patron record).
NETWORK = personal(Category.DEVICE_NETWORK, Protection.PLAIN, subject=SubjectKind.CONTACT)


class EndedWhy(enum.StrEnum):
    UNBLOCKED = "unblocked"  # by an operator (console or API)
    EXPIRED = "expired"  # its bantime ran out (the expiry job marks it)


class AddressBlock(Base):
    __tablename__ = "address_blocks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # One address (/32, /128) or a network: IPv6 addresses blocked by a jail are their /64 (identity/throttle.py).
    network: Mapped[str] = mapped_column(CIDR, info=NETWORK)
    rule: Mapped[str] = mapped_column(String(200), info=MACHINE)  # the Sigma rule that raised it, or "manual"
    jail: Mapped[str | None] = mapped_column(String(100), info=MACHINE)
    reason: Mapped[str | None] = mapped_column(
        Text, info=not_personal("an operator's note on why an address is blocked (screened like every text)")
    )
    # 1 for a first block of the network within the look-back; each earlier one multiplies the bantime.
    offence: Mapped[int] = mapped_column(Integer, info=COUNTER)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by_kind: Mapped[str] = mapped_column(String(16), info=STATE)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=pseudonymous("the operator who blocked by hand"))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_why: Mapped[EndedWhy | None] = mapped_column(String(16), info=STATE)
    ended_by_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=pseudonymous("the operator who unblocked"))


class AddressBlockVersion(Base):
    """One row whose version rises with every change of the blocks, in the changing transaction: an HTTP
    process reads it at most once a second and reloads the blocks only when it moved."""

    __tablename__ = "address_block_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, info=COUNTER)


class ResponseStrike(Base):
    """A jail's count of alerts from one network within its findtime (for jails on rules that do not count)."""

    __tablename__ = "response_strikes"

    jail: Mapped[str] = mapped_column(String(100), primary_key=True, info=MACHINE)
    network: Mapped[str] = mapped_column(CIDR, primary_key=True, info=NETWORK)
    window_start: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), info=not_personal("when the jail's count of this network began")
    )
    strikes: Mapped[int] = mapped_column(Integer, info=COUNTER)
