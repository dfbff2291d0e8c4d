"""`bookwarden privacy`: access packages, erasure certificates, records of processing,
disclosures, data-subject requests, DPO escalations, the privacy notice."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from bookwarden.audit import signing
from bookwarden.console import (
    Grant,
    Verdict,
    choice,
    command,
    connect,
    console_principal,
    fail,
    institution_id,
    uuid_option,
)
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import Permission
from bookwarden.db.session import tenant_session
from bookwarden.privacy.disclosures import service as disclosures
from bookwarden.privacy.escalations import service as dpo_escalations
from bookwarden.privacy.notices import service as notices
from bookwarden.privacy.records import service as records
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.subjects import erasure
from bookwarden.privacy.subjects import export as subject_export

privacy_app = typer.Typer(name="privacy", help="Privacy: records of processing.", no_args_is_help=True)
groups = (privacy_app,)


# -- privacy ---------------------------------------------------------------------------------


certificate_app = typer.Typer(help="Erasure certificates: show and verify.", no_args_is_help=True)
privacy_app.add_typer(certificate_app, name="certificate")


@command(privacy_app, "export", Permission.PRIVACY_REQUESTS_HANDLE)
def privacy_export(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    patron: Annotated[str, typer.Option(help="the patron's id")],
    request: Annotated[str | None, typer.Option(help="the data-subject request it answers")] = None,
    approval: Annotated[str | None, typer.Option(help="the approved request for it (outside a request)")] = None,
    grant: Grant = None,
) -> None:
    """Build a patron's access package; print its id, expiry and download link (shown once, valid 7 days).

    With --request, for the data-subject request it answers. Without, it takes two people: the first run
    asks for it, another holder of privacy.requests.handle approves (POST /api/v1/approvals/{id}/approve),
    and a run with --approval builds it, once; its link is downloaded once."""

    patron_id = uuid_option("--patron", patron)
    request_id = uuid_option("--request", request)
    approval_id = uuid_option("--approval", approval)
    with tenant_session(connect(), institution_id(tenant)) as session:
        if request_id is None and approval_id is None:
            asked = subject_export.ask(session, console_principal(), patron_id)
            print(f"approval request {asked.id}: waiting for a second holder of privacy.requests.handle; "
                  f"then run again with --approval {asked.id}")  # fmt: skip
            return
        package = subject_export.build_for_staff(
            session, console_principal(), patron_id, request_id=request_id, approval_id=approval_id
        )
    print(json.dumps({"id": str(package.id), "patron_id": str(package.patron_id), "records": package.record_count,
                      "bytes": package.size_bytes, "expires_at": package.expires_at.isoformat(),
                      "download_path": package.download_path}, indent=2))  # fmt: skip


@command(certificate_app, "show", Permission.PRIVACY_REQUESTS_HANDLE)
def privacy_certificate_show(
    certificate: Annotated[str, typer.Argument(help="the certificate's id")],
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    grant: Grant = None,
) -> None:
    """Print an erasure certificate: its signed statement, the signature and the key that made it."""

    key = signing.load_signing_key(get_settings())
    with tenant_session(connect(), institution_id(tenant)) as session:
        found = erasure.view_certificate(session, console_principal(), uuid_option("CERTIFICATE", certificate))
        print(json.dumps(erasure.document(found, key.public), indent=2, sort_keys=True))


@command(certificate_app, "verify", Permission.PRIVACY_REQUESTS_HANDLE)
def privacy_certificate_verify(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    certificate: Annotated[str | None, typer.Argument(help="a stored certificate's id")] = None,
    file: Annotated[Path | None, typer.Option(help="a certificate as `show` or the API gave it (JSON)")] = None,
    public_key: Annotated[list[str] | None, typer.Option(help="also trust this key (base64); repeatable")] = None,
    grant: Grant = None,
) -> None:
    """Check an erasure certificate's signature against the platform's key. Exit 0 valid, 1 not."""

    if (certificate is None) == (file is None):
        raise fail("give a certificate id or --file, one of them")
    pinned = [signing.decode_public_key(k) for k in public_key or []]
    trusted = [*signing.trusted_public_keys(get_settings()), *pinned]
    with tenant_session(connect(), institution_id(tenant)) as session:
        if file is not None:
            try:
                document = json.loads(file.read_text())
            except (OSError, ValueError) as exc:
                raise fail(f"cannot read a certificate from {file}: {exc}") from None
            if not isinstance(document, dict):
                raise fail(f"{file} holds no certificate")
            verdict = erasure.verify_document(document, trusted)
            erasure.record_verification(session, console_principal(), verdict)
        else:
            _, verdict = erasure.verify_stored(session, uuid_option("CERTIFICATE", certificate), trusted)
    if verdict.valid:
        print(f"certificate {verdict.certificate_id}: valid, signed by key {verdict.key_id}")
        return
    print(f"certificate {verdict.certificate_id}: NOT VALID: {verdict.problem}")
    raise Verdict(1)


@command(privacy_app, "records", Permission.PRIVACY_RECORDS_READ)
def privacy_records(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    fmt: Annotated[str, typer.Option("--format", help="json or csv (one row per category)")] = "json",
    grant: Grant = None,
) -> None:
    """An institution's records of processing (GDPR art. 30), generated from the personal-data registry."""
    chosen = choice("--format", fmt, records.RecordsFormat)
    db = connect()
    tenant_id = institution_id(tenant)
    with tenant_session(db, tenant_id) as session:
        body = records.export(session, console_principal(), chosen)  # recorded in the institution's trail
    sys.stdout.write(body if body.endswith("\n") else body + "\n")


