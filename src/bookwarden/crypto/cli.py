"""`bookwarden keys`: master and tenant keys."""

from __future__ import annotations

import typer

from bookwarden.audit.events import Action
from bookwarden.console import command, connect, err, fail, institution_id, record_action
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import Permission
from bookwarden.db import key_rotation as rotation

keys_app = typer.Typer(name="keys", help="Master and tenant keys.", no_args_is_help=True)
groups = (keys_app,)


# -- keys ----------------------------------------------------------------------------------


@command(keys_app, "rotate-tenant", Permission.PLATFORM_KEYS_ROTATE)
def keys_rotate_tenant(tenant: str) -> None:
    """New tenant data key; re-wrap every subject key under it (no data re-encrypted). Resumable."""
    db = connect()
    tenant_id = institution_id(tenant)
    count = db.keyring.rotate_tenant_key(tenant_id)
    record_action(
        Action.KEY_ROTATED, ("tenant", tenant_id), tenant_id=tenant_id, key="tenant", subject_keys_rewrapped=count
    )
    err.print(f"tenant key rotated; {count} subject keys re-wrapped")


@command(keys_app, "rotate-master", Permission.PLATFORM_KEYS_ROTATE)
def keys_rotate_master() -> None:
    """New master key; re-wrap every tenant key under it. Key-file mode only; resumable after a crash."""
    settings = get_settings()
    if settings.master_key is not None:
        raise fail(
            "the master key comes from BOOKWARDEN_MASTER_KEY; rotate it in your secret store, "
            "unset the variable to use the key file, or see README 'Keys'"
        )
    count = rotation.rotate_master(settings)
    record_action(Action.KEY_ROTATED, key="master", tenant_keys_rewrapped=count)  # connected under the new key
    err.print(f"master key rotated; {count} tenant keys re-wrapped")
