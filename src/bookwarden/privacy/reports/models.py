"""Anonymized publisher reports: the catalogue they join loans to, the institution's rules for them,
the privacy budget spent per publisher, and every release.

Nothing here is personal data. The catalogue describes the library's items (the same title and
publisher for every patron); a release holds counts over at least k patrons, never a patron id.
The loans the counts come from stay where they are (library/models.py): their titles are sealed
under each patron's key, so the report joins on the item id, which is the library's, not the patron's.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Date, DateTime, Double, ForeignKey, Index, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import CATALOGUE, COUNTER, SETTING, STATE, SubjectKind, not_personal, subject_link
from bookwarden.db.base import Base
from bookwarden.tenancy.models import Tenant  # noqa: F401 - target of the tenant foreign keys

# The floor of k: no institution may publish a cell describing fewer than 10 patrons (see publisher_reports.py).
MIN_K = 10
DESCRIBES_ITEM = not_personal("the library's description of an item: the same for every patron who borrows it")
PUBLISHER = not_personal("a publisher's name, from the institution's catalogue")
PRIVACY_LOSS = not_personal("differential-privacy loss (epsilon) of anonymized releases, a number about no one")


def _tenant_id() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("tenants.id"), primary_key=True)


class CatalogueItem(Base):
    """item_id (as loans carry it) -> title and publisher."""

    __tablename__ = "catalogue_items"
    __table_args__ = (
        CheckConstraint("length(item_id) > 0 AND length(title) > 0 AND length(publisher) > 0", name="not_blank"),
        Index("ix_catalogue_items_publisher", "tenant_id", "publisher"),
    )

    tenant_id: Mapped[uuid.UUID] = _tenant_id()
    item_id: Mapped[str] = mapped_column(String(64), primary_key=True, info=CATALOGUE)
    title: Mapped[str] = mapped_column(String(500), info=DESCRIBES_ITEM)
    publisher: Mapped[str] = mapped_column(String(200), info=PUBLISHER)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class PublisherReportPolicy(Base):
    """The institution's rules for publisher reports; no row: the defaults (k = 10, no noise)."""

    __tablename__ = "publisher_report_policies"
    __table_args__ = (
        CheckConstraint(f"k >= {MIN_K}", name="k_at_least_floor"),
        CheckConstraint("epsilon_per_report > 0 AND publisher_budget > 0", name="epsilon_positive"),
        CheckConstraint("max_cells_per_patron >= 1 AND max_loans_per_cell >= 1", name="bounds_positive"),
    )

    tenant_id: Mapped[uuid.UUID] = _tenant_id()
    k: Mapped[int] = mapped_column(Integer, info=SETTING)
    noise: Mapped[bool] = mapped_column(Boolean, info=SETTING)
    epsilon_per_report: Mapped[float] = mapped_column(Double, info=SETTING)
    publisher_budget: Mapped[float] = mapped_column(Double, info=SETTING)
    max_cells_per_patron: Mapped[int] = mapped_column(Integer, info=SETTING)
    max_loans_per_cell: Mapped[int] = mapped_column(Integer, info=SETTING)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_by: Mapped[uuid.UUID] = mapped_column(
        info=subject_link(SubjectKind.PRINCIPAL, "who last changed the rules: an account, token or the console")
    )


class PublisherBudget(Base):
    """Epsilon a publisher may receive from this institution over all time, and how much it has."""

    __tablename__ = "publisher_budgets"
    __table_args__ = (
        CheckConstraint("budget > 0", name="budget_positive"),
        # The same comparison the debit makes (publisher_reports.py): the database refuses an overdraft too.
        CheckConstraint("spent >= 0 AND spent <= budget", name="spent_within_budget"),
    )

    tenant_id: Mapped[uuid.UUID] = _tenant_id()
    publisher: Mapped[str] = mapped_column(String(200), primary_key=True, info=PUBLISHER)
    budget: Mapped[float] = mapped_column(Double, info=PRIVACY_LOSS)
    spent: Mapped[float] = mapped_column(Double, default=0.0, info=PRIVACY_LOSS)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class PublisherReport(Base):
    """One release: what was asked, under which k and epsilon, and exactly what left (body)."""

    __tablename__ = "publisher_reports"
    __table_args__ = (
        CheckConstraint(f"k >= {MIN_K}", name="k_at_least_floor"),
        CheckConstraint("first_month <= last_month", name="months_in_order"),
        CheckConstraint(
            "(noise AND epsilon > 0 AND noise_scale > 0 AND sensitivity >= 1) OR "
            "(NOT noise AND epsilon IS NULL AND noise_scale IS NULL AND sensitivity IS NULL)",
            name="noise_described",
        ),
        CheckConstraint(r"purpose ~ '^[a-z0-9_]{1,80}$'", name="purpose_is_a_name"),
        CheckConstraint("purpose !~ '(market|advertis|promot)'", name="not_marketing"),  # core/purposes.py
        Index("ix_publisher_reports_publisher", "tenant_id", "publisher", "released_at"),
    )
    # released_at comes from the database clock; fetch it on INSERT.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = _tenant_id()
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    publisher: Mapped[str] = mapped_column(String(200), info=PUBLISHER)
    purpose: Mapped[str] = mapped_column(String(80), info=STATE)  # what it was released for (the sharing gate)
    first_month: Mapped[date] = mapped_column(Date, info=not_personal("first calendar month the report covers"))
    last_month: Mapped[date] = mapped_column(Date, info=not_personal("last calendar month the report covers"))
    k: Mapped[int] = mapped_column(Integer, info=SETTING)
    noise: Mapped[bool] = mapped_column(Boolean, info=SETTING)
    mechanism: Mapped[str] = mapped_column(String(64), info=STATE)
    epsilon: Mapped[float | None] = mapped_column(Double, info=PRIVACY_LOSS)
    noise_scale: Mapped[float | None] = mapped_column(Double, info=SETTING)
    sensitivity: Mapped[int | None] = mapped_column(Integer, info=SETTING)
    max_cells_per_patron: Mapped[int | None] = mapped_column(Integer, info=SETTING)
    max_loans_per_cell: Mapped[int | None] = mapped_column(Integer, info=SETTING)
    cells_published: Mapped[int] = mapped_column(Integer, info=COUNTER)
    cells_suppressed: Mapped[int] = mapped_column(Integer, info=COUNTER)
    body: Mapped[dict[str, Any]] = mapped_column(
        JSONB, info=not_personal("the released report: counts over at least k patrons each, no patron id")
    )
    released_by: Mapped[uuid.UUID] = mapped_column(
        info=subject_link(SubjectKind.PRINCIPAL, "who released it: an account, token or the console")
    )
    released_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
