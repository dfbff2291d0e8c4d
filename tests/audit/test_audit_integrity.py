"""Tamper evidence: every way of changing the stored trail is caught by `audit verify`, which names the
first broken event; a clean trail verifies. The tamperer is a superuser with the triggers off."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from bookwarden.audit import bundle, checkpoints, signing, verify
from bookwarden.audit import record as audit
from bookwarden.audit.events import PLATFORM_CHAIN, Action, Event, Outcome, chain_hash
from bookwarden.core.config import get_settings
from bookwarden.core.errors import BookwardenError
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from tests.conftest import TEST_DATABASE
from tests.e2e.test_cli import granted, map_console

CONTENT = (
    "id, occurred_at, actor_kind, actor_id, grant_id, action, target_kind, target_id, outcome, source_address, "
    "user_agent, request_id, details, body_digest, format, context_commitment"
)


@pytest.fixture
def key() -> signing.SigningKey:
    return signing.SigningKey.from_seed(os.urandom(32))


@pytest.fixture
def cli_env(committed_db, admin_url, tmp_path, monkeypatch, key):
    env = {
        "BOOKWARDEN_DATABASE_URL": admin_url.render_as_string(hide_password=False),
        "BOOKWARDEN_DATABASE_NAME": TEST_DATABASE,
        "BOOKWARDEN_MASTER_KEY": base64.b64encode(committed_db.master.current).decode(),
        "BOOKWARDEN_HOME": str(tmp_path / "home"),
        "BOOKWARDEN_AUDIT_SIGNING_KEY": base64.b64encode(key.private.private_bytes_raw()).decode(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    map_console(monkeypatch, committed_db)  # run by an operator, as tests/e2e/test_cli.py's cli_env is
    bw.db = committed_db
    yield env
    get_settings.cache_clear()


def bw(*args: str):
    """The command as `bookwarden` runs it: a BookwardenError ends it with exit code 2 and its message. An
    institution's bundle is exported through a grant (`granted`), as its operator would."""
    from bookwarden.cli import app

    try:
        return CliRunner().invoke(app, granted(bw.db, args), catch_exceptions=False)
    except BookwardenError as exc:
        return SimpleNamespace(exit_code=2, output=exc.detail, stdout="")


bw.db = None  # the committed database, once a test's cli_env has set it


def write_events(db, tenant_id, count: int) -> None:
    who = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset())
    context = audit.Context(who, "192.0.2.7", "Mozilla/5.0 ünïcode\x7f", "req-1")
    with audit.acting(context):
        for n in range(count):
            with tenant_session(db, tenant_id) as session:
                audit.record(session, Action.PATRON_VIEWED, ("patron", uuid.uuid4()),
                             details={"fields": ["name", "email"], "n": n, "note": "çà et là", "none": None})


def seal(db, tenant_id, key) -> signing.Checkpoint:
    with tenant_session(db, tenant_id) as session:
        return checkpoints.make_checkpoint(session, key)


@pytest.fixture
def chain(committed_db, committed_tenant, key):
    """A tenant chain of 46 events: checkpoints at 30 and 40 (their own events at 31 and 41)."""
    tenant_id = committed_tenant()
    write_events(committed_db, tenant_id, 30)
    assert seal(committed_db, tenant_id, key).tree_size == 30
    write_events(committed_db, tenant_id, 9)
    assert seal(committed_db, tenant_id, key).tree_size == 40
    write_events(committed_db, tenant_id, 5)
    return tenant_id


def check(db, tenant_id, key, since=None) -> verify.ChainReport:
    return verify.verify_chain(db, tenant_id, signing.TrustedKeys(key.public), since)


def events(conn, tenant_id):
    return conn.execute(
        f"SELECT seq, {CONTENT}, prev_hash, hash FROM audit_events WHERE tenant_id = %s ORDER BY seq",  # noqa: S608
        (tenant_id,),
    ).fetchall()


def digest_of(row) -> bytes:
    _, id_, at, actor_kind, actor_id, grant_id, action, target_kind, target_id, outcome, source, agent, request, \
        details, _, event_format, commitment = row[:17]
    return Event(id_, at, actor_kind, actor_id, grant_id, action, target_kind, target_id, outcome, source, agent,
                 request, details, format=event_format,
                 context_commitment=bytes(commitment) if commitment is not None else None).body_digest()


