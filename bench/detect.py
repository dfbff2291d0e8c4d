"""Detection throughput: events per second through parsing and every rule, against pySigma's SQLite backend.

The corpus, the same for both sides, in four formats: the loghub Linux syslog sample and Apache error log (repeated
to size; the year advances with each repetition), plus generated Apache access lines (ordinary requests, a scanner's
404 burst, sqlmap, traversal) and generated platform JSON events (sign-in failures in bursts, reads, denials,
grants). Full: 20,000 events per format; quick: 2,000. (The baseline's correlation queries grow with the
square of the events: 50,000 syslog events take it over ten minutes.)

The rules: the built-in pack and every SigmaHQ rule in ../shared/data/sigma that the engine loads.

- Ours: `monitor.replay.replay` per format: parse every line, mark sshd attempts, sort by event time, run each event
  through every rule whose logsource covers it, correlations included.
- Baseline (the Zircolite approach): the same parser, then every event flattened into a row of an in-memory SQLite
  table (one per format, a column per field the rules name, COLLATE NOCASE as Zircolite builds it, a Python REGEXP
  function), then each rule converted to SQL by pySigma's SQLite backend (`pysigma-backend-sqlite`) and executed
  over the table: detection rules as SELECT ... WHERE, correlations as its window-function queries. Converting
  the rules is not timed (our rule loading is not either); a rule the backend cannot convert is counted and left
  out of the baseline, which only makes the baseline faster.

The summary value is our events/s; the baseline the SQLite side's events/s over the same events; target 20,000/s
and ratio >= 1. One process, single-threaded, both sides.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import random
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.rule import SigmaRule

from bench import harness
from bookwarden.monitor import engine as engine_module
from bookwarden.monitor import replay as replay_module
from bookwarden.monitor.events import Event, LogSource
from bookwarden.monitor.parse.reader import Format, Unparsed, read
from bookwarden.monitor.sigma import compile as compile_module
from bookwarden.monitor.sigma import fields
from bookwarden.monitor.sigma.load import Ruleset, builtin_paths, load, rule_files

NAME = "detect"
FULL, QUICK = 20_000, 2_000  # events per format
TARGET = 20_000
SEED = 20_261_207
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"  # beside the repository, as in CI
YEAR = 2005


def _repeat(path: Path, size: int) -> list[str]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [lines[i % len(lines)] for i in range(size)]


def _access_lines(size: int, rng: random.Random) -> list[str]:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    pages = ["/", "/catalogue", "/search?q=history", "/static/app.css", "/api/v1/patrons/42", "/login"]
    agents = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0", "curl/8.9.1", "bookwarden-sync/2.1"]
    out = []
    for i in range(size):
        moment = start + timedelta(milliseconds=200 * i)
        stamp = moment.strftime("%d/%b/%Y:%H:%M:%S +0000")
        roll = rng.random()
        if roll < 0.05:  # a scanner walking paths
            address, target, status, agent = "203.0.113.9", f"/admin{i % 97}.php", 404, "Mozilla/5.0 zgrab/0.x"
        elif roll < 0.06:
            address, target, status, agent = "198.51.100.4", "/search?q=1%27%20or%201=1--", 200, "sqlmap/1.7"
        elif roll < 0.065:
            address, target, status, agent = "198.51.100.5", "/static/../../etc/passwd", 400, agents[1]
        else:
            address = f"192.0.2.{rng.randrange(1, 250)}"
            target, status, agent = rng.choice(pages), rng.choice((200, 200, 200, 304, 404)), rng.choice(agents)
        out.append(f'{address} - - [{stamp}] "GET {target} HTTP/1.1" {status} {rng.randrange(200, 9000)} "-" "{agent}"')
    return out


def _platform_lines(size: int, rng: random.Random) -> list[str]:
    start = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    accounts = [f"acc-{n}" for n in range(200)]
    out = []
    for i in range(size):
        moment = (start + timedelta(milliseconds=150 * i)).isoformat()
        roll = rng.random()
        if roll < 0.08:  # a stuffing run: one address, many accounts
            record = {
                "action": "auth.sign_in.failed",
                "outcome": "denied",
                "source_address": "203.0.113.50",
                "target_id": rng.choice(accounts),
            }
        elif roll < 0.12:
            record = {
                "action": "auth.sign_in.failed",
                "outcome": "denied",
                "source_address": f"192.0.2.{rng.randrange(1, 250)}",
                "target_id": rng.choice(accounts),
            }
        elif roll < 0.14:
            record = {
                "action": "access.denied",
                "outcome": "denied",
                "actor_id": rng.choice(accounts),
                "source_address": "192.0.2.77",
                "details": {"permission": "patrons.write"},
            }
        elif roll < 0.145:
            actor = rng.choice(accounts)
            record = {
                "action": "role.granted",
                "outcome": "succeeded",
                "actor_id": actor,
                "target_id": rng.choice(accounts),
                "details": {"role": "desk", "approval_id": None},
            }
        else:
            record = {
                "action": "patron.viewed",
                "outcome": "succeeded",
                "actor_id": rng.choice(accounts[:20]),
                "actor_kind": "account",
                "target_id": f"p-{rng.randrange(100_000)}",
                "source_address": f"192.0.2.{rng.randrange(1, 250)}",
            }
        out.append(json.dumps({"time": moment, **record}))
    return out


def corpus(size: int) -> dict[Format, list[str]]:
    rng = random.Random(SEED)
    return {
        Format.SYSLOG: _repeat(SHARED / "logs" / "Linux_2k.log", size),
        Format.APACHE_ERROR: _repeat(SHARED / "logs" / "Apache_2k.log", size),
        Format.APACHE_ACCESS: _access_lines(size, rng),
        Format.JSONL: _platform_lines(size, rng),
    }


def rule_paths() -> list[Path]:
    sigmahq = SHARED / "sigma" / "rules"
    return builtin_paths() + ([sigmahq] if sigmahq.is_dir() else [])


# -- the baseline: pySigma's SQLite backend over an in-memory table ----------------------------------


def _documents(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Every rule document by the key our loader gives it (name, else id, else title)."""
    found = {}
    for path in rule_files(paths):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(document, dict):
                key = document.get("name") or document.get("id") or document.get("title")
                found[str(key)] = document
    return found


