"""The patron portal's "my data" and "my posts": the patron's own record, opened for them, and their posts.

The same services as GET /api/v1/me/posts and DELETE /api/v1/me/posts/{id} (library/service.py), with
the signed-in patron as actor; "my data" reads the record through `own_record`, each read audited as
the patron's own. Loans per month are drawn as an SVG chart (no script, no style attribute).
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from uuid import UUID

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse

from bookwarden.core.principal import Principal
from bookwarden.library import service
from bookwarden.web.portal import PATRON, render_portal
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import tenant_scope

router = PageRouter()
CHART_MONTHS = 12


@router.get("/portal")
def my_data(request: Request, principal: Principal = Depends(PATRON)):
    with tenant_scope(request, principal) as session:
        mine = service.own_record(session, principal)
        chart = loans_per_month(mine.loans, date.today())
        return render_portal(
            request, session, principal, "portal/my_data.html", title="My data", mine=mine, chart=chart
        )


def loans_per_month(loans, today: date, months: int = CHART_MONTHS) -> list[tuple[str, int]]:
    """(label, count) for each of the last `months` months, oldest first: what the chart draws."""
    counted = Counter((loan.borrowed_at.year, loan.borrowed_at.month) for loan in loans)
    first = today.year * 12 + today.month - 1 - (months - 1)
    out = []
    for n in range(first, first + months):
        year, month = divmod(n, 12)
        out.append((date(year, month + 1, 1).strftime("%b %Y"), counted.get((year, month + 1), 0)))
    return out


@router.get("/portal/posts")
def my_posts(request: Request, principal: Principal = Depends(PATRON)):
    with tenant_scope(request, principal) as session:
        posts = service.own_posts(session, principal, cursor=None, limit=200)
        done = "Your post is deleted." if "deleted" in request.query_params else ""
        return render_portal(
            request, session, principal, "portal/posts.html", title="My posts", posts=posts.items, done=done
        )


@router.post("/portal/posts/{post_id}/delete")
def delete_post(request: Request, post_id: UUID, principal: Principal = Depends(PATRON)):
    """Delete one of my posts (another patron's is not found, as in the API)."""
    with tenant_scope(request, principal) as session:
        service.delete_own_post(session, principal, post_id)
    return RedirectResponse("/portal/posts?deleted", status_code=303)
