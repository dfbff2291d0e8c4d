"""Settings, read once from the environment (prefix BOOKWARDEN_)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # A refused value is never echoed: the keys and the metrics token are secrets (and reach logs when refused).
    model_config = SettingsConfigDict(env_prefix="BOOKWARDEN_", extra="ignore", hide_input_in_errors=True)

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
    # At most the 7 days an approval request stays open (access/approvals/service.py KEEP_OPEN): a longer
    # period would outlive the request its confirmation decides.
    patron_deletion_grace_days: int = Field(
        default=7,
        ge=1,
        le=7,
        description="a patron deleted by staff is hidden at once; a second person confirms or undoes it within "
        "this many days, and then the subject key and the rows are destroyed (an unconfirmed deletion lapses)",
    )
    database_name: str = "bookwarden"
    pool_size: int = 10
    subject_key_cache_size: int = 200_000
    log_level: str = "INFO"
    # Also read where links are made (identity/links.py) and by WebAuthn (identity/enrolment): here for the
    # HTTP layer, which sends Strict-Transport-Security when people reach the platform over https.
    public_url: str = Field(default="http://127.0.0.1:8000", description="the address people open Bookwarden at")
    api_docs: bool = Field(
        default=False,
        description="serve the interactive API pages /docs and /redoc (they load their scripts from a CDN); "
        "/openapi.json is always served",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="bearer token Prometheus sends to read /metrics; unset = /metrics answers 404",
    )
    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses or networks of the reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto `bookwarden serve` believes; empty = believe no proxy header",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, value: str) -> str:
        for item in _items(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                # uvicorn would take a typo as a literal host name that never matches: say so at start.
                raise ValueError(
                    f"BOOKWARDEN_TRUSTED_PROXIES: {item!r} is not an IP address or network (such as 10.0.0.5 or "
                    "10.0.0.0/24); name the proxies themselves, never '*': whoever may set X-Forwarded-For "
                    "chooses the address every throttle and audit event sees"
                ) from None
        return value

    @field_validator("metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError(
                "BOOKWARDEN_METRICS_TOKEN must be at least 32 characters: make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @property
    def trusted_proxy_list(self) -> list[str]:
        return _items(self.trusted_proxies)

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
