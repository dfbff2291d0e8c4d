"""The demo's sign-ins, shown on the start page of a demo database (`make run`).

`bookwarden demo` writes them to `<home>/demo-logins.json` (mode 0600) each time it seeds, since their
passwords change each time; the start page shows them when the file is there. A real installation
never runs the demo (it refuses a database with other institutions: demo.py), so it has no such file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from bookwarden.core.config import Settings

FILE = "demo-logins.json"


@dataclass(frozen=True)
class DemoLogin:
    institution: str  # the slug typed on the sign-in page
    role: str
    username: str
    password: str


def _path(settings: Settings) -> Path:
    return settings.resolved_home / FILE


def write(settings: Settings, logins: list[DemoLogin]) -> None:
    path = _path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump([asdict(login) for login in logins], out, indent=2)


def read(settings: Settings) -> list[DemoLogin]:
    try:
        return [DemoLogin(**entry) for entry in json.loads(_path(settings).read_text())]
    except (OSError, ValueError, TypeError):
        return []
