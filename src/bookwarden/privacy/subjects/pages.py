"""The patron portal's "download my package": the copy of my data built to answer my own access or portability
request, downloaded with my sign-in instead of the mailed link (which works too).

The portal's requests page lists the ready copies with their expiry (privacy/requests/pages.py); this page
serves one to the patron it is about, and to nobody else: another patron's package, or another institution's,
is not found (404); an expired one is gone (410), destroyed with its key by the hourly purge. Each download is
recorded as the link's download is (`subject_export.downloaded`, with `via: portal`).
"""

from __future__ import annotations

from uuid import UUID

from fastapi import Depends, Request
from fastapi.responses import StreamingResponse

from bookwarden.core.principal import Principal
from bookwarden.identity.accounts import service as accounts
from bookwarden.privacy.subjects import export as subject_export
from bookwarden.web.portal import PATRON
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import tenant_scope

router = PageRouter()


@router.get("/portal/packages/{package_id}", response_class=StreamingResponse)
def download_own_package(request: Request, package_id: UUID, principal: Principal = Depends(PATRON)):
    with tenant_scope(request, principal) as session:
        patron_id = accounts.own_patron_id(session, principal)
    download = subject_export.open_own_download(request.app.state.db, principal.tenant_id, patron_id, package_id)
    headers = {
        "Content-Disposition": f'attachment; filename="{download.filename}"',
        "Content-Length": str(download.size_bytes),
        "Cache-Control": "no-store",
    }
    return StreamingResponse(download.chunks, media_type=subject_export.MEDIA_TYPE, headers=headers)
