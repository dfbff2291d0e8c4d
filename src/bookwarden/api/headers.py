"""Security headers on every response: JSON, problems, HTML pages, the OpenAPI document, streamed exports.

The app wraps its whole middleware stack in this (api/app.py), so a 500 rendered by Starlette's error
middleware carries them too. Pure ASGI: the headers join the response's start message and the body
streams through untouched (BaseHTTPMiddleware would put every streamed export through a task and a
queue of its own).

- Content-Security-Policy: JSON and every other non-HTML answer may load nothing and be framed by
  no one; HTML pages load only from this site, never an inline script. A response that sets its own
  policy keeps it (the optional API pages, api/docs.py, name their CDN files and script hashes).
- X-Content-Type-Options nosniff, X-Frame-Options DENY (with frame-ancestors for newer browsers),
  Referrer-Policy no-referrer (links carry tokens in their path: unsubscribe, downloads),
  Permissions-Policy turning off the browser features no page uses (camera, microphone, location...).
- The HTML policy names script-src and style-src 'self' outright: the pages (web/) carry no inline
  script, no inline style and no `style=` attribute, and load nothing from another site.
- Cache-Control no-store on every response, with no exception: almost every answer may hold personal
  data, and what does not (health, metrics, the OpenAPI document) is cheap to send again. A route
  cannot loosen it.
- Strict-Transport-Security when BOOKWARDEN_PUBLIC_URL is https. No includeSubDomains: the platform
  does not own the sibling names of the host an institution runs it under.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"
HTML_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# No page uses these; WebAuthn (publickey-credentials-*) keeps its default, this site only.
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), browsing-topics=()"
)
HSTS = "max-age=31536000"  # one year
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Permissions-Policy": PERMISSIONS_POLICY,
}


def is_https(public_url: str) -> bool:
    return urlsplit(public_url.strip()).scheme.lower() == "https"


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.always = {**ALWAYS, **({"Strict-Transport-Security": HSTS} if https else {})}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.always.items():
                    headers[name] = value
                html = headers.get("content-type", "").lower().startswith("text/html")
                headers.setdefault("Content-Security-Policy", HTML_POLICY if html else JSON_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)
