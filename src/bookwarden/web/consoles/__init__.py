"""The two consoles' menus: an institution's (`/console`) and the operators' (`/operator`).

A registry, like the layout's navigation: each area's `pages.py` adds its own entries at import
(`entry(...)`), under one of its console's sections, and each reader sees the entries whose permission
they hold. The security areas add theirs too (monitor/alerts, monitor/response, monitor/fim, incidents,
backup, reports: the operators' sections for alerts, incidents, backups and drills, file integrity and
evidence); a section with no entry the reader may open is not shown.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.web import csrf
from bookwarden.web.routing import form
from bookwarden.web.session import current
from bookwarden.web.templates import NavLink, navigation, render


class Console(enum.StrEnum):
    INSTITUTION = "/console"
    OPERATOR = "/operator"


# In the order the menus show them.
SECTIONS: dict[Console, tuple[str, ...]] = {
    Console.INSTITUTION: ("People and access", "Security notices", "Privacy", "Audit", "Usage"),
    Console.OPERATOR: (
        "Institutions",
        "Access grants",
        "Privacy oversight",
        "Alerts",
        "Incidents",
        "Backups and drills",
        "File integrity",
        "Evidence",
        "Usage",
    ),
}


@dataclass(frozen=True)
class Entry:
    console: Console
    section: str
    label: str
    href: str
    permission: Permission
    summary: str = ""


ENTRIES: list[Entry] = []


def entry(console: Console, section: str, label: str, href: str, permission: Permission, summary: str = "") -> None:
    """Add a page to a console's menu (called at import by an area's `pages.py`)."""
    if section not in SECTIONS[console]:
        raise ValueError(f"{section!r} is not a section of the {console.name.lower()} console: {SECTIONS[console]}")
    if all(known.href != href for known in ENTRIES):
        ENTRIES.append(Entry(console, section, label, href, permission, summary))


def _is_staff(principal: Principal | None) -> bool:
    return principal is not None and not principal.is_operator


def _is_operator(principal: Principal | None) -> bool:
    return principal is not None and principal.is_operator


navigation(NavLink("Institution console", Console.INSTITUTION.value, _is_staff))
navigation(NavLink("Operator console", Console.OPERATOR.value, _is_operator))


def menu(console: Console, principal: Principal | None) -> list[tuple[str, list[Entry]]]:
    """The sections of `console` with the entries `principal` may open, sections without any left out."""
    held = principal.permissions if principal is not None else frozenset()
    shown = []
    for section in SECTIONS[console]:
        entries = [e for e in ENTRIES if e.console is console and e.section == section and e.permission in held]
        if entries:
            shown.append((section, entries))
    return shown


def page(request: Request, console: Console, template: str, status_code: int = 200, **context):
    """A console page: `render` with the console's menu (`menu`) for the layout "console/layout.html", and
    `done`, the confirmation after a redirect (none unless the page passes one)."""
    shown = menu(console, current(request))
    path = request.url.path
    # The entry this page belongs to: the longest whose path is this page's or a parent of it.
    matching = [e.href for _, entries in shown for e in entries if path == e.href or path.startswith(e.href + "/")]
    context = {"done": None, **context}
    return render(
        request,
        template,
        status_code=status_code,
        menu=shown,
        console=console,
        here=max(matching, key=len, default=None),
        **context,
    )


def done(message: str | None, messages: dict[str, str]) -> str | None:
    """The confirmation a page shows after a redirect (`?done=key`): only the page's own wordings."""
    return messages.get(message or "")


def read_form(request: Request, model: type[BaseModel], lists: tuple[str, ...] = (), **extra) -> BaseModel:
    """The page's form read into `model` (the API's own input model, so a page accepts what the route does).

    A blank field counts as not given; `lists` name the fields that may repeat (checkboxes). A refusal
    names the fields and the rule, never the value given.
    """
    fields = form(request)
    values: dict = {name: value for name, value in fields.items() if name != csrf.FIELD and value != ""}
    for name in lists:
        values[name] = [value for value in fields.getlist(name) if value != ""]
    try:
        return model.model_validate({**values, **extra})
    except ValidationError as invalid:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in invalid.errors()[:5]]
        raise InvalidInput("; ".join(problems) + "; nothing was changed") from None
