"""Small builders for monitor tests: rules from YAML text, events by hand, a run through the engine."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bookwarden.monitor.engine import Alert, Engine
from bookwarden.monitor.events import Event, LogSource
from bookwarden.monitor.sigma.load import Ruleset, load

# The shared data folder sits beside the repository (../shared), as it does for CI.
_ROOT = Path(__file__).resolve().parents[2]
SHARED = _ROOT.parent / "shared" / "data"  # missing, the tests that read it fail: nothing is skipped
LOGS = SHARED / "logs"
SIGMAHQ = SHARED / "sigma" / "rules"

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TEST_SOURCE = LogSource("test", None, frozenset({"unit"}))
LOGSOURCE = "logsource:\n  product: test\n  service: unit\n"


def rules(tmp_path: Path, text: str, tuning: dict[str, Any] | None = None) -> Ruleset:
    """A ruleset from YAML text (one or more documents), written to a file as a user would."""
    path = tmp_path / f"rules{len(list(tmp_path.glob('*.yml')))}.yml"
    path.write_text(textwrap.dedent(text))
    return load([path], tuning)


def detection(tmp_path: Path, body: str, name: str = "probe") -> Ruleset:
    """A ruleset holding one detection rule on the test source, with `body` as its detection section."""
    detection_yaml = textwrap.indent(textwrap.dedent(body).strip(), "  ")
    return rules(tmp_path, f"title: '{name}'\nname: '{name}'\n{LOGSOURCE}detection:\n{detection_yaml}\nlevel: low\n")


def event(at: float = 0, message: str = "", **values: Any) -> Event:
    """An event `at` seconds after T0 on the test source; core attributes by name, anything else into fields."""
    core = {key: values.pop(key) for key in ("user", "source_address", "host", "program", "pid") if key in values}
    line = values.pop("line", None)
    return Event(
        time=T0 + timedelta(seconds=at),
        source=TEST_SOURCE,
        message=message,
        raw=message,
        fields=values,
        line_number=line,
        **core,
    )


def matches(ruleset: Ruleset, item: Event) -> bool:
    (only,) = ruleset.detections
    return only.predicate(item)


def run(ruleset: Ruleset, events: list[Event]) -> tuple[list[Alert], list[Alert]]:
    """(opening alerts, final alerts) of the events fed in order, then the end of the stream."""
    engine = Engine(ruleset)
    fed = [alert for item in events for alert in engine.feed(item)] + engine.finish()
    return [a for a in fed if not a.final], [a for a in fed if a.final]
