"""The optional command run on each block and unblock (BOOKWARDEN_MONITOR_BLOCK_HOOK), e.g. to update an
nftables set so the block also holds below the platform (sshd, other services).

Run by a worker from the job queue (monitor/response/jobs.py), after the block committed: an argument list,
never a shell (an address cannot become a command), with a timeout, standard input closed. Its arguments are the
configured argv, then `block NETWORK SECONDS` or `unblock NETWORK`. A failure (non-zero exit, timeout, missing
program) is logged and audited (monitor.block_hook_ran, outcome failed) and never retried: the platform's own
block stands either way, and the expiry's unblock tells the hook again.
"""

from __future__ import annotations

import subprocess

import structlog

from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.record import record
from bookwarden.core.config import Settings
from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import Database, platform_session
from bookwarden.monitor.response.addresses import parse_network

log = structlog.get_logger()


def run_hook(db: Database, settings: Settings, payload: dict) -> bool:
    """Run the hook for one block or unblock; True when it exited 0. Records the run in the platform's chain."""
    command = list(settings.monitor_block_hook)
    action = payload.get("action")
    network = str(parse_network(str(payload.get("network"))))  # a value from our own row, checked again
    if not command or action not in ("block", "unblock"):
        return False
    argv = [*command, action, network]
    if action == "block":
        argv.append(str(int(payload.get("seconds") or 0)))
    details: dict = {"action": action, "program": command[0]}
    try:
        finished = subprocess.run(  # noqa: S603 - an argument list from the settings, no shell
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=settings.monitor_block_hook_timeout,
            check=False,
        )
        details["exit_code"] = finished.returncode
        ok = finished.returncode == 0
        if not ok:
            details["failure"] = "exited non-zero"
            log.warning(
                "monitor.hook_failed",
                exit_code=finished.returncode,
                stderr=finished.stderr[-500:].decode(errors="replace"),
            )
    except subprocess.TimeoutExpired:
        ok, details["failure"] = False, f"timed out after {settings.monitor_block_hook_timeout}s"
        log.warning("monitor.hook_failed", failure=details["failure"])
    except OSError as exc:
        ok, details["failure"] = False, f"could not start: {exc.strerror or type(exc).__name__}"
        log.warning("monitor.hook_failed", failure=details["failure"])
    with platform_session(db) as session:
        outcome = Outcome.SUCCEEDED if ok else Outcome.FAILED
        record(session, Action.BLOCK_HOOK_RAN, ("address_block", None), outcome=outcome, details=details, actor=SYSTEM)
    return ok
