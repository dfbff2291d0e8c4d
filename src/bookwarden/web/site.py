"""The web pages joined to the app: static files, and every area's `pages.router`."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from bookwarden import areas
from bookwarden.web.templates import HERE

STATIC = "/static"


def install(app: FastAPI) -> None:
    app.mount(STATIC, StaticFiles(directory=HERE / "static"), name="static")
    for module in areas.modules("pages"):  # every area's `pages` module, in the manifest's order
        app.include_router(module.router)
