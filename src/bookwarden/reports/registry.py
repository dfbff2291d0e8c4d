"""The two registries of the reports area: report sections and evidence controls, each found by key.

A section or a control whose owning area is not built yet is registered as *unavailable*, with the reason:
it still appears in every report and every evidence document ("not yet available: ..."), never vanishes.
When the area is built, its provider is registered under the same key (`section(...)`, `control(...)` in
sections.py / controls.py, which sit above every area they read), taking the placeholder's place and keeping
its position. Providers read through the owning area's own functions (identity/summary.py,
access/summary.py, ...), never its tables.
"""

from __future__ import annotations

import calendar
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from bookwarden.core.errors import InvalidInput

# What the API's schema says too (reports/routes.py): a month from 1970 to 2999.
MONTH_PATTERN = r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"
MONTH = re.compile(MONTH_PATTERN)


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        found = MONTH.match(text or "")
        if found is None:
            raise InvalidInput(f"month: {text!r} is not a month written YYYY-MM (2026-11), from 1970 to 2999")
        return cls(int(found.group(1)), int(found.group(2)))

    @classmethod
    def of(cls, moment: datetime) -> Month:
        moment = moment.astimezone(UTC)
        return cls(moment.year, moment.month)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    @property
    def days(self) -> int:
        return calendar.monthrange(self.year, self.month)[1]

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), 12 if self.month == 1 else self.month - 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class Scope:
    """Whom a report or an evidence document is about: one institution, or the platform (tenant_id None)."""

    tenant_id: UUID | None
    name: str

    @property
    def is_platform(self) -> bool:
        return self.tenant_id is None

    def as_json(self) -> dict[str, Any]:
        return {"tenant_id": str(self.tenant_id) if self.tenant_id else None, "name": self.name}


# provider(db, scope, month, now) -> the section's numbers (JSON-ready).
SectionProvider = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class SectionKind:
    key: str
    title: str
    area: str  # the area that owns the numbers
    provider: SectionProvider | None = None
    unavailable: str | None = None  # why there is no provider yet


SECTIONS: dict[str, SectionKind] = {}


def section(key: str, title: str, area: str, provider: SectionProvider) -> SectionKind:
    """Register (or replace a placeholder with) the provider of a report section."""
    kind = SectionKind(key, title, area, provider)
    SECTIONS[key] = kind
    return kind


def section_unavailable(key: str, title: str, area: str, reason: str) -> SectionKind:
    """A section whose area is not built yet: shown, with its reason. A provider already registered stays."""
    if key in SECTIONS and SECTIONS[key].provider is not None:
        return SECTIONS[key]
    kind = SectionKind(key, title, area, None, reason)
    SECTIONS[key] = kind
    return kind


class Status(enum.StrEnum):
    HOLDS = "holds"
    FAILS = "fails"
    UNAVAILABLE = "not yet available"


@dataclass(frozen=True)
class Finding:
    status: Status
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)


def holds(detail: str, **facts: Any) -> Finding:
    return Finding(Status.HOLDS, detail, facts)


def fails(detail: str, **facts: Any) -> Finding:
    return Finding(Status.FAILS, detail, facts)


# check(db, scope, now) -> Finding
Check = Callable[..., Finding]


@dataclass(frozen=True)
class Control:
    key: str
    promise: str  # the statement's words
    control: str  # what keeps the promise
    assessment: str  # the HECVAT / CSA CAIQ question areas the line answers
    area: str
    check: Check | None = None
    unavailable: str | None = None


CONTROLS: dict[str, Control] = {}


def control(key: str, promise: str, control_text: str, assessment: str, area: str, check: Check) -> Control:
    found = Control(key, promise, control_text, assessment, area, check)
    CONTROLS[key] = found
    return found


def control_unavailable(key: str, promise: str, control_text: str, assessment: str, area: str, reason: str) -> Control:
    if key in CONTROLS and CONTROLS[key].check is not None:
        return CONTROLS[key]
    found = Control(key, promise, control_text, assessment, area, None, reason)
    CONTROLS[key] = found
    return found
