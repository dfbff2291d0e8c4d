"""Overwrite throughput of our NIST SP 800-88 clear (backup/wipe.py) against `shred -n 1` on the same files.

Files of several sizes (an export, tenant packages, small files; 256 MiB in all, `--quick` 48 MiB) are written
once in a temporary folder; then, alternately, every file is overwritten in place by one pass of pseudo-random
data and synced: by `wipe.overwrite(path, NIST_CLEAR)` and by `shred -n 1 FILE` (GNU coreutils, which also
syncs its pass). Nothing is removed between runs, so both overwrite the same blocks. The DoD 5220.22-M method
(three passes and a verification read) is timed too, for information. The summary is MB/s, ours against
shred's, the median of RUNS; the target ratio is >= 0.8.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import harness
from bookwarden.backup import wipe

NAME = "wipe"
TARGET = 0.8
RUNS = 3
MIB = 1024 * 1024
# (count, size): one large export, some packages, many small files.
FULL = ((1, 160 * MIB), (8, 10 * MIB), (256, 64 * 1024))
QUICK = ((1, 32 * MIB), (4, 3 * MIB), (64, 64 * 1024))


def run(quick: bool) -> Iterator[dict[str, Any]]:
    shred = shutil.which("shred")
    if shred is None:
        raise SystemExit("shred (GNU coreutils) is needed as the baseline")
    scratch = Path(tempfile.mkdtemp(prefix="bookwarden-bench-wipe-", dir=os.environ.get("TMPDIR")))
    try:
        files = _files(scratch, QUICK if quick else FULL)
        total = sum(f.stat().st_size for f in files)
        yield {"bench": NAME, "event": "setup", "quick": quick, "files": len(files), "bytes": total,
               "cpus": os.cpu_count(), "load_average_1m": harness.load_average(),
               "code": harness.code_fingerprint(wipe)}  # fmt: skip
        ours, theirs, dod = [], [], []
        for attempt in range(RUNS):
            theirs.append(_timed(lambda: [_run([shred, "-n", "1", str(f)]) for f in files]))
            ours.append(_timed(lambda: [wipe.overwrite(f, wipe.NIST_CLEAR) for f in files]))
            dod.append(_timed(lambda: [wipe.overwrite(f, wipe.DOD_3PASS) for f in files]))
            yield {"bench": NAME, "event": "run", "run": attempt + 1, "shred_n1_s": round(theirs[-1], 3),
                   "ours_clear_s": round(ours[-1], 3), "ours_dod_s": round(dod[-1], 3),
                   "load_average_1m": harness.load_average()}  # fmt: skip
        mb = total / 1e6
        ours_rate, shred_rate = mb / statistics.median(ours), mb / statistics.median(theirs)
        yield harness.summary(
            NAME, "clear_mb_per_s", ours_rate, shred_rate, "MB/s",
            config=f"{len(files)} files, {total:,} bytes, one synced pass each; median of {RUNS}",
            dod_mb_per_s=round(mb / statistics.median(dod), 1),
            target=TARGET, meets_target=ours_rate / shred_rate >= TARGET,
            load_average_1m=harness.load_average(),
        )  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _files(root: Path, shape) -> list[Path]:
    files = []
    for count, size in shape:
        for n in range(count):
            path = root / f"{size}-{n}.bin"
            with path.open("wb") as out:
                left = size
                while left:
                    block = os.urandom(min(left, 4 * MIB))
                    out.write(block)
                    left -= len(block)
                out.flush()
                os.fsync(out.fileno())
            files.append(path)
    return files


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True)  # noqa: S603 - shred, with arguments built here (no shell)


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
