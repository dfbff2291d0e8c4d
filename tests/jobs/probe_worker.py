"""`bookwarden worker` in a real process, with one more job kind: `probe.work`, which leaves its trace in a file.

Run as `python -m tests.jobs.probe_worker worker --name w1` from the repository: the command is the real one
(signals, settings, schedules, leases); only the probe's handler is added. A probe job writes
`start MARKER WORKER_PID` when it begins and `done MARKER WORKER_PID` when it ends, one line each (O_APPEND, so
lines from several processes never interleave), and works for `seconds` or until the file `hurry` appears
beside the trace.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bookwarden.jobs.service import handler

PROBE = "probe.work"


@handler(PROBE)
def probe(_db, payload: dict) -> None:
    trace = Path(payload["trace"])
    _line(trace, f"start {payload['marker']} {os.getpid()} {time.time():.3f}")
    ends = time.monotonic() + float(payload["seconds"])
    while time.monotonic() < ends and not (trace.parent / "hurry").exists():
        time.sleep(0.02)
    _line(trace, f"done {payload['marker']} {os.getpid()} {time.time():.3f}")


def _line(trace: Path, text: str) -> None:
    fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


if __name__ == "__main__":
    from bookwarden.cli import main

    main()
