# `make run` and `make test` do all set-up from a fresh clone: virtual env, install, database.
VENV   := .venv
PY     := $(VENV)/bin/python
BW     := $(VENV)/bin/bookwarden
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint bench-quick clean

# Debian packages the code needs: xmlsec1 (SAML signatures, through pysaml2), wamerican (the
# dictionary words refused as passwords) and chromium (the browser tests drive it headless through
# Playwright) and pgbouncer (tests/db/test_pgbouncer.py runs the service through it in transaction
# mode). Installed only when missing (CI runs as root).
SYSTEM_PACKAGES := xmlsec1 wamerican chromium pgbouncer
SYSTEM_FILES    := /usr/bin/xmlsec1 /usr/share/dict/american-english /usr/bin/chromium /usr/sbin/pgbouncer

$(STAMP): pyproject.toml
	@for f in $(SYSTEM_FILES); do test -e $$f || missing=1; done; \
	  if [ -n "$$missing" ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES); fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Embedded PostgreSQL under ./var (or BOOKWARDEN_DATABASE_URL), migrations, demo data, then the
# worker in the background and the API in the foreground on 127.0.0.1:8000. Ctrl-C stops both.
run: install
	$(BW) db migrate
	$(BW) demo
	@trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	  $(BW) worker & worker=$$!; \
	  $(BW) serve --host 127.0.0.1 --port 8000

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The whole suite against a real PostgreSQL (an embedded one the tests start and stop themselves).
# One pytest-xdist worker per core, each with its own embedded server; worksteal evens out the long tests.
test: install lint
	$(PY) -m pytest -n auto --dist worksteal

bench-quick: install
	$(PY) -m bench isolation_overhead --quick

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
