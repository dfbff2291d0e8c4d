"""Rootcheck: each kind of finding planted in a sandbox the test builds, and a clean machine that raises none."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from bookwarden.core.config import Settings
from bookwarden.core.errors import Forbidden
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session
from bookwarden.monitor.engine import Engine
from bookwarden.monitor.fim.models import HostScan
from bookwarden.monitor.rootcheck import checks, service
from bookwarden.monitor.rootcheck.checks import Kind, Signature
from bookwarden.monitor.sigma.load import builtin_paths, load


def operator(role: BuiltinRole = BuiltinRole.OPERATOR_OPS) -> Principal:
    return Principal(PrincipalKind.CONSOLE, uuid.uuid4(), None, BUILTIN_PERMISSIONS[role])


# -- processes --------------------------------------------------------------------------------------------------


def fake_proc(tmp_path: Path, leave_out: set[int]) -> Path:
    """A copy of /proc's listing (empty folders) without the pids in `leave_out`: a /proc a rootkit filtered."""
    proc = tmp_path / "proc"
    proc.mkdir()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in leave_out:
            (proc / name).mkdir()
    return proc


@pytest.fixture
def sleeper():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


def test_a_process_missing_from_proc_but_answering_signal_0_is_hidden(tmp_path, sleeper):
    proc = fake_proc(tmp_path, leave_out={sleeper.pid})
    found = checks.hidden_processes(proc, pids=[os.getpid(), sleeper.pid])
    assert [(f.action, f.fields["pid"]) for f in found] == [(Kind.HIDDEN_PROCESS, sleeper.pid)]


def test_a_process_that_ended_is_not_hidden(tmp_path, sleeper):
    proc = fake_proc(tmp_path, leave_out={sleeper.pid})
    sleeper.kill()
    sleeper.wait()
    assert checks.hidden_processes(proc, pids=[sleeper.pid]) == []


def test_threads_answer_signals_without_being_listed_and_are_not_hidden():
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert worker.native_id not in {int(n) for n in os.listdir("/proc") if n.isdigit()}
        assert checks.hidden_processes(Path("/proc"), pids=[worker.native_id, os.getpid()]) == []
    finally:
        stop.set()
        worker.join()


# -- ports ------------------------------------------------------------------------------------------------------


def fake_proc_net(tmp_path: Path, port: int) -> Path:
    """A copy of /proc/net's socket tables without the sockets on `port`."""
    net = tmp_path / "net"
    net.mkdir()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        lines = Path("/proc/net", table).read_text().splitlines(keepends=True)
        kept = [lines[0]] + [line for line in lines[1:] if int(line.split()[1].rsplit(":", 1)[1], 16) != port]
        (net / table).write_text("".join(kept))
    return net


@pytest.mark.parametrize(("protocol", "kind"), [("tcp", socket.SOCK_STREAM), ("udp", socket.SOCK_DGRAM)])
def test_a_bound_port_missing_from_proc_net_is_hidden(tmp_path, protocol, kind):
    with socket.socket(socket.AF_INET, kind) as held:
        held.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            held.listen()
        port = held.getsockname()[1]
        net = fake_proc_net(tmp_path, port)
        found = checks.hidden_ports(net, ports=[port], protocols=[protocol])
        assert [(f.action, f.subject) for f in found] == [(Kind.HIDDEN_PORT, f"{protocol}/{port}")]
        assert checks.hidden_ports(Path("/proc/net"), ports=[port], protocols=[protocol]) == []  # listed there
    # Closed: nothing holds the port any more, whatever the tables say.
    assert checks.hidden_ports(net, ports=[port], protocols=[protocol]) == []


def test_a_tcp_port_only_bound_is_in_no_table_but_accepts_nothing_so_is_not_hidden():
    # What a program does to reserve a port before listen(): Linux lists the socket in no /proc/net table.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as reserved:
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        assert port not in checks._ports_in(Path("/proc/net"), ("tcp", "tcp6"))
        assert checks.hidden_ports(Path("/proc/net"), ports=[port], protocols=["tcp"]) == []


# -- files ------------------------------------------------------------------------------------------------------