def rechain(conn, tenant_id, first_seq: int = 1) -> None:
    """What a careful tamperer does after editing: recompute every digest and hash from `first_seq` on."""
    rows = events(conn, tenant_id)
    prev = bytes(rows[first_seq - 2][-1]) if first_seq > 1 else bytes(32)
    for row in rows[first_seq - 1 :]:
        digest = digest_of(row)
        link = chain_hash(prev, row[0], digest)
        conn.execute("UPDATE audit_events SET body_digest = %s, prev_hash = %s, hash = %s "
                     "WHERE tenant_id = %s AND seq = %s", (digest, prev, link, tenant_id, row[0]))
        prev = link
    conn.execute("UPDATE audit_heads SET seq = %s, hash = %s WHERE tenant_id = %s", (rows[-1][0], prev, tenant_id))


def test_a_clean_chain_verifies_from_genesis_and_since_a_checkpoint(committed_db, chain, key, cli_env):
    report = check(committed_db, chain, key)
    assert report.clean, report.finding
    assert (report.events, report.last_seq, report.checkpoints) == (46, 46, 2)
    since = check(committed_db, chain, key, since=30)
    assert since.clean and since.events == 16 and since.start.seq == 30
    result = bw("audit", "verify", "--tenant", str(chain))
    assert result.exit_code == 0, result.output
    assert "46 events" in result.stdout and "clean" in result.stdout
    assert bw("audit", "verify", "--tenant", str(chain), "--since", "40").exit_code == 0


def test_every_chain_including_the_platform_one_is_verified_and_the_run_is_recorded(committed_db, chain, key, cli_env):
    result = bw("audit", "verify")
    assert result.exit_code == 0, result.output
    assert str(PLATFORM_CHAIN) in result.stdout and str(chain) in result.stdout
    with tenant_session(committed_db, chain) as session:
        last = session.execute(text("SELECT action, outcome FROM audit_events ORDER BY seq DESC")).first()
    assert (last.action, last.outcome) == ("audit.verified", "succeeded")


def test_a_since_that_is_no_checkpoint_is_a_usage_error(chain, cli_env):
    result = bw("audit", "verify", "--tenant", str(chain), "--since", "7")
    assert result.exit_code == 2 and "no checkpoint" in result.output


def tamper_field(conn, t):
    conn.execute("UPDATE audit_events SET outcome = 'denied' WHERE tenant_id = %s AND seq = 7", (t,))


def tamper_details(conn, t):
    conn.execute("""UPDATE audit_events SET details = details || '{"n": 999}' WHERE tenant_id = %s AND seq = 12""",
                 (t,))


def tamper_delete(conn, t):
    conn.execute("DELETE FROM audit_events WHERE tenant_id = %s AND seq = 9", (t,))


def tamper_insert_forged(conn, t):
    """A forged event at seq 20, hashed correctly onto seq 19; the rest moved up one."""
    conn.execute("UPDATE audit_events SET seq = -seq WHERE tenant_id = %s AND seq >= 20", (t,))
    conn.execute("UPDATE audit_events SET seq = 1 - seq WHERE tenant_id = %s AND seq < 0", (t,))
    rows = events(conn, t)
    prev = bytes(rows[18][-1])
    forged = Event(uuid.uuid4(), datetime.now(UTC), "api_token", uuid.uuid4(), None, "patron.deleted", "patron",
                   uuid.uuid4(), "succeeded", "192.0.2.66", None, None, {})
    digest = forged.body_digest()
    conn.execute(
        "INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor_kind, actor_id, action, target_kind, "
        "target_id, outcome, source_address, details, body_digest, prev_hash, hash) "
        "VALUES (%s, 20, %s, %s, %s, %s, %s, %s, %s, %s, %s, '{}', %s, %s, %s)",
        (t, forged.id, forged.occurred_at, forged.actor_kind, forged.actor_id, forged.action, forged.target_kind,
         forged.target_id, forged.outcome, forged.source_address, digest, prev, chain_hash(prev, 20, digest)),
    )
    conn.execute("UPDATE audit_heads SET seq = seq + 1 WHERE tenant_id = %s", (t,))


