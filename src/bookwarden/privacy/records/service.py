"""Records of processing (GDPR art. 30) for one institution, generated from the personal-data registry.

The institution is the controller; the platform is its processor. One activity per category of
personal data the institution's tables hold: who it is about, why it is processed, who receives
it, how long it is kept by default, where it lives (table.column) and how it is protected there.
Nothing here is personal data: the record describes categories, never values, so producing it
reads no subject's data (it is still recorded in the institution's audit trail).
"""

from __future__ import annotations

import csv
import enum
import io
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.classification import Category, Protection
from bookwarden.core.config import get_settings
from bookwarden.core.csv_safety import spreadsheet_safe
from bookwarden.core.errors import NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.privacy.registry import SUBJECT_DESCRIPTIONS, Registry, registry
from bookwarden.privacy.retention import service as retention
from bookwarden.tenancy.models import Tenant


class RecordsFormat(enum.StrEnum):
    JSON = "json"
    CSV = "csv"


MEDIA_TYPES = {RecordsFormat.JSON: "application/json", RecordsFormat.CSV: "text/csv"}

# What the platform does for every institution, whatever the category: a fixed list, each item
# backed by code and tests in this repository.
SECURITY_MEASURES = (
    "encryption at rest: personal fields sealed with AES-256-GCM under a key of their own data subject "
    "(master key -> institution key -> subject key), bound to institution, table, column and row",
    "crypto-shredding: erasing a subject destroys its key, so its fields are unreadable in every backup too",
    "blind indexes (HMAC-SHA-256 under an institution key kept outside the data database) for exact lookups",
    "institution isolation: row-level security enabled and forced on every institution table, "
    "the institution context set per transaction only",
    "audit trail: every read and write of personal data and every access-control event recorded in the same "
    "transaction, append-only, hash-chained per institution, sealed in signed checkpoints",
    "least privilege: explicit permissions per role, segregation of duties, a second person's approval for "
    "administrative roles",
    "operator access only through a time-bound, justified grant the institution approves, every use notified",
    "authentication: argon2id password hashes, role-based password policies, a second factor for "
    "administrative roles, sign-in throttling and account locks",
    "payment card and bank account numbers refused at input",
    "outgoing mail sealed under the institution's key until delivered; servers' replies never stored",
)

CONTROLLER_CONTACT = "the institution's privacy officers (role privacy_officer)"
PROCESSING_BY_PROCESSOR = (
    "hosting and processing of the institution's library data on its behalf: storage, backup, delivery of "
    "mail, security monitoring, and the privacy functions (requests, complaints, retention) the institution runs"
)

CSV_FIELDS = (
    "controller",
    "controller_id",
    "processor",
    "category",
    "description",
    "data_subjects",
    "purposes",
    "recipients",
    "retention",
    "keep_days",
    "locations",
    "protection",
    "security_measures",
    "third_country_transfers",
    "generated_at",
)


class ProcessorSettings(BaseSettings):
    """Who runs this platform, as the records name the processor (BOOKWARDEN_PROCESSOR_*)."""

    model_config = SettingsConfigDict(env_prefix="BOOKWARDEN_PROCESSOR_", extra="ignore")

    name: str = "the operator of this Bookwarden platform"
    contact: str | None = None
    dpo_contact: str | None = None
    third_country_transfers: str = "none made by the platform"


@dataclass(frozen=True)
class Activity:
    category: str
    description: str
    data_subjects: tuple[str, ...]
    purposes: tuple[str, ...]
    recipients: tuple[str, ...]
    retention: str
    keep_days: int | None
    locations: tuple[str, ...]
    protection: tuple[str, ...]