def _field_names(rule: SigmaRule | SigmaCorrelationRule) -> set[str]:
    if isinstance(rule, SigmaCorrelationRule):
        names = set(rule.group_by or ())
        if getattr(rule.condition, "fieldref", None):
            names.add(rule.condition.fieldref)
        for alias in rule.aliases:
            names.update(alias.mapping.values())
        return names
    return {item.field for item in compile_module._items(rule.detection.detections.values()) if item.field}


@functools.lru_cache(maxsize=4096)
def _pattern(expression: str) -> re.Pattern[str]:
    return re.compile(expression)


def _regexp(expression: str, value: Any) -> bool:
    return value is not None and _pattern(expression).search(str(value)) is not None


class SqliteBaseline:
    """The rules we load, each converted once by pySigma's SQLite backend; run per log source over a table."""

    def __init__(self, ruleset: Ruleset, paths: list[Path]) -> None:
        documents = _documents(paths)
        self.backend = sqliteBackend(fulltext_field="message")
        # (covers(source), queries, columns) per rule that raises alerts: output detections and correlations.
        self.rules: list[tuple[Any, list[str], set[str]]] = []
        self.unconverted = 0
        for detection in ruleset.detections:
            if detection.output:
                self._convert([documents[detection.key]], [detection])
        for correlation in ruleset.correlations:
            bases = [d for d in ruleset.detections if d.key in correlation.rules]
            self._convert([documents[correlation.key]] + [documents[d.key] for d in bases], bases)

    def _convert(self, docs: list[dict[str, Any]], bases: list[Any]) -> None:
        try:
            collection = SigmaCollection.from_dicts(copy.deepcopy(docs))
            queries = self.backend.convert(collection)
        except Exception:  # the backend's own refusals: counted, left out of the baseline
            self.unconverted += 1
            return
        columns = set().union(*(_field_names(rule) for rule in collection.rules))

        def covers(source: LogSource) -> bool:
            return any(fields.covers(d.product, d.category, d.service, source) for d in bases)

        self.rules.append((covers, list(queries), columns))

    @property
    def converted(self) -> int:
        return len(self.rules)

    def run(self, source: LogSource, events: list[Event]) -> int:
        """Rows every query of the rules covering `source` returned, over a fresh table holding `events`."""
        chosen = [(queries, columns) for covers, queries, columns in self.rules if covers(source)]
        if not chosen:
            return 0
        columns = sorted(set().union(*(c for _, c in chosen)) - {"timestamp", "message"})
        connection = sqlite3.connect(":memory:")
        connection.create_function("regexp", 2, _regexp, deterministic=True)
        # A long query runs in C; calling back into Python now and then lets Ctrl-C and SIGTERM stop the bench.
        connection.set_progress_handler(lambda: 0, 1_000_000)
        names = ["timestamp", "message", *columns]
        quoted = ", ".join(f'"{name}" TEXT COLLATE NOCASE' for name in names)
        connection.execute(f"CREATE TABLE logs ({quoted})")
        readers = [fields.getter(name) for name in columns]
        rows = ((event.time.isoformat(), event.message, *(_cell(read(event)) for read in readers)) for event in events)
        connection.executemany(f"INSERT INTO logs VALUES ({', '.join('?' * len(names))})", rows)
        matched = 0
        for queries, _ in chosen:
            for query in queries:
                matched += len(connection.execute(query).fetchall())
        connection.close()
        return matched


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return json.dumps(value, default=str)


