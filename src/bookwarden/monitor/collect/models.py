"""Where each collector stopped: a platform table (seen only without tenant context), names no person."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, LargeBinary, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import COUNTER, MACHINE, not_personal
from bookwarden.db.base import Base


class Position(Base):
    """`source` is `file:<path>` (a tailed file) or `audit:<chain id>` (an audit chain, `offset` its last seq)."""

    __tablename__ = "monitor_positions"

    source: Mapped[str] = mapped_column(Text, primary_key=True, info=MACHINE)
    device: Mapped[int | None] = mapped_column(BigInteger, info=MACHINE)
    inode: Mapped[int | None] = mapped_column(BigInteger, info=MACHINE)
    offset: Mapped[int] = mapped_column(BigInteger, info=COUNTER)
    fingerprint: Mapped[bytes | None] = mapped_column(
        LargeBinary, info=not_personal("SHA-256 of a tailed file's first bytes: tells the same file from a new one")
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
