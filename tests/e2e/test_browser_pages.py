"""Every page, in a real browser: axe-core finds no serious or critical violation, the page breaks no
Content-Security-Policy rule and throws no script error (the `page` fixture), and with JavaScript off
the portal still reads.

The pages are found from the app (every GET route of every `pages` module), so a page added later is
checked here without a change: a page that needs a signed-in person is read as a signed-in patron
(pages for staff or operators then show their refusal, or send to their sign-in page: both checked).
"""

from __future__ import annotations

import re

import pytest

from bookwarden.web import demo_logins
from bookwarden.web.routing import PageRoute
from tests.e2e.people import PASSWORD, patron, publish_notice, slug_of
from tests.invariants.test_security_headers import _routes


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    from bookwarden.identity import passwords

    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _page_paths(app, slug: str) -> list[str]:
    paths = set()
    for route in _routes(app.routes):
        if isinstance(route, PageRoute) and "GET" in route.methods:
            path = route.path.replace("{tenant_slug}", slug)
            if "{" not in path:  # a page about one record is reached from its list, checked by its own tests
                paths.add(path)
    return sorted(paths)


def test_every_page_is_accessible(site, committed_tenant, page, axe, shot):
    tenant_id = committed_tenant()
    slug = slug_of(site.db, tenant_id)
    publish_notice(site.db, tenant_id)
    patron(site.db, tenant_id, "cleo")
    # As on a demo database (`make run`): the start page lists the demo's sign-ins.
    demo_logins.write(site.settings, [demo_logins.DemoLogin(slug, "patron (portal)", "cleo", PASSWORD)])
    paths = _page_paths(site.app, slug)
    assert {"/", "/signin", "/portal", "/portal/requests", "/register"} <= set(paths)

    page.goto(f"{site.url}/")
    axe(page)
    shot(page, "start")
    for path in ["/signin", "/register", "/signin/forgot", "/operator/signin", f"/privacy-notice/{slug}"]:
        page.goto(f"{site.url}{path}")
        axe(page)
    shot(page, "privacy-notice")

    # By keyboard alone: the skip link first, then the form's fields in order, sent with Enter.
    page.goto(f"{site.url}/signin")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_label("Institution").focus()
    page.keyboard.type(slug)
    page.keyboard.press("Tab")
    page.keyboard.type("cleo")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/portal$"))
    for path in paths:
        answer = page.goto(f"{site.url}{path}")
        if answer.headers.get("content-type", "").startswith("text/html"):  # a stylesheet is no page to read
            axe(page)
    page.goto(f"{site.url}/portal/preferences")
    shot(page, "preferences")


def test_the_portal_reads_with_javascript_off(site, committed_tenant, chromium, shot):
    tenant_id = committed_tenant()
    slug = slug_of(site.db, tenant_id)
    publish_notice(site.db, tenant_id)
    patron(site.db, tenant_id, "dora", name="Dora Reader")
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{site.url}/signin")
        page.get_by_label("Institution").fill(slug)
        page.get_by_label("Username").fill("dora")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/portal$"))
        assert "Dora Reader" in page.locator("main").inner_text()
        page.get_by_role("link", name="My posts").click()
        page.get_by_role("button", name=re.compile("Delete the post")).click()  # no confirm() without JS
        assert "Your post is deleted" in page.locator("main").inner_text()
        shot(page, "posts-without-javascript")
    finally:
        context.close()
