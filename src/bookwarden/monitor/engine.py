"""The detection engine: events in, alerts out, as values, in event time.

`Engine.feed(event)` runs one event through every rule whose logsource covers it and returns the alerts it caused;
`Engine.finish()` returns what is still open when the stream ends. It keeps no clock of its own and touches no
database, so a replay of last month's log and a live collector (which feeds events as they come) get the same alerts.

Alerts:

- a detection rule's match is one alert (`count` 1), at once, final;
- a correlation opens an episode when its condition first holds for a group, within the window
  [t - timespan, t] (an event exactly `timespan` older than the newest still counts). The engine returns the opening
  alert at once (`final` false: what real-time delivery sends), then folds later matching events of the group into
  the episode while each comes within `timespan` of the previous one. When a group has been quiet for longer than
  `timespan` (in event time) the episode closes and the engine returns its final alert: `first_seen` (the oldest
  event in the window that opened it), `last_seen`, `count` (events in the episode). So a burst of eighty sshd
  failures from one address is one alert with count 80, not seventy-six.

Events are expected in event-time order (replay sorts them); a late event counts as if it came at the newest time
seen, so an out-of-order line can never reopen a closed window.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sigma.correlations import (
    CorrelationConditionAND,
    CorrelationConditionNOT,
    CorrelationConditionOR,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationType,
    SigmaRuleReference,
)

from bookwarden.monitor.events import Event, LogSource
from bookwarden.monitor.sigma import fields
from bookwarden.monitor.sigma.load import Correlation, Detection, Ruleset

MAX_LINES = 50  # line numbers an alert carries, for whoever investigates it
_SWEEP_EVERY = 10_000  # events between drops of idle groups' windows (memory bound, not correctness)


@dataclass(frozen=True)
class Alert:
    rule: str
    title: str
    severity: str | None
    kind: str  # "detection" or "correlation"
    first_seen: datetime
    last_seen: datetime
    count: int
    source_address: str | None
    group: dict[str, Any]
    lines: tuple[int, ...]
    final: bool
    # The institution every event of the alert concerns (their `tenant_id`), None when none or several.
    tenant_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "title": self.title,
            "severity": self.severity,
            "kind": self.kind,
            "source_address": self.source_address,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "count": self.count,
            "group": self.group,
            "lines": list(self.lines),
        }


@dataclass
class _Item:
    time: datetime
    rule: str
    value: Any
    address: str | None
    line: int | None
    tenant: str | None = None


@dataclass
class _Episode:
    first: datetime
    last: datetime
    count: int
    addresses: set[str | None]
    lines: list[int]
    tenants: set[str | None] = field(default_factory=set)


@dataclass
class _CorrelationState:
    correlation: Correlation
    windows: dict[tuple, deque[_Item]] = field(default_factory=dict)
    episodes: dict[tuple, _Episode] = field(default_factory=dict)

    def group_of(self, rule: str, event: Event) -> tuple | None:
        values = []
        for name in self.correlation.group_by:
            field_name = self.correlation.aliases.get(name, {}).get(rule, name)
            value = fields.getter(field_name)(event)
            if value is None:  # an event without a group-by field belongs to no group: it counts nowhere
                return None
            values.append(value)
        return tuple(values)

    def holds(self, window: deque[_Item]) -> bool:
        correlation = self.correlation
        kind = correlation.kind
        if kind is SigmaCorrelationType.EVENT_COUNT:
            measure: float = len(window)
        elif kind is SigmaCorrelationType.VALUE_COUNT:
            measure = len({item.value for item in window if item.value is not None})
        elif kind in (SigmaCorrelationType.VALUE_SUM, SigmaCorrelationType.VALUE_AVG):
            numbers = [n for n in (_number(item.value) for item in window) if n is not None]
            if not numbers:
                return False
            measure = sum(numbers) if kind is SigmaCorrelationType.VALUE_SUM else sum(numbers) / len(numbers)
        elif kind is SigmaCorrelationType.TEMPORAL_ORDERED:
            return _in_order(correlation.rules, window)
        elif correlation.expression is not None:  # temporal, extended condition
            return _evaluate(correlation.expression, {item.rule for item in window}, correlation.references)
        else:  # temporal: how many of its rules matched in the window
            measure = len({item.rule for item in window})
        assert correlation.threshold is not None  # set for every kind but the extended temporal
        if correlation.operator is SigmaCorrelationConditionOperator.GT:
            return measure > correlation.threshold
        return measure >= correlation.threshold


_NO_TENANT = "00000000-0000-0000-0000-000000000000"  # the platform's own chain (db/session.py PLATFORM)


def _tenant(event: Event) -> str | None:
    value = event.fields.get("tenant_id")
    return None if value is None or str(value) == _NO_TENANT else str(value)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _in_order(rules: tuple[str, ...], window: Iterable[_Item]) -> bool:
    position = 0
    for item in window:
        if item.rule == rules[position]:
            position += 1
            if position == len(rules):
                return True
    return False


def _evaluate(node: Any, seen: set[str], references: dict[str, str]) -> bool:
    if isinstance(node, SigmaRuleReference):
        return references.get(node.reference, node.reference) in seen
    if isinstance(node, CorrelationConditionAND):
        return all(_evaluate(arg, seen, references) for arg in node.args)
    if isinstance(node, CorrelationConditionOR):
        return any(_evaluate(arg, seen, references) for arg in node.args)
    if isinstance(node, CorrelationConditionNOT):
        return not _evaluate(node.args[0], seen, references)
    raise TypeError(f"unexpected correlation condition element {type(node).__name__}")


def _lowered(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return (value if isinstance(value, str) else str(value)).lower()


@dataclass
class _Applicable:
    """The rules for one log source, with those that require a field's value indexed by that value."""

    rules: list[Detection]
    always: list[Detection]
    indexed: dict[str, tuple[Any, dict[str, list[Detection]]]]
    order: dict[int, int]

    @classmethod
    def of(cls, rules: list[Detection]) -> _Applicable:
        always, indexed = [], {}
        for rule in rules:
            if rule.requirement is None:
                always.append(rule)
                continue
            name, values = rule.requirement
            _, by_value = indexed.setdefault(name, (fields.getter(name), {}))
            for value in values:
                by_value.setdefault(value, []).append(rule)
        return cls(rules, always, indexed, {id(rule): n for n, rule in enumerate(rules)})