def tamper_append_forged(conn, t):
    """A forged event after the head, hashed correctly onto the last one, the head left alone."""
    last = events(conn, t)[-1]
    forged_id = uuid.uuid4()
    digest = digest_of((*last[:1], forged_id, *last[2:]))
    conn.execute(
        f"INSERT INTO audit_events (tenant_id, seq, {CONTENT}, prev_hash, hash) "  # noqa: S608
        f"SELECT tenant_id, seq + 1, %s, occurred_at, actor_kind, actor_id, grant_id, action, "
        f"target_kind, target_id, outcome, source_address, user_agent, request_id, details, %s, format, "
        f"context_commitment, hash, %s "
        f"FROM audit_events WHERE tenant_id = %s AND seq = %s",
        (forged_id, digest, chain_hash(bytes(last[-1]), last[0] + 1, digest), t, last[0]),
    )


def tamper_swap(conn, t):
    """Rows 5 and 6 exchange their contents (digests too); seq and hashes stay where they were."""
    for old, new in ((5, -5), (6, 5), (-5, 6)):  # the rows change places...
        conn.execute("UPDATE audit_events SET seq = %s WHERE tenant_id = %s AND seq = %s", (new, t, old))
    conn.execute(  # ...and take back the links of the place they left
        "UPDATE audit_events e SET prev_hash = o.prev_hash, hash = o.hash FROM audit_events o "
        "WHERE e.tenant_id = %s AND o.tenant_id = e.tenant_id AND e.seq IN (5, 6) AND o.seq = 11 - e.seq",
        (t,),
    )


def tamper_cut_tail(conn, t):
    conn.execute("DELETE FROM audit_events WHERE tenant_id = %s AND seq > 35", (t,))
    conn.execute("UPDATE audit_heads h SET seq = 35, hash = e.hash FROM audit_events e "
                 "WHERE h.tenant_id = %s AND e.tenant_id = h.tenant_id AND e.seq = 35", (t,))


def tamper_delete_tail_only(conn, t):
    conn.execute("DELETE FROM audit_events WHERE tenant_id = %s AND seq > 44", (t,))


def tamper_rewrite(conn, t):
    """Change event 3 and recompute every digest, link and the head: only the signed checkpoint knows."""
    conn.execute("UPDATE audit_events SET outcome = 'failed' WHERE tenant_id = %s AND seq = 3", (t,))
    rechain(conn, t)


def tamper_rewrite_after_checkpoint(conn, t):
    conn.execute("UPDATE audit_events SET action = 'patron.listed' WHERE tenant_id = %s AND seq = 35", (t,))
    rechain(conn, t, 35)


def tamper_forged_checkpoint(conn, t):
    """A checkpoint at 46 made honestly over the events, but signed by a key the platform does not hold."""
    rows = events(conn, t)
    from bookwarden.audit.merkle import Frontier

    frontier = Frontier().extend(bytes(r[-1]) for r in rows)
    forged = signing.sign(signing.SigningKey.from_seed(os.urandom(32)), t, frontier, bytes(rows[-1][-1]),
                          datetime.now(UTC))
    conn.execute(
        "INSERT INTO audit_checkpoints VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (t, forged.tree_size, forged.root_hash, forged.last_hash, list(forged.frontier), forged.signed_at,
         forged.key_id, forged.signature),
    )


def tamper_checkpoint_root(conn, t):
    conn.execute("UPDATE audit_checkpoints SET root_hash = sha256(root_hash) WHERE tenant_id = %s AND tree_size = 30",
                 (t,))


def tamper_checkpoint_frontier(conn, t):
    conn.execute("UPDATE audit_checkpoints SET frontier[1] = sha256(frontier[1]) "
                 "WHERE tenant_id = %s AND tree_size = 40", (t,))


def tamper_checkpoint_size(conn, t):
    """The signed checkpoint at 40 claims to be at 39: its signature no longer covers what it says."""
    conn.execute("UPDATE audit_checkpoints SET tree_size = 39 WHERE tenant_id = %s AND tree_size = 40", (t,))


def tamper_float_detail(conn, t):
    """A value record() never writes (a float): reported, not a crash."""
    conn.execute("""UPDATE audit_events SET details = '{"ratio": 1.5e300}' WHERE tenant_id = %s AND seq = 14""", (t,))


