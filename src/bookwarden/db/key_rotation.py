"""Master-key rotation in key-file mode, safe to interrupt at any point.

1. a new key is written to master.key.next (0600) unless one is already there (resume);
2. every tenant key is re-wrapped under it (rows name the key that wraps them);
3. the database roles' passwords, derived from the master key, are updated;
4. master.key.next replaces master.key.
A crash before 4 leaves both files; both are loaded on start (crypto/master.py), every row
stays readable, and running the rotation again finishes the job. A crash between 3 and 4 leaves the roles
with the new key's passwords while the key file names the old, so a server that checks passwords refuses
the service's processes until the rotation is run again: it first gives the roles the old key's passwords
back, then finishes.
"""

from __future__ import annotations

import os

from bookwarden.core import faults
from bookwarden.core.config import Settings
from bookwarden.crypto.aead import new_key
from bookwarden.crypto.keyring import Keyring
from bookwarden.crypto.master import (
    MasterKeys,
    decode_key,
    key_file,
    key_id,
    load_master_keys,
    next_key_file,
    write_key_file,
)
from bookwarden.db import provision
from bookwarden.db.server import admin_url
from bookwarden.db.session import Database


def rotate_master(settings: Settings) -> int:
    pending = next_key_file(settings)
    resuming = pending.exists()
    if not resuming:
        load_master_keys(settings)  # creates the first key file if there is none yet
        write_key_file(pending, new_key())
        faults.point("master.next_written")
    loaded = load_master_keys(settings)
    if resuming:
        # A run that died after step 3 left the roles with the new key's passwords while master.key still
        # holds the old one: give them the old key's back (as the server's administrator), or nothing,
        # this run included, could connect with what the key file says.
        provision.provision(admin_url(settings), settings.database_name, loaded.current)
    new = decode_key(pending.read_text())
    both = MasterKeys(current_id=key_id(new), keys=loaded.keys)
    old_urls = provision.database_urls(admin_url(settings), settings.database_name, loaded.current)
    db = Database.open(old_urls, loaded, pool_size=1)
    try:
        keyring = Keyring(db.keyring.engine, both)
        count = keyring.rewrap_under_master(both)
    finally:
        db.dispose()
    faults.point("master.rewrapped")
    provision.provision(admin_url(settings), settings.database_name, new)
    faults.point("master.provisioned")
    os.replace(pending, key_file(settings))
    return count
