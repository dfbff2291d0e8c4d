"""Operator API: blocked source addresses (`platform.blocks.read`), blocking and unblocking by hand
(`platform.blocks.manage`). An operator control: no institution's credential holds these permissions."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from datetime import datetime, timedelta
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from bookwarden.api.deps import database, requires
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import line
from bookwarden.db.session import Database, platform_session
from bookwarden.monitor.response import blocks
from bookwarden.monitor.response.jails import allowlist

router = APIRouter(prefix="/api/v1", responses=responses(401, 403, 422), tags=["operator: active response"])
READ = Depends(requires(Permission.PLATFORM_BLOCKS_READ))
MANAGE = Depends(requires(Permission.PLATFORM_BLOCKS_MANAGE))


class BlockOut(BaseModel):
    id: UUID
    network: str
    rule: str
    jail: str | None
    reason: str | None
    offence: int
    created_at: datetime
    expires_at: datetime
    created_by: str


class BlockIn(BaseModel):
    # "ip-network": what no JSON Schema states (a real address, no host bits under the prefix, at most /8 or /32).
    address: line(64) = Field(
        description="an address (203.0.113.5, 2001:db8::1) or a network (203.0.113.0/24)",
        json_schema_extra={"format": "ip-network"},
    )
    minutes: int = Field(default=60, ge=1, le=525_600, description="how long the block lasts")
    reason: line(blocks.REASON_MAX) | None = None


def _out(view: blocks.BlockView) -> BlockOut:
    return BlockOut(**{**view.__dict__, "created_by": view.created_by_kind})


@router.get("/operator/blocks", response_model=list[BlockOut])
def list_blocks(principal: Principal = READ, db: Database = Depends(database)):
    """Active blocks, soonest to end first."""
    with platform_session(db) as session:
        return [_out(view) for view in blocks.list_active(session, principal)]


@router.post("/operator/blocks", status_code=201, response_model=BlockOut, responses=responses(422))
def block_address(body: BlockIn, request: Request, principal: Principal = MANAGE, db: Database = Depends(database)):
    """Block an address or network by hand; every HTTP process refuses it within about a second."""
    with platform_session(db) as session:
        row = blocks.block(
            session,
            principal,
            body.address,
            timedelta(minutes=body.minutes),
            allowlist(request.app.state.settings),
            body.reason,
        )
        return _out(blocks.BlockView.of(row))


@router.delete("/operator/blocks/{block_id}", response_model=BlockOut, responses=responses(404))
def unblock(block_id: UUID, principal: Principal = MANAGE, db: Database = Depends(database)):
    """End an active block before its time (the hook is told to unblock too)."""
    with platform_session(db) as session:
        return _out(blocks.unblock(session, principal, block_id))
