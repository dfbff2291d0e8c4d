"""The one manifest: every area of Bookwarden, listed once, lowest layer first.

An area is a package. What it brings is found by module name inside it and its sub-packages,
so adding an area is one line here plus the area's own folder, and adding a sub-area is a folder:

- `models`    its tables (imported before any session is used, so the schema is whole);
- `approvals` the maker-checker kinds it defines (`access.approvals.kinds.register`);
- `hooks`     what it registers in a lower layer's registry (the outbox's optional-mail policy,
              the guards a patron's record is changed under...);
- `jobs`      its job handlers and `declare_schedules(db)`, called by the worker at start;
- `routes`    `router`: its JSON API, included by the FastAPI app;
- `pages`     `router` (a `web.routing.PageRouter`): its HTML pages, included by the app (web/site.py);
- `cli`       `group` (a Typer app with a name) or `commands` (a Typer app merged into the root):
              its console commands.

Lower layers never import this module: they own registries (approval kinds, commit hooks, mail
policies, patron-change guards, job handlers) that the areas fill when `load()` imports them.
Every entry point (the app, the worker, the console, the tests) calls `load()` first; the
registries whose absence would weaken a control refuse to work until it has run.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType

from bookwarden.db import base

AREAS: tuple[str, ...] = (
    "bookwarden.db",
    "bookwarden.crypto",
    "bookwarden.audit",
    "bookwarden.jobs",
    "bookwarden.notify",
    "bookwarden.tenancy",
    "bookwarden.access",
    "bookwarden.identity",
    "bookwarden.library",
    "bookwarden.privacy",
    "bookwarden.monitor",
    "bookwarden.backup",
    "bookwarden.incidents",
    "bookwarden.reports",
    "bookwarden.web",
    "bookwarden.api",
)

# What `load()` imports for their side effects: the registrations every process needs.
REGISTERING = ("models", "approvals", "hooks", "jobs")


def _submodules(area: str) -> list[str]:
    """Every module and package of `area`, the area's own first, then its sub-packages' by name."""
    package = importlib.import_module(area)
    # The loader imports what the manifest names, nothing else: walk_packages only lists names here
    # (it imports sub-packages' __init__ to look inside them, which hold docstrings only).
    names = [info.name for info in pkgutil.walk_packages(package.__path__, prefix=f"{area}.")]
    return sorted(names, key=lambda name: (name.count("."), name))


@cache
def modules(kind: str) -> tuple[ModuleType, ...]:
    """The `kind` modules (models, routes, pages, cli, jobs, approvals) of every area, in manifest order."""
    found = []
    for area in AREAS:
        for name in _submodules(area):
            if name.rsplit(".", 1)[-1] == kind:
                # Function-level import by design: this is the manifest's loader.
                found.append(importlib.import_module(name))
    return tuple(found)


@cache
def load() -> None:
    """Import every area's tables, approval kinds, hooks and jobs (idempotent); then mark the schema whole."""
    for kind in REGISTERING:
        modules(kind)
    base.schema_loaded()


def routers() -> list:
    return [module.router for module in modules("routes")]
