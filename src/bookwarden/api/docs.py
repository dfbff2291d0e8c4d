"""The interactive API pages, /docs (Swagger UI) and /redoc (ReDoc): off unless BOOKWARDEN_API_DOCS=true.

FastAPI's pages load their code from a public CDN (cdn.jsdelivr.net), at the newest release of a major
version: code we never reviewed, which changes without us, would run on the platform's own origin,
where a signed-in browser's session cookie is sent with every request it makes. Each visit would also
tell the CDN (and Google Fonts, for ReDoc) who reads our API pages, from where. No maintained package
vendors both pages (swagger-ui-bundle ships one Swagger UI of 2022, and no ReDoc), so production
serves none: /openapi.json, which any of these tools reads, is always there. A developer can turn
the pages on; each then carries its own Content-Security-Policy naming exactly the files it loads and
the hash of its one inline script (still no 'unsafe-inline' script), and styles from anywhere it needs.

No OAuth2 redirect page (/docs/oauth2-redirect): the API has no OAuth2 flow to finish.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
_SCRIPT_FILE = re.compile(r'<script src="(https://[^"]+)"')
_LINK = re.compile(r"<link\b([^>]*)>")
_HREF = re.compile(r'href="(https://[^"]+)"')

# What each page's code does once loaded: fetch /openapi.json, draw icons from data: URLs, set inline
# styles; ReDoc also starts a web worker from a blob and loads its web fonts.
_SWAGGER_NEEDS = {"connect-src": ["'self'"], "img-src": ["data:"], "style-src": ["'unsafe-inline'"]}
_REDOC_NEEDS = {
    "connect-src": ["'self'"],
    "img-src": ["data:"],
    "style-src": ["'unsafe-inline'"],
    "font-src": ["https://fonts.gstatic.com"],
    "worker-src": ["blob:"],
}


def install(app: FastAPI) -> None:
    """Add /docs and /redoc (not part of the OpenAPI document), each with its page's own policy."""
    pages = {
        "/docs": (
            get_swagger_ui_html(
                openapi_url=app.openapi_url, title=f"{app.title} - Swagger UI", oauth2_redirect_url=None
            ),
            _SWAGGER_NEEDS,
        ),
        "/redoc": (get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - ReDoc"), _REDOC_NEEDS),
    }
    for path, (page, needs) in pages.items():
        app.add_route(path, _serve(bytes(page.body), policy(bytes(page.body).decode(), needs)), include_in_schema=False)


def policy(page: str, needs: dict[str, list[str]]) -> str:
    """A Content-Security-Policy allowing exactly the scripts, styles and icons `page` names, plus `needs`."""
    sources: dict[str, list[str]] = {"default-src": ["'none'"], "script-src": [], "style-src": [], "img-src": []}
    sources["script-src"] += [_source(url) for url in _SCRIPT_FILE.findall(page)]
    sources["script-src"] += [f"'sha256-{_digest(script)}'" for script in _INLINE_SCRIPT.findall(page)]
    for attributes in _LINK.findall(page):
        href = _HREF.search(attributes)
        if href is None:
            continue
        if 'rel="stylesheet"' in attributes:
            sources["style-src"].append(_source(href.group(1)))
        elif "icon" in attributes:
            sources["img-src"].append(_source(href.group(1)))
    for directive, allowed in needs.items():
        sources.setdefault(directive, []).extend(allowed)
    sources |= {"base-uri": ["'none'"], "form-action": ["'none'"], "frame-ancestors": ["'none'"]}
    return "; ".join(f"{directive} {' '.join(allowed)}" for directive, allowed in sources.items() if allowed)


def _source(url: str) -> str:
    """The URL as a CSP source: without its query, which CSP ignores and whose commas would split the header."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _digest(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def _serve(body: bytes, page_policy: str):
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(body, headers={"Content-Security-Policy": page_policy})

    return page