def tamper_far_future(conn, t):
    """A time Python cannot even hold (year 20000): reported, not a crash."""
    conn.execute("UPDATE audit_events SET occurred_at = '20000-01-01' WHERE tenant_id = %s AND seq = 15", (t,))


TAMPERING = [
    (tamper_field, 7, "a field was changed"),
    (tamper_float_detail, 14, "a field was changed"),
    (tamper_far_future, 15, "a field was changed"),
    (tamper_details, 12, "a field was changed"),
    (tamper_delete, 9, "event missing"),
    (tamper_insert_forged, 20, "was inserted"),
    (tamper_append_forged, 47, "after the chain head"),
    (tamper_swap, 5, "hash is not"),
    (tamper_cut_tail, 36, "checkpoint at size 40"),
    (tamper_delete_tail_only, 45, "chain head is at seq 46"),
    (tamper_rewrite, 1, "events 1..16 do not match what the checkpoint at size 30 signed"),
    (tamper_rewrite_after_checkpoint, 33, "events 33..40 do not match what the checkpoint at size 40 signed"),
    (tamper_forged_checkpoint, None, "not trusted"),
    (tamper_checkpoint_root, None, "signature does not verify"),
    (tamper_checkpoint_frontier, None, "frontier does not fold"),
    (tamper_checkpoint_size, None, "signature does not verify"),
]


@pytest.mark.parametrize(("tamper", "seq", "words"), TAMPERING, ids=[t[0].__name__ for t in TAMPERING])
def test_tampering_is_detected_and_the_first_broken_event_named(committed_db, chain, key, superuser_conn, cli_env,
                                                                  tamper, seq, words):
    assert check(committed_db, chain, key).clean
    tamper(superuser_conn, chain)
    report = check(committed_db, chain, key)
    assert not report.clean
    assert words in report.finding.problem, report.finding
    assert report.finding.seq == seq, report.finding
    result = bw("audit", "verify", "--tenant", str(chain))
    assert result.exit_code == 1, result.output
    assert "TAMPERED" in result.stdout and words in result.stdout
    if seq is not None:
        assert f"seq {seq}" in result.stdout


def test_a_tampered_verdict_is_a_finding_not_a_failed_command(committed_db, chain, key, superuser_conn, cli_env):
    tamper_field(superuser_conn, chain)
    assert bw("audit", "verify", "--tenant", str(chain)).exit_code == 1
    action, outcome, details = superuser_conn.execute(
        "SELECT action, outcome, details FROM audit_events WHERE tenant_id = %s ORDER BY seq DESC LIMIT 1",
        (PLATFORM_CHAIN,),
    ).fetchone()
    # The command did its whole work: its run is console.command with the code; the finding is in audit.verified.
    assert (action, outcome, details["command"], details["exit_code"]) == ("console.command", "succeeded",
                                                                            "audit verify", 1)


def test_the_forged_row_is_named_with_its_event_id(committed_db, chain, key, superuser_conn):
    tamper_insert_forged(superuser_conn, chain)
    forged_id = superuser_conn.execute("SELECT id FROM audit_events WHERE tenant_id = %s AND seq = 20",
                                       (chain,)).fetchone()[0]
    assert check(committed_db, chain, key).finding.event_id == str(forged_id)


def test_unicode_and_control_characters_verify_through_the_reference_encoding(committed_db, committed_tenant, key):
    tenant_id = committed_tenant()
    write_events(committed_db, tenant_id, 3)  # the user agent holds ü and DEL: the fast path cannot escape them
    assert check(committed_db, tenant_id, key).clean


def test_a_chain_without_a_checkpoint_is_verified_by_its_links_and_head(committed_db, committed_tenant, key,
                                                                         superuser_conn):
    tenant_id = committed_tenant()
    write_events(committed_db, tenant_id, 4)
    assert check(committed_db, tenant_id, key).clean
    superuser_conn.execute("UPDATE audit_events SET request_id = 'req-2' WHERE tenant_id = %s AND seq = 2",
                           (tenant_id,))
    assert check(committed_db, tenant_id, key).finding.seq == 2


