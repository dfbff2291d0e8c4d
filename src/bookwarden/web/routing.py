"""Page routes: HTML answers, forms read and checked before a page sees them.

`PageRouter()` is an APIRouter whose routes are `PageRoute`s: left out of the OpenAPI document,
HTML by default, and, for every request that may change something (anything but GET and HEAD):

1. its CSRF token (field `csrf_token`, or the `X-CSRF-Token` header) must match the browser's
   cookies (web/csrf.py), or the request is refused with 403 csrf-refused before the page runs;
2. the body must be a URL-encoded form (what a browser's `<form method="post">` and htmx send);
3. every field is screened for payment and bank data, as the API screens every JSON body
   (api/bodies.py): 422 sensitive-data-refused naming the field, nothing stored.

The page reads the fields with `form(request)`. Errors a page does not catch itself are shown as
an error page (web/errors.py); a reader who is not signed in is sent to the sign-in page.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from bookwarden.core.errors import InvalidInput
from bookwarden.core.sensitive import SensitiveDataRefused, find_sensitive
from bookwarden.web import csrf

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPE = "application/x-www-form-urlencoded"
# Fields that are never screened for payment data: the token is ours.
UNSCREENED = frozenset({csrf.FIELD})


class PageRoute(APIRoute):
    def get_route_handler(self) -> Callable:
        handle = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            request.state.page = True  # errors are shown as pages (web/errors.py)
            if request.method not in SAFE_METHODS:
                fields = await _read_form(request)
                csrf.check(request, fields.get(csrf.FIELD) or request.headers.get(csrf.HEADER))
                _screen(fields)
                request.state.form = fields
            return await handle(request)

        return page_handler


class PageRouter(APIRouter):
    """The router an area's `pages.py` exposes as `router`: its routes are PageRoutes."""

    def __init__(self, **options) -> None:
        options.setdefault("include_in_schema", False)
        options.setdefault("default_response_class", HTMLResponse)
        super().__init__(route_class=PageRoute, **options)


async def _read_form(request: Request) -> FormData:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()  # bounded by the app's body limit (api/bodies.py)
    if content_type != FORM_TYPE:
        # The token first: whatever else is wrong, a request from elsewhere learns only that (403).
        csrf.check(request, request.headers.get(csrf.HEADER))
        if body:
            raise InvalidInput("send the form as application/x-www-form-urlencoded, as a browser does")
        return FormData()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("the form could not be read (not UTF-8, or too many fields); nothing was changed") from None
    return FormData(pairs)


def _screen(fields: FormData) -> None:
    for name, value in fields.multi_items():
        if name in UNSCREENED or not isinstance(value, str):
            continue
        for text in (name, value):
            finding = find_sensitive(text)
            if finding is not None:
                raise SensitiveDataRefused(name if text is value else "(a field name)", finding)


def form(request: Request) -> FormData:
    """The fields of this request's form (read and checked by the route); empty on GET."""
    return getattr(request.state, "form", FormData())
