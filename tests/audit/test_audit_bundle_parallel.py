"""Bundle verification in worker processes finds exactly what the sequential path finds: every edit of a
bundle, at the same event, with lines cut into small blocks so that edits sit on block boundaries."""

from __future__ import annotations

import json
import threading

import pytest

from bookwarden.audit import bundle
from tests.audit.test_audit_integrity import (  # noqa: F401 - fixtures
    BUNDLE_TAMPERING,
    chain,
    cli_env,
    export,
    key,
    lines,
    put_lines,
    repack,
    unpack,
)


@pytest.fixture
def in_workers(monkeypatch):
    """Every bundle verified by worker processes, in blocks of a few lines; counts the parallel runs."""
    runs = []
    parallel = bundle._parallel_links

    def counted(member, tenant_id, workers):
        runs.append(workers)
        return parallel(member, tenant_id, workers)

    monkeypatch.setattr(bundle, "PARALLEL_FROM", 0)
    monkeypatch.setattr(bundle, "BLOCK", 4096)  # about 4 lines a block
    # Forked explicitly: a test process may have threads alive that earlier tests left (the browser
    # session of the e2e tests, which a pytest-xdist worker may have run first), and `_fork_is_safe`
    # would then decline. The children only check blocks of lines, touching no lock of those threads;
    # the decision itself is tested below.
    monkeypatch.setattr(bundle, "_fork_is_safe", lambda: True)
    monkeypatch.setattr(bundle, "_parallel_links", counted)
    return runs


def test_no_worker_is_forked_while_another_thread_runs():
    large = {"events": {"count": bundle.PARALLEL_FROM * 10}}
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not bundle._fork_is_safe()
        assert bundle._workers(large) == 0
    finally:
        release.set()
        other.join()


def test_a_clean_bundle_verifies_in_workers(chain, key, cli_env, tmp_path, in_workers):  # noqa: F811
    report, _ = bundle.verify_bundle(export(chain, tmp_path), [key.public])
    assert report.clean, report.finding
    assert report.events == 49 and report.checkpoints == 2  # the 46, and the export's grant: asked, approved, used
    assert in_workers and in_workers[0] >= 2


@pytest.mark.parametrize(("tamper", "seq", "words"), BUNDLE_TAMPERING, ids=[t[0].__name__ for t in BUNDLE_TAMPERING])
def test_every_edit_is_found_at_the_same_event_in_workers(chain, key, cli_env, tmp_path, in_workers, tamper, seq,  # noqa: F811
                                                         words):
    path = export(chain, tmp_path)
    members = unpack(path)
    tamper(members, chain)
    repack(path, members)
    report, _ = bundle.verify_bundle(path, [key.public])
    assert not report.clean and words in report.finding.problem, report.finding
    assert report.finding.seq == seq, report.finding
    assert in_workers


@pytest.mark.parametrize("at", [0, 1, 2, 3, 4, 5, 20])
@pytest.mark.usefixtures("cli_env", "in_workers")
def test_an_unreadable_line_is_named_wherever_it_falls_in_a_block(chain, key, tmp_path, at):  # noqa: F811
    path = export(chain, tmp_path)
    members = unpack(path)
    edited = [json.dumps(d, separators=(",", ":")).encode() for d in lines(members)]
    edited[at] = b'{"not": "an event"}'
    members[bundle.EVENTS] = b"".join(line + b"\n" for line in edited)
    repack(path, members)
    report, _ = bundle.verify_bundle(path, [key.public])
    sequential = _sequentially(path, key)
    assert not report.clean and f"line {at + 1} of events.jsonl" in report.finding.problem
    assert (report.finding.seq, report.finding.problem) == (sequential.seq, sequential.problem)
    assert report.finding.seq == (at + 1 if at else None)


def _sequentially(path, signing_key):
    saved = bundle.PARALLEL_FROM
    bundle.PARALLEL_FROM = 10**9
    try:
        report, _ = bundle.verify_bundle(path, [signing_key.public])
    finally:
        bundle.PARALLEL_FROM = saved
    return report.finding


def test_a_re_serialised_bundle_takes_the_full_path_and_still_verifies_in_workers(chain, key, cli_env, tmp_path,  # noqa: F811
                                                                                   in_workers):
    path = export(chain, tmp_path)
    members = unpack(path)
    put_lines(members, lines(members))  # json.dumps layout: every line differs from what export writes
    repack(path, members)
    report, _ = bundle.verify_bundle(path, [key.public])
    assert report.clean, report.finding
    assert in_workers
