"""CSRF protection for every form of the web pages: a signed double-submit token tied to the session.

The browser holds a random secret in the `bw_csrf` cookie (HttpOnly, SameSite=Strict, Secure over
https); every page's forms carry `HMAC(key, secret | session cookies)` in a hidden field
(`csrf_token`), or htmx sends it in the `X-CSRF-Token` header (static/web.js). A state-changing
request to a page is refused unless the token matches the cookies it arrived with
(web/routing.py checks it before the page runs):

- another site cannot read the cookie nor the page, so it cannot compute or copy the token;
- a sibling subdomain that plants its own `bw_csrf` cookie still cannot sign it: the key is derived
  from the master key (crypto/derive.py WEB_FORM_CSRF) and never leaves the server;
- the token is bound to the session cookies too, so a token seen before a sign-in (the sign-in form's)
  is worth nothing after it, when the session cookie has a new value.

Origin checks (api/deps.py `check_same_origin`) do not fit forms: with Referrer-Policy no-referrer a
browser sends `Origin: null` on a form's POST, so the token is what proves the form is ours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from bookwarden.core.errors import Forbidden
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.identity.operators.signin import COOKIE_NAME as OPERATOR_COOKIE
from bookwarden.identity.sessions import COOKIE_NAME as SESSION_COOKIE

COOKIE_NAME = "bw_csrf"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
_SECRET_BYTES = 32


class CsrfRefused(Forbidden):
    slug, title = "csrf-refused", "Form refused"

    def __init__(self) -> None:
        super().__init__(
            "this form was not sent from a page of this site, or the page is older than your current sign-in: "
            "open the page again and resend the form (cookies must be allowed for this site); nothing was changed"
        )


def _key(request: Request) -> bytes:
    return derive(request.app.state.db.master.current, KeyPurpose.WEB_FORM_CSRF)


def _sessions(request: Request) -> bytes:
    # Both session kinds: a browser may hold an institution's session and an operator's at once. A session
    # cookie this response sets (web/session.py `session_changed`) is the one the page's forms come back with.
    changed = getattr(request.state, "session_cookies", {})
    values = (changed.get(name, request.cookies.get(name, "")) for name in (SESSION_COOKIE, OPERATOR_COOKIE))
    return "\n".join(values).encode()


def _secret(request: Request) -> str:
    """The browser's secret; a new one (set on the response by `remember`) when it has none."""
    given = request.cookies.get(COOKIE_NAME)
    if given:
        return given
    fresh = getattr(request.state, "csrf_secret", None)
    if fresh is None:
        fresh = request.state.csrf_secret = secrets.token_urlsafe(_SECRET_BYTES)
    return fresh


def token(request: Request) -> str:
    """The token this request's page puts in its forms."""
    mac = hmac.new(_key(request), _secret(request).encode() + b"\0" + _sessions(request), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def remember(request: Request, response: Response, *, https: bool) -> None:
    """Set the secret cookie when this request made a new one (the page's tokens are computed from it)."""
    fresh = getattr(request.state, "csrf_secret", None)
    if fresh is not None:
        response.set_cookie(COOKIE_NAME, fresh, secure=https, httponly=True, samesite="strict", path="/")


def check(request: Request, given: str | None) -> None:
    """Raise CsrfRefused unless `given` is the token for the cookies this request carries."""
    if not given or not request.cookies.get(COOKIE_NAME):
        raise CsrfRefused()
    if not hmac.compare_digest(given.encode(), token(request).encode()):
        raise CsrfRefused()
