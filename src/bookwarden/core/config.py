"""Settings, read once from the environment (prefix BOOKWARDEN_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKWARDEN_", extra="ignore")

    home: Path = Field(default=Path("var"), description="data folder: embedded database, key file, tenant files")
    database_url: str | None = Field(
        default=None, description="administrative URL of an existing PostgreSQL; unset = embedded server"
    )
    master_key: SecretStr | None = Field(
        default=None, description="base64 of 32 bytes; unset = key file <home>/master.key, created 0600"
    )
    audit_signing_key: SecretStr | None = Field(
        default=None,
        description="base64 of the 32-byte Ed25519 seed signing audit checkpoints; unset = <home>/audit-signing.key",
    )
    audit_retired_keys: str | None = Field(
        default=None,
        description="base64 public keys that signed audit checkpoints and certificates before a rotation of "
        "BOOKWARDEN_AUDIT_SIGNING_KEY, comma-separated; still trusted when verifying (key-file mode keeps them in "
        "<home>/audit-signing-retired.pub)",
    )
    audit_retention_days: int = Field(
        default=2555, ge=0, description="audit segments whose newest event is older than this are dropped (7 years)"
    )
    database_name: str = "bookwarden"
    pool_size: int = 10
    subject_key_cache_size: int = 200_000
    log_level: str = "INFO"

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