def test_checkpoints_are_made_when_due_and_extend_the_previous_frontier(committed_db, committed_tenant, key):
    tenant_id = committed_tenant()
    write_events(committed_db, tenant_id, 5)
    with tenant_session(committed_db, tenant_id) as session:
        assert checkpoints.make_checkpoint(session, key, every_events=10, every=None) is None  # 5 < 10, no time rule
        assert checkpoints.make_checkpoint(session, key, every_events=10, every=timedelta(minutes=10)) is None
        later = datetime.now(UTC) + timedelta(minutes=11)
        first = checkpoints.make_checkpoint(session, key, every_events=10, every=timedelta(minutes=10), now=later)
    assert first.tree_size == 5
    with tenant_session(committed_db, tenant_id) as session:  # only the seal's own event is new: not due
        much_later = datetime.now(UTC) + timedelta(hours=1)
        assert checkpoints.make_checkpoint(session, key, every_events=10, every=timedelta(minutes=10),
                                           now=much_later) is None
    write_events(committed_db, tenant_id, 10)
    made = checkpoints.checkpoint_all(committed_db, key, every_events=10, every=None)
    mine = [c for c in made if c.tenant_id == tenant_id]
    assert mine and mine[0].tree_size >= 16
    from bookwarden.audit import merkle

    with tenant_session(committed_db, tenant_id) as session:
        leaves = [bytes(h) for (h,) in session.execute(text("SELECT hash FROM audit_events ORDER BY seq"))]
        recorded = session.execute(text("SELECT action, details FROM audit_events WHERE action = 'audit.checkpointed' "
                                        "ORDER BY seq")).all()
    assert mine[0].root_hash == merkle.root(leaves[: mine[0].tree_size])
    assert recorded[0].details["tree_size"] == 5 and recorded[0].details["key_id"] == key.key_id
    assert check(committed_db, tenant_id, key).clean


def test_the_checkpoint_job_seals_every_chain_including_the_platform(committed_db, committed_tenant, key, cli_env):
    from bookwarden.jobs.service import handler_for

    tenant_id = committed_tenant()
    write_events(committed_db, tenant_id, 3)
    handler_for(checkpoints.CHECKPOINT_JOB)(committed_db, {"every_events": 1, "every_minutes": 10})
    with tenant_session(committed_db, tenant_id) as session:
        assert checkpoints.latest_checkpoint(session).tree_size == 3
    with tenant_session(committed_db, PLATFORM_CHAIN) as session:
        assert checkpoints.latest_checkpoint(session) is not None  # creating the tenant left platform events


def test_the_signer_refuses_to_seal_a_broken_chain(committed_db, chain, key, superuser_conn):
    from bookwarden.core.errors import IntegrityFailure

    tamper_field(superuser_conn, chain)  # before the last checkpoint: the signer does not recompute digests
    superuser_conn.execute("UPDATE audit_events SET prev_hash = sha256(prev_hash) WHERE tenant_id = %s AND seq = 43",
                           (chain,))
    with pytest.raises(IntegrityFailure, match="broken at seq 43"), tenant_session(committed_db, chain) as session:
        checkpoints.make_checkpoint(session, key)


def test_inclusion_and_consistency_proofs_from_the_command_line(committed_db, chain, key, cli_env):
    import json

    from bookwarden.audit import merkle

    result = bw("audit", "prove", "--tenant", str(chain), "--seq", "17")
    assert result.exit_code == 0, result.output
    proof = json.loads(result.stdout)
    assert proof["tree_size"] == 40 and proof["seq"] == 17
    assert merkle.verify_inclusion(bytes.fromhex(proof["leaf"]), 16, 40, [bytes.fromhex(h) for h in
                                   proof["inclusion_path"]], bytes.fromhex(proof["root_hash"]))
    checkpoint = signing.Checkpoint.from_json(proof["checkpoint"])
    assert signing.TrustedKeys(key.public).check(checkpoint) is None

    result = bw("audit", "prove", "--tenant", str(chain), "--from", "30", "--to", "40")
    assert result.exit_code == 0, result.output
    proof = json.loads(result.stdout)
    first, second = (signing.Checkpoint.from_json(proof[k]) for k in ("first", "second"))
    assert merkle.verify_consistency(30, 40, first.root_hash, second.root_hash,
                                     [bytes.fromhex(h) for h in proof["consistency_path"]])

    unsealed = bw("audit", "prove", "--tenant", str(chain), "--seq", "45")
    assert unsealed.exit_code == 2 and "not sealed" in unsealed.output
    assert bw("audit", "prove", "--tenant", str(chain)).exit_code == 2


