"""Settings, read once from the environment (prefix BOOKWARDEN_)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Any

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
    audit_context_days: int = Field(
        default=90,
        ge=1,
        le=90,
        description="days the audit trail keeps an event's source address and user agent; at most the 90 days "
        "the records of processing publish",
    )
    backup_dir: Path | None = Field(
        default=None, description="where backups are written (0700 folders, 0600 files); unset = <home>/backups"
    )
    backup_file_areas: str = Field(
        default="tenants",
        description="comma-separated folders (relative to the home folder, or absolute) copied into platform backups",
    )
    backup_keep_daily: int = Field(default=7, ge=1, description="complete backups kept: the newest of each of N days")
    backup_keep_weekly: int = Field(default=4, ge=0, description="... and of each of N ISO weeks")
    backup_keep_monthly: int = Field(default=12, ge=0, description="... and of each of N months")
    keyring_backup_retention_days: int = Field(
        default=35,
        ge=1,
        description="keyring backups are removed this many days after they were taken; an erased patron stays "
        "decryptable from backups at most this long after the erasure",
    )
    offboarding_grace_days: int = Field(
        default=30,
        ge=0,
        description="days between an offboarded institution's final export and the destruction of its data; an "
        "operator can cancel until then",
    )
    offboarding_link_days: int = Field(
        default=14, ge=1, description="days the link to an offboarded institution's final export works"
    )
    offboarding_wipe_method: str = Field(
        default="nist-800-88-clear",
        description="how an offboarded institution's files are overwritten: nist-800-88-clear (one pass) or "
        "dod-5220.22-m (three passes, verified)",
    )
    operator_alert_emails: str = Field(
        default="", description="comma-separated addresses mailed when a restore drill fails"
    )
    ciso_emails: str = Field(
        default="",
        description="comma-separated addresses of the CISO, mailed at once of every incident and of its escalations "
        "(empty: the operator alert addresses are mailed instead)",
    )
    management_report_emails: str = Field(
        default="",
        description="comma-separated addresses of platform management (the CISO) mailed the platform's monthly "
        "security report; unset = the CISO's addresses",
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
    database_pooler_url: str | None = Field(
        default=None,
        description="address of a PgBouncer in transaction mode in front of the server (postgresql://host:6432): "
        "the service's connections go through it, with server-side prepared statements off; migrations, "
        "provisioning and backups keep BOOKWARDEN_DATABASE_URL",
    )
    # Per process and per database (data, keyring): connections kept open, and opened beyond them at busy
    # moments. README "Connection budget" states what every process kind may open; tests/db/test_connection_budget.py
    # holds the README to these numbers.
    pool_size: int = Field(default=10, ge=1)
    pool_overflow: int = Field(default=10, ge=0)
    graceful_shutdown_seconds: int = Field(
        default=30,
        ge=0,
        le=270,  # below the job lease (5 minutes): a job finishing in its grace is never taken over meanwhile
        description="on SIGTERM, how long `serve` lets in-flight requests finish and `worker` its job in hand "
        "(then given back to the queue for another worker)",
    )
    subject_key_cache_size: int = 200_000
    monitor_tuning: dict[str, dict[str, str | int]] = Field(
        default_factory=dict,
        description='correlation windows and thresholds by rule name, JSON: {"sshd_brute_force": {"gte": 5, '
        '"timespan": "120s"}}',
    )
    access_log: Path | None = Field(
        default=None,
        description="file the HTTP processes append one JSON line per request to (time, method, route template, "
        "status, client address, user agent, duration), for `bookwarden monitor run` to follow; unset = not written",
    )
    # Active response (monitor/response/): jails, the allowlist, the optional hook, how fast processes see a block.
    monitor_jails: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='jails by name, JSON, each replacing or adding to the built-in ones: {"sshd": {"rules": '
        '["sshd_brute_force"], "actions": ["block"], "bantime": "10m"}}; {"name": {"enabled": false}} turns one off',
    )
    monitor_allowlist: str = Field(
        default="",
        description="comma-separated addresses or networks never blocked (beside loopback and the trusted proxies)",
    )
    monitor_block_hook: list[str] = Field(
        default_factory=list,
        description='a command run (no shell) on each block and unblock, JSON argv: ["/usr/local/sbin/nft-ban"]; '
        "it gets: block ADDRESS/PREFIX SECONDS, or unblock ADDRESS/PREFIX",
    )
    monitor_block_hook_timeout: int = Field(default=10, ge=1, le=300, description="seconds the hook may run")
    monitor_block_refresh_seconds: float = Field(
        default=1.0, ge=0, le=60, description="how often at most an HTTP process asks whether the blocks changed"
    )
    log_level: str = "INFO"
    # File integrity and rootcheck (monitor/fim, monitor/rootcheck).
    fim_paths: str = Field(
        default="",
        description="comma-separated files and folders whose integrity is checked; empty = the application's "
        "code and templates, its key files in the home folder and /etc/bookwarden when it exists",
    )
    fim_exclude: str = Field(default="", description="comma-separated file or folder names left out of FIM scans")
    fim_algorithm: str = Field(default="blake3", pattern="^(blake3|sha256)$", description="blake3 or sha256")
    fim_full_scan_hours: int = Field(
        default=24,
        ge=1,
        description="a scheduled scan re-hashes every file (not only those whose inode, size or times changed) "
        "when the last full scan is older than this",
    )
    rootcheck_suid_roots: str = Field(
        default="/usr/local/bin,/usr/local/sbin",
        description="comma-separated folders searched for SUID/SGID files, besides the FIM paths",
    )
    rootcheck_suid_allowed: str = Field(
        default="", description="comma-separated SUID/SGID files expected there (besides those in the FIM baseline)"
    )
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
    console_operators: str = Field(
        default="",
        description="who runs the console: OS user=operator account pairs, comma-separated (deploy=alice.ops); "
        "an OS user not listed acts as the operator account of the same name, if there is one",
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

    @field_validator("monitor_allowlist")
    @classmethod
    def _allowlisted_networks(cls, value: str) -> str:
        for item in _items(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"BOOKWARDEN_MONITOR_ALLOWLIST: {item!r} is not an IP address or network (such as 192.0.2.7 or "
                    "192.0.2.0/24)"
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
    def monitor_allowlist_items(self) -> list[str]:
        return _items(self.monitor_allowlist)

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_backup_dir(self) -> Path:
        return (self.backup_dir or self.resolved_home / "backups").expanduser().resolve()

    @property
    def backup_file_area_paths(self) -> list[Path]:
        return [(self.resolved_home / item).resolve() for item in _items(self.backup_file_areas)]

    @property
    def fim_roots(self) -> list[Path]:
        """What FIM watches: the configured paths, or the application (code, templates, rules), its key files
        and /etc/bookwarden. The data folder's database and tenant files change all the time and are not here."""
        if _items(self.fim_paths):
            return [Path(item).expanduser().resolve() for item in _items(self.fim_paths)]
        package = Path(__file__).resolve().parents[1]
        keys = [self.resolved_home / name for name in ("master.key", "audit-signing.key", "audit-signing-retired.pub")]
        config = Path("/etc/bookwarden")
        return [package, *(key for key in keys if key.exists()), *([config] if config.exists() else [])]

    @property
    def data_backup_days_at_most(self) -> int:
        """How long a data backup can be kept at most under keep-daily/weekly/monthly (a month as 31 days)."""
        return max(self.backup_keep_daily, 7 * self.backup_keep_weekly, 31 * self.backup_keep_monthly)

    @property
    def operator_alert_addresses(self) -> list[str]:
        return _items(self.operator_alert_emails)

    @property
    def ciso_addresses(self) -> list[str]:
        return _items(self.ciso_emails) or self.operator_alert_addresses

    @property
    def management_report_addresses(self) -> list[str]:
        return _items(self.management_report_emails) or self.ciso_addresses


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
