"""The start page: where the portal and the consoles are, and (on a demo database) who to sign in as."""

from __future__ import annotations

from fastapi import Request

from bookwarden.web import demo_logins
from bookwarden.web.routing import PageRouter
from bookwarden.web.templates import render

router = PageRouter()


@router.get("/")
def start(request: Request):
    """Open to everyone: it holds no data, only the ways in."""
    logins = demo_logins.read(request.app.state.settings)
    return render(request, "start.html", title="Welcome", logins=logins)
