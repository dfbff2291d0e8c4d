"""The rootkit checks, each a function of what it looks at (a /proc, a pid range, roots...), so tests point it at a
sandbox they plant, and the service at the real machine.

Each check compares two views the kernel gives of the same thing; a rootkit that hides something from one view
(the /proc listing, /proc/net, a directory listing) seldom hides it from the other (a signal, a bind, a stat).
Every disagreement is confirmed a second time before it is reported: processes and sockets come and go between
two looks, and a finding on a clean machine is a defect, not caution.

What they cannot see: a kernel rootkit that hides a process from both /proc and signal delivery, or a socket from
both /proc/net and bind(), or files from stat() too, leaves the two views agreeing. Only a view from outside the
running kernel (a scan of the disk from another system, memory forensics) finds those.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

IFF_PROMISC = 0x100


class Kind:
    HIDDEN_PROCESS = "rootcheck.hidden_process"
    HIDDEN_PORT = "rootcheck.hidden_port"
    ROOTKIT_FILE = "rootcheck.rootkit_file"
    SUID_FILE = "rootcheck.suid_file"
    WORLD_WRITABLE = "rootcheck.world_writable"
    PROMISCUOUS = "rootcheck.promiscuous_interface"


@dataclass(frozen=True)
class Finding:
    action: str  # a Kind
    subject: str  # the pid, "tcp/8080", the path, the interface
    detail: str
    fields: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action, "subject": self.subject, "detail": self.detail, **self.fields}


# -- processes ---------------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Whether a process (or thread) `pid` exists, by sending it no signal (kill -0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; we may not signal it
    return True


def _listed(proc: Path) -> set[int]:
    return {int(name) for name in os.listdir(proc) if name.isdigit()}


def _thread(proc: Path, pid: int) -> bool:
    """Whether `pid` is a thread of another process: /proc lists thread-group leaders only, yet a signal reaches
    any thread id. A thread's status names another Tgid."""
    try:
        with open(proc / str(pid) / "status") as status:
            for line in status:
                if line.startswith("Tgid:"):
                    return int(line.split()[1]) != pid
    except (OSError, ValueError):
        return False
    return False


def hidden_processes(proc: Path = Path("/proc"), pids: Iterable[int] | None = None) -> list[Finding]:
    """Processes that answer signal 0 but are not in the /proc listing.

    A pid seen alive and not listed is looked at again (listing and signal both, twice): one that was born after
    the listing shows up in the next one; one that ended no longer answers. Only a pid alive and unlisted three
    times over is reported. Threads (alive, unlisted by design) are told apart by their Tgid.
    """
    if pids is None:
        pids = range(1, _pid_max(proc) + 1)
    listed = _listed(proc)
    suspects = [pid for pid in pids if pid not in listed and _alive(pid)]
    findings = []
    for pid in suspects:
        hidden = True
        for _ in range(2):
            if pid in _listed(proc) or not _alive(pid) or _thread(proc, pid):
                hidden = False
                break
        if hidden:
            findings.append(
                Finding(
                    Kind.HIDDEN_PROCESS, str(pid), f"process {pid} answers signal 0 but is not in {proc}", {"pid": pid}
                )
            )
    return findings