# -- the run ---------------------------------------------------------------------------------------


def run(quick: bool) -> Iterator[dict[str, Any]]:
    size = QUICK if quick else FULL
    paths = rule_paths()
    ruleset = load(paths)
    lines = corpus(size)
    baseline = SqliteBaseline(ruleset, paths)
    yield {
        "bench": NAME,
        "event": "setup",
        "quick": quick,
        "cpus": os.cpu_count(),
        "load_average_1m": harness.load_average(),
        "events_per_format": size,
        "rules": ruleset.summary(),
        "baseline_rules_converted": baseline.converted,
        "baseline_rules_unconverted": baseline.unconverted,
        "code": harness.code_fingerprint(engine_module, replay_module, compile_module),
        "seed": SEED,
    }
    ours_seconds = baseline_seconds = 0.0
    total = 0
    for fmt, text in lines.items():
        result = replay_module.replay(text, fmt, ruleset, year=YEAR)
        ours_seconds += result.seconds
        total += result.events
        started = time.perf_counter()
        events = [item for item in read(text, fmt, YEAR) if not isinstance(item, Unparsed)]
        by_source: dict[LogSource, list[Event]] = {}
        for event in events:
            by_source.setdefault(event.source, []).append(event)
        rows = 0
        for source, group in by_source.items():
            rows += baseline.run(source, group)
        seconds = time.perf_counter() - started
        baseline_seconds += seconds
        yield {
            "bench": NAME,
            "event": "format",
            "format": fmt.value,
            "events": result.events,
            "unparsed": len(result.unparsed),
            "ours_per_s": round(result.events / result.seconds),
            "ours_matches": result.matches,
            "ours_alerts": len(result.alerts),
            "sqlite_per_s": round(len(events) / seconds),
            "sqlite_rows": rows,
            "load_average_1m": harness.load_average(),
        }
    ours, theirs = total / ours_seconds, total / baseline_seconds
    yield harness.summary(
        NAME,
        "events_per_s",
        ours,
        theirs,
        "events/s",
        config=f"{total:,} events in 4 formats; built-in pack + SigmaHQ linux/web rules; one process",
        target=TARGET,
        meets_target=ours >= TARGET and ours >= theirs,
        baseline_name="pySigma sqlite backend over an in-memory table (Zircolite approach)",
    )
