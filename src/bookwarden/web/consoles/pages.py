"""The consoles' home pages and their stylesheet (the menus: web/consoles/__init__.py)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import Depends, Request
from fastapi.responses import Response

from bookwarden.core import charts
from bookwarden.core.errors import Forbidden
from bookwarden.core.principal import Principal
from bookwarden.web.consoles import Console, page
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import signed_in

router = PageRouter()


@router.get("/console")
def institution_home(request: Request, principal: Principal = Depends(signed_in)):
    """Anyone of an institution signed in: the menu shows only the pages their permissions open."""
    if principal.is_operator:
        raise Forbidden("the institution console is for an institution's staff; operators use /operator")
    return page(request, Console.INSTITUTION, "console/home.html", title="Institution console")


@router.get("/operator")
def operator_home(request: Request, principal: Principal = Depends(signed_in)):
    """Any operator signed in: the menu shows only the pages their role opens."""
    if not principal.is_operator:
        raise Forbidden("the operator console is for the platform's operators; institution staff use /console")
    return page(request, Console.OPERATOR, "console/home.html", title="Operator console")


@cache
def _stylesheet() -> str:
    return (Path(__file__).parent / "console.css").read_text() + "\n" + charts.stylesheet()


@router.get("/console/console.css", response_class=Response)
def stylesheet():
    """Open: the consoles' layout and the charts' rules, the same for everyone, no data."""
    return Response(_stylesheet(), media_type="text/css")