@command(privacy_app, "disclosures", Permission.PRIVACY_DISCLOSURES_MANAGE)
def privacy_disclosures(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    patron: Annotated[str | None, typer.Option(help="only the disclosures naming this patron id")] = None,
    grant: Grant = None,
) -> None:
    """An institution's disclosures of personal data to third parties, newest first, as JSON lines:
    recipient, kind, purpose, basis, categories and counts (never who; the API shows that)."""

    patron_id = uuid_option("--patron", patron)
    db = connect()
    tenant_id = institution_id(tenant)
    with tenant_session(db, tenant_id) as session:
        found = disclosures.list_disclosures(session, console_principal(), patron_id=patron_id)
        lines = [json.dumps(disclosures.summary(d), sort_keys=True) for d in found]
    sys.stdout.write("".join(line + "\n" for line in lines))


# -- data-subject requests ------------------------------------------------------------------

privacy_requests_app = typer.Typer(help="Data-subject requests: an institution's queue.", no_args_is_help=True)
privacy_app.add_typer(privacy_requests_app, name="requests")


def _request_row(found) -> dict[str, Any]:
    # States, kinds, ids and dates: the console shows no corrections or reasons (sealed; the API opens them).
    return found.model_dump(mode="json")


@command(privacy_requests_app, "list", Permission.PRIVACY_REQUESTS_HANDLE)
def privacy_requests_list(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    view: Annotated[str, typer.Option(help="open, overdue, on_legal_hold, closed or all")] = "open",
    grant: Grant = None,
) -> None:
    """An institution's data-subject requests, the most urgent first, as JSON lines (no personal values)."""

    chosen = choice("--view", view, requests.QueueView)
    db = connect()
    tenant_id = institution_id(tenant)
    with tenant_session(db, tenant_id) as session:
        found = requests.queue(session, console_principal(), chosen)  # recorded in the institution's trail
    sys.stdout.write("".join(json.dumps(_request_row(r), sort_keys=True) + "\n" for r in found))


