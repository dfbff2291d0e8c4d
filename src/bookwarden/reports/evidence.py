"""Live evidence for every promise: each control's check run now, the whole signed, dated, downloadable.

The document is RFC 8785 canonical JSON behind the prefix `bookwarden-evidence-v1\n`, signed with the
platform's Ed25519 key (audit/signing.py, as backup manifests and audit checkpoints are), so an institution
can attach it to a vendor assessment and anyone holding the public key (`bookwarden audit public-key`) can
check that it came from the platform unaltered (`verify`). The readable page (render.py) shows the same lines.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bookwarden.audit import record as audit
from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.audit.signing import key_id, load_signing_key
from bookwarden.core.canonical import canonical_json
from bookwarden.core.config import Settings
from bookwarden.core.errors import InvalidInput
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database, tenant_session
from bookwarden.reports import controls as _builtin  # noqa: F401 - registers the built-in controls
from bookwarden.reports.registry import CONTROLS, Finding, Status
from bookwarden.reports.security import scope_for

FORMAT = "bookwarden-evidence-v1"
PREFIX = b"bookwarden-evidence-v1\n"
STATEMENT = "Cloud Security and Privacy Statement, version 2.2 (seed/cloud-security-and-privacy-statement.txt)"


def build(
    db: Database, actor: Principal, settings: Settings, tenant_id=None, now: datetime | None = None
) -> dict[str, Any]:
    """Every control checked now for the actor's institution (or the one named, for an operator; or the
    platform), signed. Recorded in that scope's chain, with the controls that fail."""
    scope = scope_for(db, actor, tenant_id)
    now = now or datetime.now(UTC)
    lines = []
    for found in CONTROLS.values():
        finding = (
            found.check(db, scope, now, settings) if found.check else Finding(Status.UNAVAILABLE, found.unavailable)
        )
        lines.append(
            {
                "key": found.key,
                "promise": found.promise,
                "control": found.control,
                "assessment": found.assessment,
                "area": found.area,
                "status": finding.status.value,
                "detail": finding.detail,
                "facts": finding.facts,
            }
        )
    failing = [line["key"] for line in lines if line["status"] == Status.FAILS]
    document = {
        "format": FORMAT,
        "statement": STATEMENT,
        "scope": scope.as_json(),
        "checked_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "holds": not failing,
        "failing": failing,
        "controls": lines,
    }
    signed = sign(document, settings)
    with tenant_session(db, scope.tenant_id or PLATFORM_CHAIN) as session:
        audit.record(
            session,
            Action.EVIDENCE_BUILT,
            # Building the evidence succeeded whatever it found: what it found is in the details (and the document).
            details={"controls": len(lines), "holds": not failing, "failing": failing, "key_id": signed["key_id"]},
            actor=actor,
        )
    return signed


def sign(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    key = load_signing_key(settings)
    signature = key.sign(PREFIX + canonical_json(document))
    return {"evidence": document, "key_id": key.key_id, "signature": base64.b64encode(signature).decode()}


def verify(signed: dict[str, Any], trusted: list[bytes]) -> dict[str, Any]:
    """The document, once its signature verifies under one of the `trusted` public keys; InvalidInput if not."""
    try:
        document, signature, signer = signed["evidence"], base64.b64decode(signed["signature"]), signed["key_id"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed evidence document ({exc})") from None
    keys = {key_id(k): k for k in trusted}
    if signer not in keys:
        raise InvalidInput(f"signed by key {signer}, which is not trusted")
    try:
        Ed25519PublicKey.from_public_bytes(keys[signer]).verify(signature, PREFIX + canonical_json(document))
    except InvalidSignature:
        raise InvalidInput(f"the evidence's signature does not verify under key {signer}") from None
    return document
