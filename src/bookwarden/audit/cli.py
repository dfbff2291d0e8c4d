"""`bookwarden audit` and `bookwarden usage`: the trail (search, checkpoints, proofs,
verification, bundles) and usage metering."""

from __future__ import annotations

import csv
import json
import sys
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bookwarden.audit import bundle, checkpoints, search, signing, verify
from bookwarden.audit import record as audit
from bookwarden.audit.events import PLATFORM_CHAIN, Action, Outcome
from bookwarden.audit.record import current
from bookwarden.console import (
    Grant,
    Verdict,
    binary_output,
    choice,
    command,
    connect,
    console_principal,
    err,
    fail,
    institution_id,
    out,
    record_action,
    through_grant,
    time_option,
    uuid_option,
)
from bookwarden.core.config import get_settings
from bookwarden.core.csv_safety import spreadsheet_safe
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.library import usage as metering
from bookwarden.tenancy import service

audit_app = typer.Typer(name="audit", help="The audit trail: verify, export, search.", no_args_is_help=True)
usage_app = typer.Typer(
    name="usage", help="Usage metering for charges, derived from the audit trail.", no_args_is_help=True
)
groups = (
    audit_app,
    usage_app,
)


# -- audit -----------------------------------------------------------------------------------


@command(audit_app, "search", Permission.AUDIT_READ)
def audit_search(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    actor_id: Annotated[str | None, typer.Option(help="who acted: token, account or operator id")] = None,
    actor_kind: Annotated[str | None, typer.Option(help="api_token, account, operator_token, system...")] = None,
    action: Annotated[str | None, typer.Option(help='an action, or a prefix ending in "." (patron.)')] = None,
    target_kind: Annotated[str | None, typer.Option(help="patron, loan, account...")] = None,
    target_id: Annotated[str | None, typer.Option(help="id of the record or account acted on")] = None,
    outcome: Annotated[str | None, typer.Option(help="succeeded, denied or failed")] = None,
    since: Annotated[str | None, typer.Option("--from", help="ISO 8601 time, inclusive (UTC if no offset)")] = None,
    until: Annotated[str | None, typer.Option("--to", help="ISO 8601 time, exclusive (UTC if no offset)")] = None,
    order: Annotated[str, typer.Option(help="newest or oldest first")] = "newest",
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    output: Annotated[Path | None, typer.Option(help="write here (mode 0600) instead of stdout")] = None,
    grant: Grant = None,
) -> None:
    """Every event of an institution's audit trail matching the filters, as JSON lines or CSV (streamed)."""

    query = search.EventQuery(
        actor_id=uuid_option("--actor-id", actor_id),
        actor_kind=actor_kind,
        action=action,
        target_kind=target_kind,
        target_id=uuid_option("--target-id", target_id),
        outcome=choice("--outcome", outcome, Outcome) if outcome else None,
        since=time_option("--from", since),
        until=time_option("--to", until),
        order=choice("--order", order, search.Order),
    )
    db = connect()
    tenant_id = institution_id(tenant)
    chunks = search.export(
        db,
        lambda: tenant_session(db, tenant_id),
        query,
        choice("--format", fmt, search.ExportFormat),
        audit.current(),
        Action.AUDIT_SEARCHED,
    )
    # closing(): a reader that stops early (| head) still leaves the search's event, with the rows sent.
    with closing(chunks), binary_output(output) as sink:
        for chunk in chunks:
            sink.write(chunk)
    if output is not None:
        err.print(f"written to {output}")


# -- audit: checkpoints, proofs, verification, bundles ---------------------------------------


def _chain_id(ref: str):
    """An institution's id or slug, or "platform" for the platform's own chain."""
    if ref == "platform":
        return PLATFORM_CHAIN
    with platform_session(connect()) as session:
        return service.get_tenant(session, ref).id


_EVERY_CHAIN = 'institution id or slug, or "platform"; default: every chain'


@command(audit_app, "public-key", Permission.PLATFORM_AUDIT_VERIFY)
def audit_public_key() -> None:
    """Print the public key that signs audit checkpoints (base64, raw Ed25519) and its key id."""
    key = signing.load_signing_key(get_settings())
    record_action(Action.AUDIT_KEY_VIEWED, key_id=key.key_id)
    print(signing.encode_public_key(key.public))
    print(f"key id {key.key_id}")