@command(privacy_requests_app, "show", Permission.PRIVACY_REQUESTS_HANDLE)
def privacy_requests_show(
    request_id: Annotated[str, typer.Argument(help="the request's id")],
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    grant: Grant = None,
) -> None:
    """One data-subject request: kind, state, deadlines, decisions and holds (no corrections or reasons)."""

    chosen = uuid_option("request_id", request_id)
    db = connect()
    tenant_id = institution_id(tenant)
    with tenant_session(db, tenant_id) as session:
        found, _ = requests.read(session, console_principal(), chosen, opened=False)
    sys.stdout.write(json.dumps(_request_row(found), sort_keys=True, indent=2) + "\n")


privacy_escalations_app = typer.Typer(
    help="The platform DPO's oversight: late requests and complaints of every institution.", no_args_is_help=True
)
privacy_app.add_typer(privacy_escalations_app, name="escalations")


@command(privacy_escalations_app, "list", Permission.PLATFORM_PRIVACY_OVERSIGHT)
def privacy_escalations_list(
    view: Annotated[str, typer.Option(help="unacknowledged (the worklist), open or all")] = "unacknowledged",
) -> None:
    """Escalations to the DPO across institutions, the longest overdue first, as JSON lines (metadata only)."""

    chosen = choice("--view", view, dpo_escalations.View)
    found = dpo_escalations.listing(connect(), console_principal(), chosen)
    sys.stdout.write("".join(json.dumps(e.model_dump(mode="json"), sort_keys=True) + "\n" for e in found))


@command(privacy_escalations_app, "acknowledge", Permission.PLATFORM_PRIVACY_OVERSIGHT)
def privacy_escalations_acknowledge(
    escalation_id: Annotated[str, typer.Argument(help="the escalation's id")],
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
) -> None:
    """Take an escalation up; the institution sees it in its own audit trail."""

    chosen = uuid_option("escalation_id", escalation_id)
    found = dpo_escalations.acknowledge(connect(), console_principal(), tenant, chosen)
    sys.stdout.write(json.dumps(found.model_dump(mode="json"), sort_keys=True, indent=2) + "\n")


# -- the privacy notice ----------------------------------------------------------------------

privacy_notice_app = typer.Typer(
    help="An institution's privacy notice: publish and list versions.", no_args_is_help=True
)
privacy_app.add_typer(privacy_notice_app, name="notice")


@command(privacy_notice_app, "publish", Permission.PRIVACY_NOTICE_MANAGE)
def privacy_notice_publish(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    version: Annotated[str, typer.Option(help="the new version's label (e.g. 2027-01)")],
    file: Annotated[Path, typer.Option(help="the notice's text (UTF-8)", exists=True, dir_okay=False)],
    material: Annotated[bool, typer.Option(help="a material change: every patron with an address is mailed")] = False,
    summary: Annotated[str | None, typer.Option(help="what changed (required with --material)")] = None,
    last_updated: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help='the "last updated" date it states; default today')
    ] = None,
    grant: Grant = None,
) -> None:
    """Publish a new version of an institution's privacy notice: in force at once; material: patrons are mailed."""

    notice_text = file.read_text(encoding="utf-8")
    with tenant_session(connect(), institution_id(tenant)) as session:
        found = notices.publish(
            session,
            console_principal(),
            version=version,
            notice_text=notice_text,
            material=material,
            change_summary=summary,
            last_updated=last_updated.date() if last_updated is not None else None,
        )
    sys.stdout.write(json.dumps(found.model_dump(mode="json"), sort_keys=True, indent=2) + "\n")


@command(privacy_notice_app, "list", Permission.PRIVACY_NOTICE_MANAGE)
def privacy_notice_list(
    tenant: Annotated[str, typer.Option(help="institution id or slug")], grant: Grant = None
) -> None:
    """An institution's notice versions, newest (in force) first, as JSON lines (without their text)."""

    with tenant_session(connect(), institution_id(tenant)) as session:
        found = notices.versions(session, console_principal())
    sys.stdout.write("".join(json.dumps(v.model_dump(mode="json"), sort_keys=True) + "\n" for v in found))