def test_public_key_and_checkpoint_commands(committed_db, committed_tenant, key, cli_env):
    result = bw("audit", "public-key")
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[0] == signing.encode_public_key(key.public) and key.key_id in result.stdout
    tenant_id = committed_tenant()
    write_events(committed_db, tenant_id, 2)
    result = bw("audit", "checkpoint", "--tenant", str(tenant_id))
    assert result.exit_code == 0 and "checkpoint at size 2" in result.stdout
    # Its own audit.checkpointed event (seq 3) is new: sealed by the next one.
    assert "checkpoint at size 3" in bw("audit", "checkpoint", "--tenant", str(tenant_id)).stdout
    assert bw("audit", "checkpoint").exit_code == 0
    assert bw("audit", "verify", "--tenant", "platform").exit_code == 0


def test_the_key_file_is_made_0600_and_refused_when_others_can_read_it(tmp_path):
    import stat

    from bookwarden.core.config import Settings

    settings = Settings(home=tmp_path / "home")
    first = signing.load_signing_key(settings)
    path = tmp_path / "home" / signing.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing.load_signing_key(settings).public == first.public
    assert len(first.key_id) == 16
    path.chmod(0o640)
    with pytest.raises(signing.SigningKeyUnavailable, match="readable by others"):
        signing.load_signing_key(settings)
    with pytest.raises(signing.SigningKeyUnavailable, match="base64"):
        signing.load_signing_key(Settings(home=tmp_path, audit_signing_key="not base64!"))


def test_the_outcome_of_an_unverifiable_run_is_recorded_as_failed(committed_db, chain, key, superuser_conn, cli_env):
    tamper_delete(superuser_conn, chain)
    assert bw("audit", "verify", "--tenant", str(chain)).exit_code == 1
    with tenant_session(committed_db, chain) as session:
        last = session.execute(text("SELECT action, outcome, details FROM audit_events ORDER BY seq DESC")).first()
    assert (last.action, last.outcome, last.details["problem_seq"]) == ("audit.verified", Outcome.FAILED, 9)


# -- bundles ----------------------------------------------------------------------------------------


def export(chain, tmp_path) -> Path:
    path = tmp_path / "trail.tar.gz"
    result = bw("audit", "export", "--tenant", str(chain), "--output", str(path))
    assert result.exit_code == 0, result.output
    return path