@dataclass(frozen=True)
class RecordsOfProcessing:
    generated_at: datetime
    controller: dict[str, str]
    processor: dict[str, str | None]
    activities: tuple[Activity, ...]
    security_measures: tuple[str, ...]
    third_country_transfers: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "controller": self.controller,
            "processor": self.processor,
            "activities": [asdict(a) for a in self.activities],
            "security_measures": list(self.security_measures),
            "third_country_transfers": self.third_country_transfers,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, ensure_ascii=False)

    def to_csv(self) -> str:
        """One row per activity, every row complete by itself (lists joined with "; ")."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_FIELDS)
        for activity in self.activities:
            row = {
                "controller": self.controller["name"],
                "controller_id": self.controller["institution_id"],
                "processor": self.processor["name"],
                **{k: "; ".join(v) if isinstance(v, tuple) else v for k, v in asdict(activity).items()},
                "security_measures": "; ".join(self.security_measures),
                "third_country_transfers": self.third_country_transfers,
                "generated_at": self.generated_at.isoformat(),
            }
            # The institution's name is typed by operators: never let a spreadsheet run it.
            writer.writerow(spreadsheet_safe("" if row[f] is None else row[f] for f in CSV_FIELDS))
        return buffer.getvalue()


def generate(
    tenant: Tenant,
    found: Registry | None = None,
    settings: ProcessorSettings | None = None,
    periods: dict[Category, tuple[int | None, str]] | None = None,
) -> RecordsOfProcessing:
    """The records of `tenant`, from the registry (the institution's tables only). `periods`: the
    retention the institution set itself, per category (days, what it says), over the registry's."""
    periods = periods or {}
    found = found or registry()
    settings = settings or ProcessorSettings()
    activities = []
    for category, policy in sorted(found.policies.items()):
        locations = found.locations(category, tenant_only=True)
        if not locations:
            continue  # a category no table holds yet (declared ahead of the feature that will)
        activities.append(
            Activity(
                category=category.value,
                description=policy.description,
                data_subjects=tuple(SUBJECT_DESCRIPTIONS[k] for k in found.subjects_of(category, tenant_only=True)),
                purposes=policy.purposes,
                recipients=policy.recipients,
                retention=periods[category][1] if category in periods else policy.retention,
                keep_days=periods[category][0] if category in periods else policy.keep_days,
                locations=tuple(c.qualified for c in locations),
                protection=tuple(sorted({_protection(c.protection) for c in locations})),
            )
        )
    return RecordsOfProcessing(
        generated_at=datetime.now(UTC),
        controller={
            "role": "controller",
            "name": tenant.name,
            "institution_id": str(tenant.id),
            "slug": tenant.slug,
            "contact": CONTROLLER_CONTACT,
        },
        processor={
            "role": "processor",
            "name": settings.name,
            "contact": settings.contact,
            "dpo_contact": settings.dpo_contact,
            "processing": PROCESSING_BY_PROCESSOR,
        },
        activities=tuple(activities),
        security_measures=security_measures(),
        third_country_transfers=settings.third_country_transfers,
    )


def security_measures() -> tuple[str, ...]:
    """The fixed list, and what backups keep and for how long, from this platform's configuration."""
    settings = get_settings()
    return (
        *SECURITY_MEASURES,
        "backups: encrypted (AES-256-GCM, a key of their own wrapped under the master key, which no backup "
        "holds), signed, restore-drilled daily; data backups hold ciphertext only and are kept at most "
        f"{settings.data_backup_days_at_most} days; the keys are in separate keyring backups kept "
        f"{settings.keyring_backup_retention_days} days, so an erased subject's fields can be decrypted from a "
        f"backup for at most {settings.keyring_backup_retention_days} days after the erasure, never after",
    )


def export(session: TenantSession, actor: Principal, fmt: RecordsFormat) -> str:
    """The institution's records as JSON or CSV text; the export is recorded in its audit trail."""
    authorize(actor, Permission.PRIVACY_RECORDS_READ)
    fmt = RecordsFormat(fmt)
    tenant = session.get(Tenant, session.tenant_id)
    if tenant is None:
        raise NotFound(f"no institution {session.tenant_id}")

    records = generate(tenant, periods=retention.institution_periods(session))
    audit.record(
        session,
        Action.RECORDS_OF_PROCESSING_EXPORTED,
        ("institution", tenant.id),
        details={"format": fmt.value, "categories": [a.category for a in records.activities]},
    )
    return records.to_json() if fmt is RecordsFormat.JSON else records.to_csv()


_PROTECTION_TEXT = {
    Protection.SUBJECT_KEY: "encrypted under the subject's key (crypto-shredded on erasure)",
    Protection.TENANT_KEY: "encrypted under the institution's key",
    Protection.ONE_WAY_HASH: "one-way hashed (never readable)",
    Protection.PLAIN: "stored readable, for security checks; access audited",
}


def _protection(protection: Protection | None) -> str:
    return _PROTECTION_TEXT[protection] if protection is not None else "unspecified"
