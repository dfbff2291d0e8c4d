"""The access log: one JSON line per request, appended to BOOKWARDEN_ACCESS_LOG, for the monitor to tail
(monitor/parse/access.py reads it; `bookwarden monitor run` follows it).

Each line: time, method, route template, status, client address, user agent (screened like the trail's), duration
in milliseconds, request id. The template, never the path or the query: a path or query can hold a search term or
a card number, and this file is read by log tooling. Every HTTP worker process appends to the same file: each line
is one write(2) to a descriptor opened with O_APPEND, which the kernel never interleaves with another's on a local
file system. When the file is renamed away (rotation), the next request opens the new one.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AccessLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._inode: int | None = None
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        with self._lock:
            fd = self._current()
            os.write(fd, line)

    def _current(self) -> int:
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if self._fd is None or inode != self._inode:
            if self._fd is not None:
                os.close(self._fd)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._inode = os.fstat(self._fd).st_ino
        return self._fd


def access_record(
    method: str, route: str, status: int, client: str | None, user_agent: str | None, seconds: float, request_id: str
) -> dict[str, Any]:
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "method": method,
        "route": route,
        "status": status,
        "client": client,
        "user_agent": user_agent,
        "ms": round(seconds * 1000, 2),
        "request_id": request_id,
    }