def unpack(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def repack(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def lines(members) -> list[dict]:
    return [json.loads(line) for line in members[bundle.EVENTS].splitlines()]


def put_lines(members, edited: list[dict]) -> None:
    members[bundle.EVENTS] = b"".join(json.dumps(d, separators=(",", ":")).encode() + b"\n" for d in edited)


def rerender(tenant_id, event: dict, seq: int, prev: bytes) -> tuple[bytes, bytes]:
    """A line made as the exporter makes it, for `event` at `seq` after `prev`: (line, its chain hash)."""
    body = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(body).digest()
    link = chain_hash(prev, seq, digest)
    fields = msgspec.json.decode(body, type=bundle.EventFields)
    unmapped = bundle.Unmapped(msgspec.Raw(body), seq, digest.hex(), prev.hex(), link.hex())
    return bundle.render_line(str(tenant_id), fields, unmapped), link


def rewrite_from(members, tenant_id, first_seq: int, change) -> None:
    """The careful tamperer: edit, then recompute every digest and hash from `first_seq` on (and the head)."""
    raw = members[bundle.EVENTS].splitlines()
    out, prev = [], None
    for line in raw:
        data = json.loads(line)
        seq = data["unmapped"]["seq"]
        if seq < first_seq:
            out.append(line)
            prev = bytes.fromhex(data["unmapped"]["hash"])
            continue
        event = data["unmapped"]["event"]
        if seq == first_seq:
            change(event)
        line, prev = rerender(tenant_id, event, seq, prev if prev is not None else bytes(32))
        out.append(line)
    members[bundle.EVENTS] = b"".join(line + b"\n" for line in out)
    manifest = json.loads(members[bundle.MANIFEST])
    manifest["head"]["hash"] = prev.hex()
    members[bundle.MANIFEST] = json.dumps(manifest).encode()


def verify_file(path: Path, *extra: str):
    return bw("audit", "verify-bundle", str(path), *extra)


def test_a_bundle_verifies_offline_with_no_database_and_a_pinned_key(committed_db, chain, key, cli_env, tmp_path):
    path = export(chain, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    members = unpack(path)
    assert set(members) == {bundle.MANIFEST, bundle.EVENTS, bundle.CHECKPOINTS, bundle.PUBLIC_KEY}
    manifest = json.loads(members[bundle.MANIFEST])
    # The 46 written, and the export's grant: asked, approved, used (an institution's bundle is its data).
    assert manifest["events"]["count"] == 49 and manifest["tenant_id"] == str(chain)
    assert members[bundle.PUBLIC_KEY].decode().strip() == signing.encode_public_key(key.public)
    first = lines(members)[0]
    for ocsf_field in ("class_uid", "category_uid", "activity_id", "time", "actor", "metadata", "api",
                       "resources", "unmapped"):
        assert ocsf_field in first
    assert (first["class_uid"], first["activity_id"], first["metadata"]["sequence"]) == (6003, 2, 1)
    assert first["actor"]["user"]["type"] == "api_token"
    # The address and user agent are not in the hashed event, so not in the bundle: only their commitment.
    assert "src_endpoint" not in first and "http_request" not in first
    assert set(first["unmapped"]) == {"event", "seq", "body_digest", "prev_hash", "hash"}
    hashed = set(CONTENT.split(", ")) - {"body_digest", "format", "source_address", "user_agent"}
    assert set(first["unmapped"]["event"]) == hashed
    assert "192.0.2.7" not in members[bundle.EVENTS].decode() and "Mozilla" not in members[bundle.EVENTS].decode()

    nowhere = tmp_path / "nowhere"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKWARDEN_")} | {
        "BOOKWARDEN_HOME": str(nowhere),
        "BOOKWARDEN_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing",
    }
    pinned = signing.encode_public_key(key.public)
    result = subprocess.run([sys.executable, "-m", "bookwarden.cli", "audit", "verify-bundle", str(path),
                             "--public-key", pinned], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "49 events" in result.stdout and "clean" in result.stdout  # the 46, and the grant asked, approved, used
    assert not (nowhere / "pg").exists() and not (nowhere / "master.key").exists()
    unpinned = verify_file(path)
    assert unpinned.exit_code == 0 and "trusting the bundle's own public key" in unpinned.output


def test_a_bundle_reformatted_by_a_json_tool_still_verifies(chain, key, cli_env, tmp_path):
    path = export(chain, tmp_path)
    members = unpack(path)
    members[bundle.EVENTS] = b"".join(json.dumps(d, indent=None, sort_keys=True).encode() + b"\n"
                                      for d in lines(members))
    repack(path, members)
    assert verify_file(path, "--public-key", signing.encode_public_key(key.public)).exit_code == 0


def bundle_field(members, t):
    edited = lines(members)
    edited[6]["unmapped"]["event"]["outcome"] = "denied"
    edited[6]["status_detail"], edited[6]["status_id"] = "denied", 2
    put_lines(members, edited)


def bundle_ocsf_only(members, t):
    edited = lines(members)
    edited[10]["actor"]["user"]["uid"] = str(uuid.uuid4())  # what an auditor reads, not what was hashed
    put_lines(members, edited)


def bundle_delete(members, t):
    edited = lines(members)
    del edited[8]
    put_lines(members, edited)


def bundle_swap(members, t):
    edited = lines(members)
    for field_name in [*(k for k in edited[4] if k != "unmapped"), "event", "body_digest"]:
        first, second = edited[4], edited[5]
        if field_name in ("event", "body_digest"):
            first, second = first["unmapped"], second["unmapped"]
        first[field_name], second[field_name] = second[field_name], first[field_name]
    edited[4]["metadata"]["sequence"], edited[5]["metadata"]["sequence"] = 5, 6
    put_lines(members, edited)


def bundle_cut_tail(members, t):
    edited = lines(members)[:35]
    put_lines(members, edited)
    manifest = json.loads(members[bundle.MANIFEST])
    manifest["head"] = {"seq": 35, "hash": edited[-1]["unmapped"]["hash"]}
    members[bundle.MANIFEST] = json.dumps(manifest).encode()


def bundle_rewrite(members, t):
    rewrite_from(members, t, 3, lambda event: event.update(outcome="failed"))


def bundle_checkpoint_root(members, t):
    signed = json.loads(members[bundle.CHECKPOINTS])
    signed[0]["root_hash"] = hashlib.sha256(b"other").hexdigest()
    members[bundle.CHECKPOINTS] = json.dumps(signed).encode()


def bundle_resigned(members, t):
    """Rewrite the events and sign fresh checkpoints with the tamperer's own key, shipped in the bundle."""
    bundle_rewrite(members, t)
    from bookwarden.audit.merkle import Frontier

    own = signing.SigningKey.from_seed(os.urandom(32))
    leaves = [bytes.fromhex(d["unmapped"]["hash"]) for d in lines(members)]
    signed = [signing.sign(own, t, Frontier().extend(leaves[:size]), leaves[size - 1], datetime.now(UTC)).as_json()
              for size in (30, 40)]
    members[bundle.CHECKPOINTS] = json.dumps(signed).encode()
    members[bundle.PUBLIC_KEY] = signing.encode_public_key(own.public).encode()


BUNDLE_TAMPERING = [
    (bundle_field, 7, "a field was changed"),
    (bundle_ocsf_only, 11, "OCSF fields of its line differ"),
    (bundle_delete, 9, "event missing"),
    (bundle_swap, 5, "hash is not"),
    (bundle_cut_tail, 36, "checkpoint at size 40"),
    (bundle_rewrite, 1, "events 1..16 do not match what the checkpoint at size 30 signed"),
    (bundle_checkpoint_root, None, "signature does not verify"),
    (bundle_resigned, None, "not trusted"),
]


@pytest.mark.parametrize(("tamper", "seq", "words"), BUNDLE_TAMPERING, ids=[t[0].__name__ for t in BUNDLE_TAMPERING])
def test_editing_a_bundle_is_detected_by_verify_bundle(chain, key, cli_env, tmp_path, tamper, seq, words):
    path = export(chain, tmp_path)
    members = unpack(path)
    tamper(members, chain)
    repack(path, members)
    report, _ = bundle.verify_bundle(path, [key.public])
    assert not report.clean and words in report.finding.problem, report.finding
    assert report.finding.seq == seq, report.finding
    result = verify_file(path, "--public-key", signing.encode_public_key(key.public))
    assert result.exit_code == 1 and "TAMPERED" in result.stdout and words in result.stdout
    if seq is not None:
        assert f"seq {seq}" in result.stdout


def test_a_resigned_bundle_passes_only_when_its_own_key_is_trusted(chain, key, cli_env, tmp_path):
    path = export(chain, tmp_path)
    members = unpack(path)
    bundle_resigned(members, chain)
    repack(path, members)
    assert verify_file(path).exit_code == 0  # self-consistent: why the key must be pinned
    assert verify_file(path, "--public-key", signing.encode_public_key(key.public)).exit_code == 1


def test_a_file_that_is_no_bundle_is_a_usage_error(tmp_path, cli_env):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    result = verify_file(junk)
    assert result.exit_code == 2 and "not a readable bundle" in result.output


def test_a_bundle_in_another_member_order_verifies_and_a_truncated_one_is_refused(chain, key, cli_env, tmp_path):
    path = export(chain, tmp_path)
    members = unpack(path)
    repack(path, dict(reversed(members.items())))  # events first: read by random access
    assert verify_file(path, "--public-key", signing.encode_public_key(key.public)).exit_code == 0
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(export(chain, tmp_path).read_bytes()[:-200])
    result = verify_file(cut)
    assert result.exit_code == 2 and "not a readable bundle" in result.output


def test_verifying_a_chain_while_it_grows_reports_no_false_tampering(committed_db, chain, key):
    import threading

    stop = threading.Event()
    failures = []

    def keep_writing():
        try:
            while not stop.is_set():
                write_events(committed_db, chain, 1)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        reports = [check(committed_db, chain, key) for _ in range(25)]
    finally:
        stop.set()
        writer.join()
    assert failures == []
    assert all(r.clean for r in reports), [str(r.finding) for r in reports if not r.clean]
    assert reports[-1].events > reports[0].events
