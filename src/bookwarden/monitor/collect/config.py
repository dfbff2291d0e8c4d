"""What `bookwarden monitor run` collects (BOOKWARDEN_MONITOR_*; docs/monitoring.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bookwarden.core.config import Settings
from bookwarden.monitor.collect.pipeline import TailedFile
from bookwarden.monitor.parse.reader import Format


class CollectSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKWARDEN_MONITOR_", extra="ignore")

    files: str = Field(
        default="",
        description="log files to follow, comma-separated FORMAT:PATH pairs (formats: syslog, jsonl, apache-access, "
        "apache-error, access), e.g. syslog:/var/log/auth.log,apache-access:/var/log/nginx/access.log; "
        "BOOKWARDEN_ACCESS_LOG is followed too when set",
    )
    audit: bool = Field(default=True, description="read the platform's audit trail (sign-ins, denials, not-found ids)")
    queue_size: int = Field(default=10_000, ge=1, description="items read and waiting for the engine, at most")
    poll_seconds: float = Field(default=0.2, gt=0, le=5, description="how often an idle source is looked at again")

    @field_validator("files")
    @classmethod
    def _pairs(cls, value: str) -> str:
        tailed_files(value)
        return value

    def tailed(self, settings: Settings) -> list[TailedFile]:
        found = tailed_files(self.files)
        if settings.access_log is not None and all(f.path != settings.access_log for f in found):
            found.append(TailedFile(settings.access_log, Format.ACCESS))
        return found


def tailed_files(value: str) -> list[TailedFile]:
    found = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        fmt, colon, path = item.partition(":")
        try:
            chosen = Format(fmt)
        except ValueError:
            chosen = None
        if not colon or not path or chosen is None:
            raise ValueError(
                f"BOOKWARDEN_MONITOR_FILES: {item!r} is not FORMAT:PATH with FORMAT one of "
                f"{', '.join(f.value for f in Format)} (e.g. syslog:/var/log/auth.log)"
            )
        found.append(TailedFile(Path(path), chosen))
    return found
