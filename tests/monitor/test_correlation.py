"""Sigma correlations in event time: windows at their edges, group-by, each correlation type, episodes of repeats."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bookwarden.monitor.engine import Engine
from tests.monitor.helpers import LOGSOURCE, T0, event, rules, run

BASE = f"""
title: other
name: other
{LOGSOURCE}detection:
  selection:
    action: other
  condition: selection
level: low
---
title: failed
name: failed
{LOGSOURCE}detection:
  selection:
    action: failed
  condition: selection
level: low
---
title: succeeded
name: succeeded
{LOGSOURCE}detection:
  selection:
    action: succeeded
  condition: selection
level: low
"""


def correlation(tmp_path, body: str, tuning=None):
    return rules(tmp_path, BASE + "---\ntitle: burst\nname: burst\nlevel: high\ncorrelation:\n" + body, tuning)


COUNT = """
  type: event_count
  rules: [failed]
  group-by: [source_address]
  timespan: 60s
  condition:
    gte: 3
"""


def failed(at, address="192.0.2.1", **values):
    return event(at, action="failed", source_address=address, **values)


def test_an_event_exactly_timespan_old_still_counts(tmp_path):
    opened, final = run(correlation(tmp_path, COUNT), [failed(0), failed(30), failed(60)])
    (alert,) = opened
    assert (alert.rule, alert.count, alert.first_seen, alert.last_seen) == ("burst", 3, T0, T0 + timedelta(seconds=60))
    (closed,) = final
    assert closed.count == 3 and closed.source_address == "192.0.2.1" and closed.severity == "high"


def test_one_second_more_and_the_first_event_is_out_of_the_window(tmp_path):
    opened, final = run(correlation(tmp_path, COUNT), [failed(0), failed(30), failed(61)])
    assert opened == [] and final == []


def test_groups_are_counted_apart(tmp_path):
    events = [failed(0, "192.0.2.1"), failed(1, "192.0.2.2"), failed(2, "192.0.2.1"), failed(3, "192.0.2.2")]
    assert run(correlation(tmp_path, COUNT), events) == ([], [])
    events.append(failed(4, "192.0.2.2"))
    _, final = run(correlation(tmp_path, COUNT), events)
    assert [(a.source_address, a.count, a.group) for a in final] == [("192.0.2.2", 3, {"source_address": "192.0.2.2"})]


def test_an_event_without_the_group_by_field_counts_nowhere(tmp_path):
    events = [event(at, action="failed") for at in range(5)]
    assert run(correlation(tmp_path, COUNT), events) == ([], [])


def test_repeats_fold_into_one_episode_until_the_group_is_quiet_longer_than_timespan(tmp_path):
    # Opens at 2 (three in 60 s); 62 is exactly 60 s after 2, so it folds in; 123 is 61 s after 62: a new window,
    # which alone never reaches three.
    events = [failed(0), failed(1), failed(2), failed(62), failed(123)]
    opened, final = run(correlation(tmp_path, COUNT), events)
    assert len(opened) == 1
    (alert,) = final
    assert (alert.first_seen, alert.last_seen, alert.count) == (T0, T0 + timedelta(seconds=62), 4)


def test_an_episode_closes_in_event_time_when_a_later_event_arrives(tmp_path):
    engine = Engine(correlation(tmp_path, COUNT))
    for at in (0, 1, 2):
        engine.feed(failed(at))
    assert [a for a in engine.feed(event(62, action="noise")) if a.final] == []  # 60 s of quiet: still open
    (closed,) = engine.feed(event(63, action="noise"))  # more than 60 s: closed, without waiting for the end
    assert closed.final and closed.count == 3
    assert engine.finish() == []


def test_gt_needs_more_than_the_threshold(tmp_path):
    ruleset = correlation(tmp_path, COUNT.replace("gte: 3", "gt: 3"))
    assert run(ruleset, [failed(0), failed(1), failed(2)]) == ([], [])
    _, final = run(ruleset, [failed(0), failed(1), failed(2), failed(3)])
    assert final[0].count == 4


def test_value_count_counts_distinct_values(tmp_path):
    ruleset = correlation(
        tmp_path,
        """
  type: value_count
  rules: [failed]
  group-by: [source_address]
  timespan: 10m
  condition:
    gte: 3
    field: user
