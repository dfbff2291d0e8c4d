"""Offline replay: a log file through parsing and every rule, in event time, for investigations and for trying rules
on real logs. Reads the file and nothing else; writes nothing; needs no database.

The lines are parsed in file order (the sshd attempt tracker follows each connection as the file tells it), then
fed to the engine sorted by event time (stable: lines of the same second keep their order), since a log written by
several processes is not always in time order.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bookwarden.monitor.engine import Alert, Engine
from bookwarden.monitor.events import Event
from bookwarden.monitor.parse.reader import Format, Unparsed, read
from bookwarden.monitor.sigma.load import Ruleset


@dataclass
class Replay:
    alerts: list[Alert] = field(default_factory=list)  # final alerts, by first_seen then rule
    opened: int = 0  # correlation alerts raised as their condition first held (what live delivery would send)
    lines: int = 0
    events: int = 0
    unparsed: list[Unparsed] = field(default_factory=list)
    matches: int = 0
    seconds: float = 0.0

    def summary(self, ruleset: Ruleset) -> dict[str, Any]:
        return {
            "summary": True,
            "lines": self.lines,
            "events": self.events,
            "unparsed": len(self.unparsed),
            "matches": self.matches,
            "alerts": len(self.alerts),
            "alerts_by_rule": dict(sorted(Counter(alert.rule for alert in self.alerts).items())),
            "rules": ruleset.summary(),
            "seconds": round(self.seconds, 3),
        }


def replay(lines: Iterable[str], fmt: Format, ruleset: Ruleset, year: int | None = None) -> Replay:
    started = time.perf_counter()
    result = Replay()
    events: list[Event] = []
    for item in read(lines, fmt, year):
        if isinstance(item, Unparsed):
            result.unparsed.append(item)
        else:
            events.append(item)
    result.lines = len(events) + len(result.unparsed)
    result.events = len(events)
    events.sort(key=lambda event: event.time)
    engine = Engine(ruleset)
    final: list[Alert] = []
    for event in events:
        for alert in engine.feed(event):
            if alert.final:
                final.append(alert)
            else:
                result.opened += 1
    final.extend(engine.finish())
    result.alerts = sorted(final, key=lambda alert: (alert.first_seen, alert.rule, alert.source_address or ""))
    result.matches = engine.matches
    result.seconds = time.perf_counter() - started
    return result
