"""Server-rendered HTML: one Jinja2 environment (autoescape on), the base layout, the navigation.

Templates are found by name in `web/templates/` and in a `templates/` folder beside any area's
`pages.py` (e.g. `privacy/templates/portal/requests.html`, named "portal/requests.html"). Name an
area's templates under a folder of its own so two areas never shadow each other.

Every page extends "base.html": it loads only this site's stylesheet and scripts (the
Content-Security-Policy allows nothing else: no inline script or style, no `style=` attribute) and
works with JavaScript off; htmx and the page scripts only make it smoother.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from starlette.requests import Request

from bookwarden import areas
from bookwarden.core.errors import BookwardenError
from bookwarden.core.principal import Principal
from bookwarden.web import csrf, session

HERE = Path(__file__).parent


@dataclass(frozen=True)
class NavLink:
    """A link of the layout's navigation, shown to the readers `shown` accepts (None: not signed in)."""

    label: str
    href: str
    shown: Callable[[Principal | None], bool]


NAVIGATION: list[NavLink] = []


def navigation(link: NavLink) -> None:
    """Add a link to the layout's navigation (called at import by an area's `pages.py`)."""
    if all(known.href != link.href for known in NAVIGATION):
        NAVIGATION.append(link)


@cache
def environment() -> jinja2.Environment:
    folders = [HERE / "templates"]
    for module in areas.modules("pages"):
        beside = Path(module.__file__).parent / "templates"
        if beside.is_dir() and beside not in folders:
            folders.append(beside)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,  # a misspelt name is an error in the tests, not a blank on a page
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["sentence"] = sentence
    return env


def sentence(text: str) -> str:
    """A service's message ("the code is not right...") as a sentence on a page: capital, full stop."""
    text = str(text).strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    """The page `template`, rendered with `context` plus what every page has:

    `principal` (the signed-in person or None), `csrf_field()` (the hidden input every form carries),
    `csrf_token`, `nav` (the links this reader may follow) and `path` (this page's path).
    """
    principal = session.current(request)
    token = csrf.token(request)
    values = {
        "principal": principal,
        "csrf_token": token,
        "csrf_field": lambda: Markup('<input type="hidden" name="{}" value="{}">').format(csrf.FIELD, token),
        "nav": [link for link in NAVIGATION if link.shown(principal)],
        "path": request.url.path,
        **context,
    }
    body = environment().get_template(template).render(values)
    response = HTMLResponse(body, status_code=status_code)
    csrf.remember(request, response, https=session.https(request))
    return response


def render_refusal(request: Request, template: str, refused: BookwardenError, **context) -> HTMLResponse:
    """The form `template` again, with the service's refusal as `error` and the status the API would send
    (and its Retry-After, for a throttle's 429)."""
    response = render(request, template, status_code=refused.status, error=refused.detail, **context)
    retry_after = getattr(refused, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response