def test_a_known_rootkit_file_is_found_under_the_root(tmp_path):
    root = tmp_path / "sandbox"
    (root / "usr/lib/libsh").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "dev/.golf").write_text("")
    found = checks.rootkit_files(root)
    assert sorted((f.action, f.fields["rootkit"], f.subject) for f in found) == [
        (Kind.ROOTKIT_FILE, "romanian rootkit", str(root / "dev/.golf")),
        (Kind.ROOTKIT_FILE, "shv4 / shv5", str(root / "usr/lib/libsh")),
    ]
    assert checks.rootkit_files(root, [Signature("/usr/bin/nothing-here", "none")]) == []


def test_the_shipped_signature_list_is_read_whole():
    known = checks.signatures()
    assert len(known) > 60
    assert all(s.path.startswith("/") and s.name for s in known)


def test_a_suid_or_sgid_file_not_in_the_baseline_is_found(tmp_path):
    root = tmp_path / "bin"
    root.mkdir()
    for name, bits in (("planted", stat.S_ISUID), ("group", stat.S_ISGID), ("known", stat.S_ISUID), ("plain", 0)):
        (root / name).write_text("#!/bin/sh\n")
        os.chmod(root / name, 0o755 | bits)  # noqa: S103 - planted
    found = checks.suid_files([root], allowed=[str(root / "known")])
    assert sorted(f.subject for f in found) == [str(root / "group"), str(root / "planted")]
    assert {f.action for f in found} == {Kind.SUID_FILE}


def test_a_world_writable_file_in_a_protected_path_is_found(tmp_path):
    root = tmp_path / "app"
    root.mkdir()
    (root / "ok.py").write_text("")
    (root / "open.py").write_text("")
    os.chmod(root / "open.py", 0o666)  # noqa: S103 - planted
    (root / "link").symlink_to(root / "ok.py")  # links are 0777 by nature: not a finding
    found = checks.world_writable([root])
    assert [(f.action, f.subject, f.fields["mode"]) for f in found] == [
        (Kind.WORLD_WRITABLE, str(root / "open.py"), "0666")
    ]


# -- interfaces -------------------------------------------------------------------------------------------------


def test_a_promiscuous_interface_is_found_but_not_a_bridge_port(tmp_path):
    net = tmp_path / "class_net"
    for name, flags, bridged in (("eth0", "0x1003", False), ("eth1", "0x1103", False), ("veth9", "0x1103", True)):
        (net / name).mkdir(parents=True)
        (net / name / "flags").write_text(flags + "\n")
        if bridged:
            (net / name / "brport").mkdir()
    found = checks.promiscuous_interfaces(net)
    assert [(f.action, f.subject) for f in found] == [(Kind.PROMISCUOUS, "eth1")]


# -- the machine ------------------------------------------------------------------------------------------------


def test_a_clean_run_of_this_machine_raises_no_finding(home):
    """Every check, over its whole default range (every pid, every port, /, the protected paths), on this machine:
    false positives are a defect."""
    home.mkdir(parents=True, exist_ok=True)
    findings, seconds = service.check_machine(Settings(home=home), allowed_suid=[])
    assert findings == [], [f.detail for f in findings]
    assert set(seconds) == set(service.CHECKS)


def test_a_run_is_kept_audited_and_its_findings_alert(db, home, tmp_path):
    home.mkdir(parents=True, exist_ok=True)
    planted = tmp_path / "app"
    planted.mkdir()
    (planted / "open.conf").write_text("")
    os.chmod(planted / "open.conf", 0o666)  # noqa: S103 - planted
    settings = Settings(home=home, fim_paths=str(planted), rootcheck_suid_roots="")
    with pytest.raises(Forbidden):
        service.rootcheck(db, operator(BuiltinRole.OPERATOR_SUPPORT), settings)
    result = service.rootcheck(db, operator(), settings, only=("world_writable", "suid"))
    assert [f.action for f in result.findings] == [Kind.WORLD_WRITABLE]
    with platform_session(db) as session:
        kept = session.scalars(select(HostScan).where(HostScan.id == result.run_id)).one()
    assert kept.check_kind == "rootcheck" and kept.findings == 1
    assert kept.details[0]["path"] == str(planted / "open.conf")
    events = service.findings_as_events(result.findings)
    engine = Engine(load(builtin_paths()))
    assert [a.rule for e in events for a in engine.feed(e)] == ["host_rootcheck_finding"]
