"""Errors on pages: the problem the API would answer, shown as a page of the layout.

The app's one set of exception handlers (api/problems.py) renders every refusal; for a page request
(a `PageRoute`, or a browser asking for HTML at a path that is not the API's) it asks `page_problem`
here instead of answering problem+json. The refusal is recorded in the trail exactly as the API's.
A reader who is not signed in and asks to read a page is sent to the sign-in page, and back after.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi.responses import RedirectResponse
from starlette.requests import Request
from starlette.responses import Response

from bookwarden.web.templates import render

SIGN_IN = "/signin"
OPERATOR_SIGN_IN = "/operator/signin"
OPERATOR_AREA = "/operator"


def is_page(request: Request) -> bool:
    if getattr(request.state, "page", False):
        return True
    # No route matched (a mistyped address): a browser asking for a page gets a page.
    path = request.url.path
    wants_html = "text/html" in request.headers.get("accept", "")
    return wants_html and request.scope.get("route") is None and not path.startswith("/api/")


def local_path(value: str | None, default: str = "/") -> str:
    """`value` when it is a path of this site (so a `next=` cannot send anyone elsewhere); else `default`."""
    if not value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


def sign_in_path(next_path: str) -> str:
    operator = next_path == OPERATOR_AREA or next_path.startswith(OPERATOR_AREA + "/")
    return f"{OPERATOR_SIGN_IN if operator else SIGN_IN}?next={quote(next_path, safe='/')}"


def page_problem(request: Request, status: int, slug: str, title: str, detail: str) -> Response:
    if status == 401 and request.method in ("GET", "HEAD"):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(sign_in_path(here), status_code=303)
    request_id = getattr(request.state, "request_id", None)
    return render(
        request,
        "error.html",
        status_code=status,
        status=status,
        slug=slug,
        title=title,
        detail=detail,
        request_id=request_id,
    )
