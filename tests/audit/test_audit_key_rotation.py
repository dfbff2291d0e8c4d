"""Rotating the audit signing key: what the old key signed still verifies, and only because it was kept.

The retired public keys live outside the database (a file next to the key, or the environment), so a
tamperer who can write the database cannot add a key of their own to what verification trusts.
"""

from __future__ import annotations

import base64
import os

from sqlalchemy import text

from bookwarden.audit import signing
from bookwarden.core.config import get_settings
from bookwarden.db.session import tenant_session
from tests.audit.test_audit_integrity import bw, write_events
from tests.e2e.test_cli import (
    cli_env,  # noqa: F401 - fixture: key-file mode under a fresh home
    granted,
)


def _key_ids(db, tenant_id) -> list[str]:
    with tenant_session(db, tenant_id) as session:
        return list(session.execute(text("SELECT key_id FROM audit_checkpoints ORDER BY tree_size")).scalars())


def _rotated_chain(db, tenant_id) -> tuple[str, str]:
    write_events(db, tenant_id, 5)
    assert bw("audit", "checkpoint", "--tenant", str(tenant_id)).exit_code == 0
    rotated = bw("audit", "rotate-signing-key")
    assert rotated.exit_code == 0, rotated.output
    get_settings.cache_clear()
    write_events(db, tenant_id, 5)
    assert bw("audit", "checkpoint", "--tenant", str(tenant_id)).exit_code == 0
    old, new = _key_ids(db, tenant_id)
    return old, new


def test_checkpoints_signed_before_a_rotation_still_verify(committed_db, committed_tenant, cli_env):  # noqa: F811
    tenant_id = committed_tenant()
    old, new = _rotated_chain(committed_db, tenant_id)
    home = get_settings().resolved_home

    assert old != new
    verified = bw("audit", "verify", "--tenant", str(tenant_id))
    assert verified.exit_code == 0, verified.output
    retired = (home / signing.RETIRED_FILE).read_text().split()
    assert [signing.key_id(signing.decode_public_key(k)) for k in retired] == [old]  # public halves only
    assert oct((home / signing.KEY_FILE).stat().st_mode & 0o777) == "0o600"

    (home / signing.RETIRED_FILE).unlink()  # forget the old key: its checkpoint no longer verifies
    refused = bw("audit", "verify", "--tenant", str(tenant_id))
    assert refused.exit_code == 1 and f"signed by key {old}, which is not trusted" in refused.stdout


def test_a_bundle_carries_every_key_and_pinning_only_the_new_one_is_refused(
    committed_db,
    committed_tenant,
    cli_env,  # noqa: F811
    tmp_path,
):
    tenant_id = committed_tenant()
    _rotated_chain(committed_db, tenant_id)
    path = tmp_path / "chain.tar.gz"
    export = granted(committed_db, ["audit", "export", "--tenant", str(tenant_id), "--output", str(path)])
    assert bw(*export).exit_code == 0
    keys = [signing.encode_public_key(k) for k in signing.trusted_public_keys(get_settings())]

    assert bw("audit", "verify-bundle", str(path)).exit_code == 0
    assert bw("audit", "verify-bundle", str(path), "--public-key", keys[0], "--public-key", keys[1]).exit_code == 0
    assert bw("audit", "verify-bundle", str(path), "--public-key", keys[0]).exit_code == 1


def test_an_environment_key_is_rotated_in_the_secret_store_and_its_predecessor_listed(
    committed_db,
    committed_tenant,
    cli_env,  # noqa: F811
    monkeypatch,
):
    first = signing.SigningKey.from_seed(os.urandom(32))
    monkeypatch.setenv("BOOKWARDEN_AUDIT_SIGNING_KEY", base64.b64encode(first.private.private_bytes_raw()).decode())
    get_settings.cache_clear()
    tenant_id = committed_tenant()
    write_events(committed_db, tenant_id, 3)
    assert bw("audit", "checkpoint", "--tenant", str(tenant_id)).exit_code == 0

    refused = bw("audit", "rotate-signing-key")
    assert refused.exit_code == 2 and "secret store" in refused.output
    assert not (get_settings().resolved_home / signing.RETIRED_FILE).exists()  # nothing written

    second = signing.SigningKey.from_seed(os.urandom(32))
    monkeypatch.setenv("BOOKWARDEN_AUDIT_SIGNING_KEY", base64.b64encode(second.private.private_bytes_raw()).decode())
    get_settings.cache_clear()
    assert bw("audit", "verify", "--tenant", str(tenant_id)).exit_code == 1  # the old key is not known yet
    monkeypatch.setenv("BOOKWARDEN_AUDIT_RETIRED_KEYS", signing.encode_public_key(first.public))
    get_settings.cache_clear()
    assert bw("audit", "verify", "--tenant", str(tenant_id)).exit_code == 0