@command(audit_app, "rotate-signing-key", Permission.PLATFORM_KEYS_ROTATE)
def audit_rotate_signing_key() -> None:
    """A new key signs checkpoints and erasure certificates from now on; the old public key is kept as
    retired (<home>/audit-signing-retired.pub), so what it signed still verifies. Key-file mode only."""
    old, new = signing.rotate_signing_key(get_settings())  # refused (nothing written) in environment-key mode
    record_action(Action.KEY_ROTATED, key="audit_signing", retired_key_id=old, key_id=new)
    err.print(f"audit signing key rotated: key {new} signs from now on; key {old} is retired and still trusted")
    err.print("give auditors the new public key: bookwarden audit public-key")


@command(audit_app, "checkpoint", Permission.PLATFORM_SERVICES_RUN)
def audit_checkpoint(
    tenant: Annotated[str | None, typer.Option(help=_EVERY_CHAIN)] = None,
) -> None:
    """Seal a chain (or every chain) now in a signed Merkle checkpoint, whatever the schedule says."""
    key = signing.load_signing_key(get_settings())
    db = connect()
    if tenant is None:
        made = checkpoints.checkpoint_all(db, key, every_events=None, every=None, actor=current().principal)
    else:
        with tenant_session(db, _chain_id(tenant)) as session:
            made = [c for c in [checkpoints.make_checkpoint(session, key)] if c is not None]
    for checkpoint in made:
        out.print(
            f"tenant {checkpoint.tenant_id}: checkpoint at size {checkpoint.tree_size}, "
            f"root {checkpoint.root_hash.hex()}, key {checkpoint.key_id}"
        )
    if not made:
        err.print("nothing new to seal")


@command(audit_app, "prove", Permission.PLATFORM_AUDIT_VERIFY)
def audit_prove(
    tenant: Annotated[str, typer.Option(help='institution id or slug, or "platform"')],
    seq: Annotated[int | None, typer.Option(min=1, help="inclusion proof of this event")] = None,
    size: Annotated[int | None, typer.Option(min=1, help="against this checkpoint (default: the newest)")] = None,
    old: Annotated[int | None, typer.Option("--from", min=1, help="consistency proof from this checkpoint")] = None,
    new: Annotated[int | None, typer.Option("--to", min=1, help="... to this checkpoint size")] = None,
) -> None:
    """Print, as JSON, an inclusion proof (--seq) or a consistency proof between checkpoints (--from, --to)."""

    if (seq is None) == (old is None and new is None) or (seq is None and (old is None or new is None)):
        raise fail("give either --seq N [--size S], or --from SIZE --to SIZE")
    chain = _chain_id(tenant)
    with tenant_session(connect(), chain) as session:
        if seq is not None:
            proof = checkpoints.inclusion_proof(session, seq, size)
        else:
            proof = checkpoints.consistency_proof(session, old, new)
    record_action(
        Action.AUDIT_PROVED, ("audit_chain", chain), tenant_id=chain, seq=seq, tree_size=size, old=old, new=new
    )
    print(json.dumps(proof, indent=2))


@command(audit_app, "verify", Permission.PLATFORM_AUDIT_VERIFY)
def audit_verify(
    tenant: Annotated[str | None, typer.Option(help=_EVERY_CHAIN)] = None,
    since: Annotated[
        int | None,
        typer.Option(min=1, help="start at this checkpoint size (its signature and frontier); check only later events"),
    ] = None,
    public_key: Annotated[list[str] | None, typer.Option(help="also trust this key (base64); repeatable")] = None,
) -> None:
    """Check each chain: seq, body digests, hash links, head, signed checkpoints. Exit 0 clean, 1 tampered.

    The first broken event of a chain is named: tenant, seq, event id and what is wrong.
    """
    if since is not None and tenant is None:
        raise fail("--since needs --tenant: checkpoint sizes belong to one chain")
    pinned = [signing.decode_public_key(k) for k in public_key or []]
    keys = signing.TrustedKeys(*signing.trusted_public_keys(get_settings()), *pinned)
    db = connect()
    chains = [_chain_id(tenant)] if tenant is not None else checkpoints.chain_ids(db)
    tampered = False
    for chain in chains:
        report = verify.verify_chain(db, chain, keys, since)
        for note in report.notes:
            err.print(f"tenant {chain}: {note}")
        print(report.summary(), flush=True)
        tampered |= not report.clean
        if not verify.record_verdict(db, chain, report):
            # A tampered chain may refuse appends (a forged row sits where the next event goes): the
            # verdict above stands.
            err.print("[red]warning:[/red] the audit.verified event was not recorded")
        err.print(f"{report.events:,} events in {report.seconds:.2f} s ({report.rate:,.0f}/s)")
    if tampered:
        raise Verdict(1)