class Engine:
    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self._applicable: dict[LogSource, _Applicable] = {}
        self._states = [_CorrelationState(correlation) for correlation in ruleset.correlations]
        self._counting: dict[str, list[_CorrelationState]] = {}
        for state in self._states:
            for rule in state.correlation.rules:
                self._counting.setdefault(rule, []).append(state)
        self._deadlines: list[tuple[datetime, int, int, tuple]] = []  # (close after, tie, state index, group)
        self._tie = itertools.count()
        self._index = {id(state): number for number, state in enumerate(self._states)}
        self.now: datetime | None = None
        self.events = 0
        self.matches = 0

    def rules_for(self, source: LogSource) -> list[Detection]:
        """Every detection that applies to events from `source` (those raising alerts or counted by a correlation)."""
        return self._applicable_to(source).rules

    def _applicable_to(self, source: LogSource) -> _Applicable:
        found = self._applicable.get(source)
        if found is None:
            rules = [
                d
                for d in self.ruleset.detections
                if (d.output or d.key in self._counting) and fields.covers(d.product, d.category, d.service, source)
            ]
            found = self._applicable[source] = _Applicable.of(rules)
        return found

    def _candidates(self, event: Event) -> list[Detection]:
        """The rules worth trying on `event`: those with no required value, and those whose required value the
        event holds (looked up, not tried one by one). In the order the rules were loaded."""
        applicable = self._applicable_to(event.source)
        if not applicable.indexed:
            return applicable.rules
        chosen = list(applicable.always)
        for read, by_value in applicable.indexed.values():
            value = read(event)
            if value is not None and (hit := by_value.get(_lowered(value))):
                chosen.extend(hit)
        if len(chosen) > 1:
            chosen.sort(key=lambda rule: applicable.order[id(rule)])
        return chosen

    def feed(self, event: Event) -> list[Alert]:
        now = event.time if self.now is None or event.time > self.now else self.now
        self.now = now
        self.events += 1
        alerts = self._close(now)
        for detection in self._candidates(event):
            if not detection.predicate(event):
                continue
            self.matches += 1
            if detection.output:
                alerts.append(
                    Alert(
                        rule=detection.key,
                        title=detection.title,
                        severity=detection.level,
                        kind="detection",
                        first_seen=event.time,
                        last_seen=event.time,
                        count=1,
                        source_address=event.source_address,
                        group={},
                        lines=(event.line_number,) if event.line_number is not None else (),
                        final=True,
                        tenant_id=_tenant(event),
                    )
                )
            for state in self._counting.get(detection.key, ()):
                opened = self._observe(state, detection.key, event, now)
                if opened is not None:
                    alerts.append(opened)
        if self.events % _SWEEP_EVERY == 0:
            self._sweep(now)
        return alerts

    def advance(self, now: datetime) -> list[Alert]:
        """Final alerts of episodes quiet for longer than their timespan at `now` (a live collector's wall clock:
        a stream may go quiet, and the final count should not wait for its next event). The event clock stays."""
        return self._close(now)

    def finish(self) -> list[Alert]:
        """Close every open episode (the stream ended): their final alerts, oldest first."""
        return self._close(None)

    def _observe(self, state: _CorrelationState, rule: str, event: Event, now: datetime) -> Alert | None:
        correlation = state.correlation
        group = state.group_of(rule, event)
        if group is None:
            return None
        value = fields.getter(correlation.value_field)(event) if correlation.value_field else None
        window = state.windows.setdefault(group, deque())
        while window and now - window[0].time > correlation.timespan:
            window.popleft()
        window.append(_Item(now, rule, value, event.source_address, event.line_number, _tenant(event)))
        episode = state.episodes.get(group)
        if episode is not None:
            episode.last, episode.count = now, episode.count + 1
            episode.addresses.add(event.source_address)
            episode.tenants.add(_tenant(event))
            if event.line_number is not None and len(episode.lines) < MAX_LINES:
                episode.lines.append(event.line_number)
            self._schedule(state, group, episode)
            return None
        if not state.holds(window):
            return None
        episode = state.episodes[group] = _Episode(
            first=window[0].time,
            last=now,
            count=len(window),
            addresses={item.address for item in window},
            lines=[item.line for item in window if item.line is not None][:MAX_LINES],
            tenants={item.tenant for item in window},
        )
        self._schedule(state, group, episode)
        return self._alert(state, group, episode, final=False)

    def _schedule(self, state: _CorrelationState, group: tuple, episode: _Episode) -> None:
        close_after = episode.last + state.correlation.timespan
        heapq.heappush(self._deadlines, (close_after, next(self._tie), self._index[id(state)], group))

    def _close(self, now: datetime | None) -> list[Alert]:
        """Final alerts of episodes quiet for longer than their timespan at `now` (all of them when None)."""
        closed = []
        while self._deadlines and (now is None or self._deadlines[0][0] < now):
            close_after, _, index, group = heapq.heappop(self._deadlines)
            state = self._states[index]
            episode = state.episodes.get(group)
            if episode is None or episode.last + state.correlation.timespan != close_after:
                continue  # superseded: the episode went on after this deadline was set
            del state.episodes[group]
            closed.append(self._alert(state, group, episode, final=True))
        return closed

    def _sweep(self, now: datetime) -> None:
        for state in self._states:
            idle = [g for g, w in state.windows.items() if not w or now - w[-1].time > state.correlation.timespan]
            for group in idle:
                if group not in state.episodes:
                    del state.windows[group]

    def _alert(self, state: _CorrelationState, group: tuple, episode: _Episode, final: bool) -> Alert:
        correlation = state.correlation
        grouped = dict(zip(correlation.group_by, group, strict=True))
        address = grouped.get("source_address")
        if address is None and len(episode.addresses) == 1:
            (address,) = episode.addresses
        return Alert(
            rule=correlation.key,
            title=correlation.title,
            severity=correlation.level,
            kind="correlation",
            first_seen=episode.first,
            last_seen=episode.last,
            count=episode.count,
            source_address=address,
            group=grouped,
            lines=tuple(episode.lines),
            final=final,
            tenant_id=next(iter(episode.tenants)) if len(episode.tenants) == 1 else None,
        )
