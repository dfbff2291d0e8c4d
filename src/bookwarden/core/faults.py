"""Crash points: named steps of the production code where the crash suite (tests/crash) kills the process.

`point(name)` does nothing unless the process was started with BOOKWARDEN_CRASH_AT naming that point (or a
test's child process armed it with `arm`); then it sends SIGKILL to its own process at once: no `finally`,
no `atexit`, no flush, no rollback sent to the server, as a power cut or the kernel's OOM killer would. The
variable is read once, at import, so an unset one costs a comparison with None.

Every point is named in POINTS with what a crash there leaves behind and who finishes the work; the suite
asserts that each one is in the code exactly once and is killed at by a test (docs/architecture.md,
"Crash safety").
"""

from __future__ import annotations

import os
import signal

ENV = "BOOKWARDEN_CRASH_AT"

POINTS: dict[str, str] = {
    # -- erasure of a patron (privacy/subjects/erasure.py), inside the caller's transaction
    "erasure.rows_deleted": "rows deleted, certificate stored, no key shredded, nothing committed: all rolls back",
    "erasure.first_key_shredded": "one subject key destroyed, rows not committed: the next run finishes",
    "erasure.keys_shredded": "every subject key destroyed, rows not committed: the next run finishes",
    # -- a deletion confirmed by a second person, carried out by the hourly job (library/deletion.py)
    "deletion.rows_deleted": "patron's rows deleted, key kept, nothing committed: the job's next run destroys",
    "deletion.key_shredded": "key destroyed, rows not committed: the job's next run deletes them",
    # -- maker-checker (access/approvals/service.py)
    "approvals.decided": "approval recorded, not carried out, nothing committed: still pending",
    "approvals.carried_out": "carried out, not committed: still pending, carried out once when approved again",
    # -- master-key rotation (db/key_rotation.py, crypto/keyring.py)
    "master.next_written": "master.key.next written, nothing re-wrapped: the rotation resumes",
    "master.rewrapping": "some tenant keys re-wrapped, not committed: rolls back; the rotation resumes",
    "master.rewrapped": "every tenant key under the new key, both files kept: both load; the rotation resumes",
    "master.provisioned": "roles on the new key's passwords, the file on the old: the resume restores, then finishes",
    # -- tenant data-key rotation (crypto/keyring.py)
    "tenant_key.version_added": "a new data-key version, nothing re-wrapped: the next run re-wraps under it",
    "tenant_key.rewrapping": "a batch re-wrapped, not committed: rolls back; the next run re-wraps it",
    "tenant_key.batch_rewrapped": "one batch committed under the new version: the next run does the rest",
    "tenant_key.rewrapped": "all re-wrapped, old versions not yet destroyed: the next run destroys them",
    # -- audit signing-key rotation (audit/signing.py)
    "signing.retired_appended": "the old public key retired, the key file not replaced: both still trusted",
    # -- checkpoints of the audit chains (audit/checkpoints.py)
    "checkpoint.signed": "a checkpoint signed, not stored: the next run signs again",
    "checkpoint.inserted": "a checkpoint inserted, its event not appended, nothing committed: rolls back",
    "checkpoint.chain_sealed": "one chain's checkpoint committed, the next not made: the next run makes it",
    # -- the job worker (jobs/worker.py, jobs/service.py)
    "jobs.schedule_ticking": "due schedules enqueued, not committed: rolls back; the next tick enqueues once",
    "jobs.claimed": "claim committed, handler not run: the lease expires and the job is run again",
    "jobs.handled": "handler done, outcome not recorded: the lease expires and the (idempotent) job runs again",
    "jobs.recording_success": "success being recorded, not committed: as jobs.handled",
    "jobs.recording_failure": "failure being recorded, not committed: the lease expires, the attempt counts",
    # -- outbox delivery (notify/delivery.py)
    "outbox.sending": "the message locked, not sent: the lease expires and it is sent",
    "outbox.accepted": "the SMTP server accepted it, not marked sent: sent again with the same Message-ID",
    "outbox.marked_sent": "marked sent, not committed: sent again with the same Message-ID",
    "outbox.sweep_requeueing": "orphans re-queued, not committed: rolls back; the next sweep re-queues them",
    # -- backups (backup/service.py)
    "backup.started": "a running row, no files: the next backup's sweep marks it failed",
    "backup.members_written": "members written, no manifest: the sweep marks it failed and removes its files",
    "backup.manifest_written": "signed manifest written, not marked complete: the sweep marks it failed",
    # -- restore (backup/service.py)
    "restore.database_created": "an empty database under a temporary name: the next restore drops it",
    "restore.rows_loaded": "rows loaded under the temporary name, not checked: the next restore drops it",
    "restore.checked": "checked and renamed to the target, not audited: the target is whole",
    # -- offboarding (backup/offboarding.py), carried on by the next run from its recorded step
    "offboarding.approval_taken": "approval copied onto the row: the next run exports",
    "offboarding.suspended": "the institution suspended, no export: the next run exports",
    "offboarding.export.written": "the export written, not mailed: the next run writes it again and mails",
    "offboarding.export.mailed": "the link queued, state not recorded: mailed again (a link that works)",
    "offboarding.keys.counted": "keys counted, nothing destroyed: the next run counts nothing again",
    "offboarding.keys.mailed": "the destruction notice sent: sent again with the same Message-ID",
    "offboarding.keys.destroyed": "keys destroyed, state not recorded: destroying again destroys nothing more",
    "offboarding.rows.keyring_deleted": "keyring rows deleted, data rows kept: the next run deletes them",
    "offboarding.rows.deleting": "data rows deleted, not committed: rolls back; deleted once by the next run",
    "offboarding.rows.deleted": "rows deleted, state not recorded: the next run finds nothing more to delete",
    "offboarding.files.first_wiped": "the file area wiped, the export not yet: the next run wipes the rest",
    "offboarding.files.wiped": "every file wiped, state not recorded: the next run records it",
    "offboarding.certificate.signing": "certificate signed, not committed: rolls back; exactly one is issued",
    # -- the HTTP process (privacy/requests/service.py), killed while serving
    "privacy_request.completing": "keys destroyed, rows and request not committed: completed again, or by the job",
    # -- subject-access packages (privacy/subjects/export.py)
    "export.package_written": "the package sealed and stored, not committed: rolls back, key orphaned, harmless",
    # -- links mailed to account holders (identity/links.py): reset, invitation
    "links.queued": "a link minted and its mail queued, not committed: no mail, nothing changed; ask again",
}

_armed: str | None = os.environ.get(ENV) or None
if _armed is not None and _armed not in POINTS:
    raise ValueError(f"{ENV}={_armed!r} names no crash point; the points are listed in bookwarden/core/faults.py")


def point(name: str) -> None:
    """A place the process may die: SIGKILL now if this is the armed point. Free when none is."""
    if _armed is not None and _armed == name:
        os.kill(os.getpid(), signal.SIGKILL)


def arm(name: str | None) -> None:
    """Arm `name` in this process (a test's forked child), or disarm with None."""
    global _armed
    if name is not None and name not in POINTS:
        raise ValueError(f"no crash point named {name!r}; the points are listed in bookwarden/core/faults.py")
    _armed = name


__all__ = ["ENV", "POINTS", "arm", "point"]