@command(audit_app, "export", Permission.PLATFORM_AUDIT_VERIFY)
def audit_export(
    tenant: Annotated[str, typer.Option(help='institution id or slug, or "platform"')],
    output: Annotated[Path, typer.Option(help="bundle file to write (.tar.gz, mode 0600)")],
    grant: Grant = None,
) -> None:
    """Write a chain's bundle: events as OCSF-shaped JSON lines, signed checkpoints, the public key, a manifest.

    An institution's events are its data: their bundle needs a grant (scope audit); the platform's own
    chain does not. `bookwarden audit verify-bundle FILE` checks it anywhere, with no database.
    """
    chain = _chain_id(tenant)
    if chain != PLATFORM_CHAIN:
        through_grant(chain, grant, Permission.AUDIT_VERIFY)
    summary = bundle.export_bundle(connect(), chain, output, signing.trusted_public_keys(get_settings()))
    record_action(
        Action.AUDIT_EXPORTED,
        ("audit_chain", chain),
        tenant_id=chain,
        format="bundle",
        events=summary.events,
        first_seq=summary.first_seq,
        last_seq=summary.last_seq,
    )
    err.print(
        f"{summary.events:,} events (seq {summary.first_seq}..{summary.last_seq}) and "
        f"{summary.checkpoints} checkpoints written to {output}"
    )


@audit_app.command("verify-bundle")
def audit_verify_bundle(
    file: Annotated[Path, typer.Argument(help="a bundle written by bookwarden audit export")],
    public_key: Annotated[
        list[str] | None,
        typer.Option(
            help="trust only these keys (base64, from `bookwarden "
            "audit public-key`); repeatable; default: the "
            "bundle's own"
        ),
    ] = None,
) -> None:
    """Verify a bundle offline: chain, checkpoints, signatures, OCSF fields. Exit 0 clean, 1 tampered.

    Needs no database and no permission (declares none, records nothing): it reads only the file,
    so an auditor runs it on any machine.
    """
    pinned = [signing.decode_public_key(k) for k in public_key] if public_key else None
    report, notes = bundle.verify_bundle(file, pinned)
    for note in notes:
        err.print(note)
    print(report.summary())
    err.print(f"{report.events:,} events in {report.seconds:.2f} s ({report.rate:,.0f}/s)")
    if not report.clean:
        raise typer.Exit(1)


# Commands that must run with no database at all, so declare no permission and leave no event (an
# auditor's machine has no Bookwarden database to check or record against), each with its reason.
OFFLINE = {
    ("audit", "verify-bundle"): "verifies a bundle file anywhere, trusting only the file and a pinned key",
}


# -- usage -----------------------------------------------------------------------------------


@command(usage_app, "report", Permission.PLATFORM_USAGE_READ)
def usage_report(
    tenant: Annotated[str | None, typer.Option(help="institution id or slug; default: every institution")] = None,
    month: Annotated[str | None, typer.Option(help="YYYY-MM, calendar month in UTC; default: this month")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
) -> None:
    """API calls, events, records held and storage bytes per institution for one month (for charges).

    API calls and events are the month's, from the audit trail; records and bytes are as of now.
    """

    if fmt not in ("table", "json", "csv"):
        raise fail(f"--format: {fmt!r} is none of table, json, csv")
    usages = metering.report(connect(), console_principal(), month or metering.current_month(), tenant)
    if fmt == "json":
        print(json.dumps([{"slug": slug, **usage.as_dict()} for slug, usage in usages], indent=2))
    elif fmt == "csv":
        tables = metering.table_names()
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([*USAGE_COLUMNS, *(f"{t}_{m}" for t in tables for m in ("rows", "bytes"))])
        for slug, usage in usages:
            row = usage.as_dict()
            per_table = [row["tables"][t][m] for t in tables for m in ("rows", "bytes")]
            writer.writerow(spreadsheet_safe([slug, *(row[c] for c in USAGE_COLUMNS[1:]), *per_table]))
    else:
        out.print(_usage_table(usages))


USAGE_COLUMNS = (
    "slug",
    "tenant_id",
    "month",
    "api_calls",
    "events_recorded",
    "records_held",
    "storage_bytes",
    "measured_at",
)


def _usage_table(usages) -> Table:
    table = Table("institution", "month", "API calls", "events", "records", "storage bytes", title="Usage")
    for column in table.columns[2:]:
        column.justify = "right"
    for slug, usage in usages:
        table.add_row(
            slug,
            usage.month,
            f"{usage.api_calls:,}",
            f"{usage.events_recorded:,}",
            f"{usage.records_held:,}",
            f"{usage.storage_bytes:,}",
        )
    return table
