"""Browser tests: the app served by a real uvicorn on 127.0.0.1, driven by headless Chromium (Playwright).

One browser for the whole session (starting Chromium is the slow part); a fresh context (cookies,
storage) for each test. Every page a test opens may be checked with `axe` (axe-core, vendored in
vendor/: no serious or critical violation) and photographed with `shot` into test-artifacts/<test>/.
A page that breaks the Content-Security-Policy or throws a script error fails its test: the
browser's console is read for both.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bookwarden.api.app import create_app
from bookwarden.core.config import Settings
from tests.helpers import served

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SERIOUS = ("serious", "critical")


@pytest.fixture(scope="session")
def chromium():
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site(committed_db, home):
    """The app, served for real: `site.url`, `site.db`, `site.settings`."""
    settings = Settings(home=home)
    app = create_app(committed_db, settings)
    with served(app, settings) as url:
        yield Site(url, committed_db, settings, app)


class Site:
    def __init__(self, url: str, db, settings: Settings, app) -> None:
        self.url, self.db, self.settings, self.app = url, db, settings, app


@pytest.fixture
def page(chromium, request):
    """A page in a fresh browser context; the test fails on a script error or a policy violation."""
    context = chromium.new_context(viewport={"width": 1100, "height": 800}, locale="en-GB")
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    yield page
    context.close()
    # A 4xx the test provoked on purpose logs "Failed to load resource"; everything else is a fault.
    faults = [p for p in problems if not p.startswith("Failed to load resource")]
    assert faults == [], f"the browser reported: {faults}"


@pytest.fixture
def axe(request):
    """`axe(page)`: run axe-core on the page as it is; fail on any serious or critical violation."""
    source = AXE.read_text()

    def check(page) -> None:
        # Evaluated through the DevTools protocol, which the page's Content-Security-Policy does not
        # govern: the page's own policy stays on while axe looks at it.
        page.evaluate(source)
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        found = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]
            if v["impact"] in SERIOUS
        ]
        assert found == [], f"axe-core on {page.url}: {found}"

    return check


@pytest.fixture
def shot(request):
    """`shot(page, "name")`: a full-page screenshot in test-artifacts/<test>/NN-name.png."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    taken = iter(range(1, 100))

    def take(page, name: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{next(taken):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