def _pid_max(proc: Path) -> int:
    try:
        return int((proc / "sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return int(Path("/proc/sys/kernel/pid_max").read_text())


# -- ports -------------------------------------------------------------------------------------------------------

PROTOCOLS = {"tcp": (socket.SOCK_STREAM, ("tcp", "tcp6")), "udp": (socket.SOCK_DGRAM, ("udp", "udp6"))}


def _ports_in(proc_net: Path, tables: Iterable[str]) -> set[int]:
    """Local ports of every socket /proc/net lists in `tables` (any state: listening, connected, time-wait)."""
    ports = set()
    for table in tables:
        try:
            lines = (proc_net / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 1 and ":" in parts[1]:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def _in_use(kind: int, port: int) -> bool:
    """Whether binding `port` on every IPv4 address is refused as in use (no SO_REUSEADDR, so any socket on the
    port refuses it). A port we may not bind (below 1024 without privilege) is not known to be in use."""
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - a probe, closed at once, never listening
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _accepts(port: int) -> bool:
    """Whether something accepts a TCP connection on `port` at a local address (loopback, then the host's own)."""
    addresses = ["127.0.0.1"]
    with contextlib.suppress(OSError):  # no name for this host: loopback alone
        addresses += sorted({info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)})
    for address in addresses:
        try:
            with socket.create_connection((address, port), timeout=1):
                return True
        except OSError:
            continue
    return False


def hidden_ports(
    proc_net: Path = Path("/proc/net"),
    ports: Iterable[int] = range(1, 65536),
    protocols: Iterable[str] = ("tcp", "udp"),
) -> list[Finding]:
    """Ports some socket holds (a bind is refused) that /proc/net does not list; for TCP, that accept a connection.

    /proc/net is read after the probe and again after a second probe: a connection that closed between the two
    looks frees the port (the second bind succeeds); one that opened shows up in the fresh table.
    """
    findings = []
    for protocol in protocols:
        kind, tables = PROTOCOLS[protocol]
        candidates = list(ports)
        listed = _ports_in(proc_net, tables)
        suspects = [port for port in candidates if port not in listed and _in_use(kind, port)]
        for port in suspects:
            if port in _ports_in(proc_net, tables) or not _in_use(kind, port):
                continue
            # A TCP socket that is bound but neither listening nor connected (a program reserving a port, as tests
            # and servers do before listen()) holds the port and is in no /proc/net table, yet nothing can reach
            # it: only a port that accepts a connection is a hidden listener.
            if protocol == "tcp" and not _accepts(port):
                continue
            if port in _ports_in(proc_net, tables):
                continue
            findings.append(
                Finding(
                    Kind.HIDDEN_PORT,
                    f"{protocol}/{port}",
                    f"{protocol} port {port} is bound (a bind is refused) but {proc_net} lists no socket on it",
                    {"protocol": protocol, "port": port},
                )
            )
    return findings


# -- files -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    path: str
    name: str


def signatures(text: str | None = None) -> list[Signature]:
    """The known rootkit paths: `rootkit_files.txt` shipped here (or `text` in its format: path ! name)."""
    if text is None:
        text = (resources.files("bookwarden.monitor.rootcheck") / "rootkit_files.txt").read_text()
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        path, _, name = line.partition("!")
        found.append(Signature(path.strip(), name.strip() or "unknown"))
    return found


def rootkit_files(root: Path = Path("/"), known: Iterable[Signature] | None = None) -> list[Finding]:
    """Known rootkit files and folders present under `root` (lstat: a dangling link counts as present)."""
    findings = []
    for signature in signatures() if known is None else known:
        path = root / signature.path.lstrip("/")
        try:
            os.lstat(path)
        except OSError:
            continue
        findings.append(
            Finding(
                Kind.ROOTKIT_FILE,
                str(path),
                f"{path} is a known file of {signature.name}",
                {"path": str(path), "rootkit": signature.name},
            )
        )
    return findings


def _files(roots: Iterable[Path]) -> Iterator[tuple[str, os.stat_result]]:
    for root in roots:
        try:
            found = os.lstat(root)
        except FileNotFoundError:
            continue
        yield str(root), found
        if not stat.S_ISDIR(found.st_mode):
            continue
        pending = [str(root)]
        while pending:
            folder = pending.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        yield entry.path, info
                        if stat.S_ISDIR(info.st_mode):
                            pending.append(entry.path)
            except OSError:
                continue


def suid_files(roots: Iterable[Path], allowed: Iterable[str] = ()) -> list[Finding]:
    """Regular files with the set-user-id or set-group-id bit that the baseline (`allowed`) does not hold."""
    expected = {os.path.normpath(path) for path in allowed}
    findings = []
    for path, info in _files(roots):
        if not stat.S_ISREG(info.st_mode) or not info.st_mode & (stat.S_ISUID | stat.S_ISGID):
            continue
        if os.path.normpath(path) in expected:
            continue
        bits = "+".join(name for bit, name in ((stat.S_ISUID, "suid"), (stat.S_ISGID, "sgid")) if info.st_mode & bit)
        findings.append(
            Finding(
                Kind.SUID_FILE,
                path,
                f"{path} is {bits} (mode {stat.S_IMODE(info.st_mode):04o}, owner {info.st_uid}), not in the baseline",
                {"path": path, "mode": f"{stat.S_IMODE(info.st_mode):04o}", "owner": info.st_uid},
            )
        )
    return findings


def world_writable(roots: Iterable[Path]) -> list[Finding]:
    """Files and folders anyone may write in the protected paths (links are 0777 by nature and left out)."""
    findings = []
    for path, info in _files(roots):
        if stat.S_ISLNK(info.st_mode) or not info.st_mode & stat.S_IWOTH:
            continue
        findings.append(
            Finding(
                Kind.WORLD_WRITABLE,
                path,
                f"{path} is writable by anyone (mode {stat.S_IMODE(info.st_mode):04o}) in a protected path",
                {"path": path, "mode": f"{stat.S_IMODE(info.st_mode):04o}"},
            )
        )
    return findings


# -- interfaces --------------------------------------------------------------------------------------------------


def promiscuous_interfaces(sys_class_net: Path = Path("/sys/class/net")) -> list[Finding]:
    """Network interfaces in promiscuous mode (IFF_PROMISC in their flags): a sniffer's mark.

    A port of a bridge is promiscuous by design (the bridge must see every frame), so one with `brport` is not
    reported.
    """
    findings = []
    try:
        names = sorted(os.listdir(sys_class_net))
    except FileNotFoundError:
        return []
    for name in names:
        try:
            flags = int((sys_class_net / name / "flags").read_text().strip(), 16)
        except (OSError, ValueError):
            continue
        if flags & IFF_PROMISC and not (sys_class_net / name / "brport").exists():
            findings.append(
                Finding(
                    Kind.PROMISCUOUS,
                    name,
                    f"interface {name} is in promiscuous mode (flags {flags:#x})",
                    {"interface": name, "flags": f"{flags:#x}"},
                )
            )
    return findings
