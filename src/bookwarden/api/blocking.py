"""Blocked source addresses refused before any route runs, in every HTTP process (monitor/response/blocks.py).

Pure ASGI, inside the security headers and outside everything else: a blocked client gets `403 address-blocked`
(problem+json) before its body is read, before authentication, before any database work. 403, not 429: this is
a decision about the address for a stated time, not a rate the client may come back under by slowing down; the
detail says until when, and whom to ask.

The client address is the ASGI scope's, which the server set: the peer, or `X-Forwarded-For` only from a proxy
named in BOOKWARDEN_TRUSTED_PROXIES (`bookwarden serve`); the header is never read here. Refusals are not
audited one by one (a blocked scanner would fill the trail); each is logged (`request.blocked`).
"""

from __future__ import annotations

import json

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from bookwarden.api.problems import MEDIA_TYPE, problem_type
from bookwarden.monitor.response.addresses import Allowlist, client_address
from bookwarden.monitor.response.blocks import BlockCache

log = structlog.get_logger()


class AddressBlocks:
    def __init__(self, app: ASGIApp, cache: BlockCache, allowlist: Allowlist) -> None:
        self.app, self.cache, self.allowlist = app, cache, allowlist
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.cache.due():
            await run_in_threadpool(self.cache.refresh_now)
        client = scope.get("client")
        address = client_address(client[0] if client else None)
        until = None
        if address is not None and not self.allowlist.allows(address):
            until = self.cache.blocked_until(address)
        if until is None:
            await self.app(scope, receive, send)
            return
        self.refused += 1
        log.info("request.blocked", path=scope.get("path"))
        body = json.dumps(
            {
                "type": problem_type("address-blocked"),
                "title": "Address blocked",
                "status": 403,
                "detail": (
                    "requests from your network address are blocked until "
                    f"{until.strftime('%Y-%m-%d %H:%M:%S UTC')} after activity the platform's monitoring "
                    "took for an attack; if that is wrong, ask the institution or the platform's operators"
                ),
            }
        ).encode()
        headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})