""",
    )
    same_user = [failed(at, user="alice") for at in range(5)]
    assert run(ruleset, same_user) == ([], [])
    spread = [failed(0, user="alice"), failed(1, user="bob"), failed(2, user="alice"), failed(3, user="carol")]
    _, final = run(ruleset, spread)
    assert [(a.count, a.first_seen) for a in final] == [(4, T0)]


@pytest.mark.parametrize(("kind", "total"), [("value_sum", 10), ("value_avg", 5)])
def test_value_sum_and_avg(tmp_path, kind, total):
    ruleset = correlation(
        tmp_path,
        f"""
  type: {kind}
  rules: [failed]
  group-by: [source_address]
  timespan: 1m
  condition:
    gte: {total}
    field: size
""",
    )
    assert run(ruleset, [failed(0, size=4), failed(1, size=4)])[1] == []  # sum 8, average 4
    assert len(run(ruleset, [failed(0, size=4), failed(1, size=6)])[1]) == 1  # sum 10, average 5


TEMPORAL = """
  type: {kind}
  rules: [failed, succeeded]
  group-by: [source_address]
  timespan: 5m
"""


def test_temporal_needs_every_rule_within_the_window(tmp_path):
    ruleset = correlation(tmp_path, TEMPORAL.format(kind="temporal"))
    succeeded = event(10, action="succeeded", source_address="192.0.2.1")
    assert len(run(ruleset, [failed(0), succeeded])[1]) == 1
    late = event(301, action="succeeded", source_address="192.0.2.1")
    assert run(ruleset, [failed(0), late]) == ([], [])
    other = event(10, action="succeeded", source_address="192.0.2.9")
    assert run(ruleset, [failed(0), other]) == ([], [])


def test_temporal_ordered_needs_the_order(tmp_path):
    ruleset = correlation(tmp_path, TEMPORAL.format(kind="temporal_ordered"))
    succeeded = event(0, action="succeeded", source_address="192.0.2.1")
    assert run(ruleset, [succeeded, failed(10)]) == ([], [])
    assert len(run(ruleset, [failed(0), event(10, action="succeeded", source_address="192.0.2.1")])[1]) == 1


def test_temporal_with_an_extended_condition(tmp_path):
    ruleset = correlation(
        tmp_path,
        """
  type: temporal
  rules: [failed, succeeded, other]
  group-by: [source_address]
  timespan: 5m
  condition: failed and succeeded or other
""",
    )
    assert run(ruleset, [failed(0)]) == ([], [])
    assert len(run(ruleset, [failed(0), event(1, action="succeeded", source_address="192.0.2.1")])[1]) == 1
    assert len(run(ruleset, [event(1, action="other", source_address="192.0.2.1")])[1]) == 1


def test_not_in_an_extended_condition_is_refused(tmp_path):
    ruleset = correlation(
        tmp_path,
        """
  type: temporal
  rules: [failed, succeeded]
  group-by: [source_address]
  timespan: 5m
  condition: failed and not succeeded
""",
    )
    (refused,) = ruleset.refused
    assert refused.key == "burst" and "`not`" in refused.reason


def test_aliases_group_different_fields_of_different_rules(tmp_path):
    ruleset = correlation(
        tmp_path,
        """
  type: temporal
  rules: [failed, succeeded]
  group-by: [who]
  aliases:
    who:
      failed: user
      succeeded: target_user
  timespan: 5m
""",
    )
    events = [event(0, action="failed", user="alice"), event(5, action="succeeded", target_user="alice")]
    _, final = run(ruleset, events)
    assert [a.group for a in final] == [{"who": "alice"}]


def test_a_rule_a_correlation_counts_raises_nothing_unless_generate(tmp_path):
    assert run(correlation(tmp_path, COUNT), [failed(0)]) == ([], [])
    _, final = run(correlation(tmp_path, COUNT + "  generate: true\n"), [failed(0)])
    assert [(a.rule, a.kind) for a in final] == [("failed", "detection")]


def test_tuning_changes_window_and_threshold_and_refuses_unknown_rules(tmp_path):
    tuned = correlation(tmp_path, COUNT, {"burst": {"gte": 2, "timespan": "5s"}})
    assert len(run(tuned, [failed(0), failed(5)])[1]) == 1
    assert run(tuned, [failed(0), failed(6)]) == ([], [])
    with pytest.raises(ValueError, match="nope"):
        correlation(tmp_path, COUNT, {"nope": {"gte": 2}})
    with pytest.raises(ValueError, match="colour"):
        correlation(tmp_path, COUNT, {"burst": {"colour": 2}})


def test_a_late_event_counts_at_the_newest_time_seen(tmp_path):
    # Out of order by a second: it cannot reopen a window already left behind.
    opened, _ = run(correlation(tmp_path, COUNT), [failed(100), failed(0), failed(101)])
    assert len(opened) == 1 and opened[0].first_seen == T0 + timedelta(seconds=100)
