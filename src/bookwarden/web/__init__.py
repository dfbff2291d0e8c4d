"""The web pages' foundation: layout, static files, CSRF and session glue; each area brings its `pages.py`.

How an area adds pages (a `pages.py` beside its `routes.py`, found by name like `routes`: areas.py
`modules("pages")`; the app includes every `pages.router`, web/site.py):

    from fastapi import Depends, Request
    from fastapi.responses import RedirectResponse

    from bookwarden.core.permissions import Permission
    from bookwarden.core.principal import Principal
    from bookwarden.web.routing import PageRouter, form
    from bookwarden.web.session import requires, signed_in
    from bookwarden.web.templates import NavLink, navigation, render

    router = PageRouter()  # HTML by default, out of the OpenAPI document, forms checked (below)
    navigation(NavLink("Requests", "/console/requests", lambda p: p is not None and not p.is_operator))

    @router.get("/console/requests")
    def queue(request: Request, principal: Principal = Depends(requires(Permission.PRIVACY_REQUESTS_READ))):
        rows = service.queue(request.app.state.db, principal)      # the same service the API calls
        return render(request, "console/requests.html", title="Requests", rows=rows)

    @router.post("/console/requests/{request_id}/approve")
    def approve(request: Request, request_id: UUID, principal: Principal = Depends(requires(...))):
        fields = form(request)                                     # already CSRF-checked and screened
        service.approve(request.app.state.db, principal, request_id, fields.get("note", ""))
        return RedirectResponse("/console/requests", status_code=303)  # POST, then redirect, then GET

- **Pages** live in `<area>/pages.py`; their templates in `<area>/templates/<area-or-topic>/*.html`
  (found by name: web/templates.py), extending "base.html" (`{% block main %}`, `{% block head %}`
  for a page's own script). Names a template may use: `principal`, `csrf_field()`, `csrf_token`,
  `nav`, `path`, and whatever the page passes to `render(request, name, status_code=200, **context)`.
- **The signed-in person**: `Depends(signed_in)` (anyone signed in) or `Depends(requires(Permission.X))`
  (web/session.py); exactly one per page, or none for an open page (then say why in its docstring), and
  a line in tests/invariants/test_permission_table.py EXPECTED either way. `session.current(request)`
  gives the person or None without refusing. An operator reaches an institution only through an
  approved grant: `session.through_grant(request, principal, grant_id)`.
- **Forms**: every `<form method="post">` carries `{{ csrf_field() }}`; a route of a `PageRouter` refuses
  any other method than GET/HEAD whose token is missing or wrong (403 csrf-refused) before the page runs,
  and screens every field for payment data (web/routing.py). htmx requests send the token as a header
  (static/web.js). Read the fields with `form(request)`. Answer a POST with a 303 redirect.
- **Working in an institution**: `with session.tenant_scope(request, principal) as s:` (refused when the
  institution is suspended), then the service. A form refused by a service is shown again with
  `render_refusal(request, template, error, **context)` (its status, its words, Retry-After for a 429).
  A response that both sets a new session cookie and renders a form calls `session.session_changed`
  first, so the form's token matches the cookie it will come back with.
- **The patron portal**: pages declare `Depends(portal.PATRON)` and render with `portal.render_portal`,
  which adds the institution, the privacy notice in force and the cookie banner (web/portal.py).
- **Errors**: a `BookwardenError` a page does not catch becomes an error page with the problem's status
  and words, recorded in the trail as the API records it (web/errors.py, through api/problems.py); a 401
  on a read sends the reader to the sign-in page and back. Catch an error to show it on the form instead.
- **Rules every page keeps** (the browser tests run axe-core on each): no inline script, no inline
  style, no `style=` attribute (the Content-Security-Policy refuses them: api/headers.py); every input has
  a `<label>`; reading works with JavaScript off; static files are this site's own (`web/static/`, one
  folder, a file named by area), never a CDN's.
- **Paths**: `/` start page (web/pages.py), `/signin...` (identity/signin/pages.py), `/operator/signin`
  (identity/operators/pages.py), `/portal...` (the patron portal: identity, privacy, library pages),
  `/console...` (an institution's console), `/operator...` (the operators' console).
"""
