"""A Sigma rule's detection, as pySigma parsed it, compiled into one Python predicate on events.

pySigma reads the YAML, applies the value modifiers (`contains`, `base64offset`, `windash`, `cidr`, `re`...) and
parses the condition (`and`, `or`, `not`, `1 of x*`, `all of them`) into a tree whose leaves are a field and a typed
value. This module turns each leaf into a test on the event and the tree into and/or/not of them. String values match
as Sigma says: whole value, case-insensitive, `*` and `?` as wildcards (`cased` makes it case-sensitive); regular
expressions search (unanchored) with the flags given (`i`, `m`, `s`).

What it cannot evaluate raises Unsupported with the reason: the loader lists the rule with it, never drops it silently.
"""

from __future__ import annotations

import functools
import ipaddress
import operator
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sigma import conditions as sc
from sigma import modifiers as sm
from sigma import types as st
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule

from bookwarden.monitor.events import Event
from bookwarden.monitor.sigma import fields

Predicate = Callable[[Event], bool]
# A test of one value read from the event (None when absent); the event is there for field references and timestamps.
ValueTest = Callable[[Any, Event], bool]


class Unsupported(Exception):
    """A rule needs something the engine does not evaluate; the message says what and why."""


# Modifiers whose values only make sense on data we never hold, each with the reason given at load.
UNSUPPORTED_MODIFIERS: dict[type, str] = {
    sm.SigmaWideModifier: "the wide (UTF-16) modifier encodes values for binary Windows data; our events are text",
    sm.SigmaUTF16Modifier: "the utf16 modifier encodes values for binary Windows data; our events are text",
    sm.SigmaUTF16BEModifier: "the utf16be modifier encodes values for binary data; our events are text",
    sm.SigmaExpandModifier: "the expand modifier needs placeholder values from a processing pipeline (none is set)",
}
for _name in ("SigmaUTF16LEModifier",):  # present in some pySigma versions only
    if hasattr(sm, _name):
        UNSUPPORTED_MODIFIERS[getattr(sm, _name)] = "the utf16le modifier encodes values for binary data"


def compile_rule(rule: SigmaRule) -> Predicate:
    """The rule's detection as one predicate: its conditions (usually one) or-ed."""
    for item in _items(rule.detection.detections.values()):
        for modifier in item.modifiers:
            if modifier in UNSUPPORTED_MODIFIERS:
                raise Unsupported(UNSUPPORTED_MODIFIERS[modifier])
    trees = [condition.parse() for condition in rule.detection.parsed_condition]
    tests = [_node(tree) for tree in trees]
    if len(tests) == 1:
        return tests[0]
    return lambda event: any(test(event) for test in tests)


Requirement = tuple[str, frozenset[str]]


def requirement(rule: SigmaRule) -> Requirement | None:
    """A field and the values (lower-cased) it must equal for the rule to match at all, when the condition says
    so (`action: role.granted and ...`): the engine then looks such rules up by the event's value instead of trying
    each. None when no such field is certain (keywords, wildcards, a `not` or an `or` across fields)."""
    conditions = rule.detection.parsed_condition
    return _required(conditions[0].parse()) if len(conditions) == 1 else None


def _required(node: Any) -> Requirement | None:
    if isinstance(node, sc.ConditionAND):
        return next((found for arg in node.args if (found := _required(arg)) is not None), None)
    if isinstance(node, sc.ConditionOR):
        found = [_required(arg) for arg in node.args]
        if not found or any(f is None for f in found) or len({f[0] for f in found if f}) != 1:
            return None
        return found[0][0], frozenset().union(*(f[1] for f in found if f))
    if isinstance(node, sc.ConditionFieldEqualsValueExpression):
        value = node.value
        if isinstance(value, st.SigmaString) and not isinstance(value, st.SigmaCasedString):
            parts = list(value.s)
            if len(parts) == 1 and isinstance(parts[0], str) and parts[0].isascii():
                return node.field, frozenset({parts[0].lower()})
    return None


def _items(detections: Any) -> list[SigmaDetectionItem]:
    found: list[SigmaDetectionItem] = []
    for detection in detections:
        for item in detection.detection_items:
            found.extend(_items([item]) if isinstance(item, SigmaDetection) else [item])
    return found


def _node(node: Any) -> Predicate:
    if isinstance(node, sc.ConditionAND):
        parts = [_node(arg) for arg in node.args]
        return lambda event: all(part(event) for part in parts)
    if isinstance(node, sc.ConditionOR):
        parts = _merged(node.args) + [_node(arg) for arg in node.args if _mergeable(arg) is None]
        if len(parts) == 1:
            return parts[0]
        return lambda event: any(part(event) for part in parts)
    if isinstance(node, sc.ConditionNOT):
        (inner,) = (_node(arg) for arg in node.args)
        return lambda event: not inner(event)
    if isinstance(node, sc.ConditionFieldEqualsValueExpression):
        read = fields.getter(node.field)
        test = value_test(node.value)
        return lambda event: test(read(event), event)
    if isinstance(node, sc.ConditionValueExpression):
        # A keyword: anywhere in the message (Sigma's full-text search), whatever the wildcards around it say.
        test = keyword_test(node.value)
        return lambda event: test(event.message, event)
    if node is None:
        raise Unsupported("the condition is empty")
    raise Unsupported(f"condition element {type(node).__name__} is not evaluated")


def _mergeable(node: Any) -> tuple[str | None, str, str | None] | None:
    """(field, or None for a keyword; a regular expression; its longest literal piece) for a leaf an alternation can
    hold, else None.

    A list of values for one field (or of keywords) is an OR of leaves; one regular expression over the alternatives
    tests them in one pass instead of one closure each: SigmaHQ's keyword rules hold a dozen strings apiece."""
    value = getattr(node, "value", None)
    if not isinstance(value, st.SigmaString) or isinstance(value, st.SigmaCasedString) or value.contains_placeholder():
        return None
    pieces = [part for part in value.s if isinstance(part, str)]
    piece = max(pieces, key=len).casefold() if pieces else None
    if isinstance(node, sc.ConditionFieldEqualsValueExpression):
        return node.field, _search_pattern(value, anchored=True), piece
    if isinstance(node, sc.ConditionValueExpression):
        return None, _search_pattern(value, anchored=False), piece
    return None


def _search_pattern(value: st.SigmaString, anchored: bool) -> str:
    """A regular expression to *search* with that matches as the Sigma string does.

    Leading and trailing `*` become the absence of an anchor rather than `.*`: a search that starts with `.*` tries
    every position against the rest of the line (quadratic), which SigmaHQ's keyword lists made the slowest part of
    the engine. A keyword is searched anywhere; a field value must be the whole value (anchored where no `*` is)."""
    parts = list(value.s)
    star = st.SpecialChars.WILDCARD_MULTI
    leading, trailing = bool(parts) and parts[0] == star, len(parts) > 1 and parts[-1] == star
    inner = parts[1 if leading else 0 : len(parts) - 1 if trailing else len(parts)]
    body = "".join(re.escape(part) if isinstance(part, str) else ".*" if part == star else "." for part in inner)
    if not anchored:
        return body
    return ("" if leading else r"\A") + body + ("" if trailing else r"\Z")


@functools.lru_cache(maxsize=16_384)
def _folded(text: str) -> str:
    """A value case-folded once, however many rules look at it (a string caches its hash: the lookup is cheap)."""
    return text.casefold()


def _merged(args: list[Any]) -> list[Predicate]:
    """One test per field (and one for keywords) over every mergeable alternative of an OR.

    Before the regular expression, a plain substring test: unless the value holds the longest literal piece of some
    alternative, none can match (exact for ASCII pieces against the case-folded value; without such pieces, or
    with a piece that is not ASCII, the expression alone decides)."""
    groups: dict[str | None, list[tuple[str, str | None]]] = {}
    for arg in args:
        if (found := _mergeable(arg)) is not None:
            groups.setdefault(found[0], []).append(found[1:])
    tests: list[Predicate] = []
    for name, alternatives in groups.items():
        search = re.compile("|".join(f"(?:{p})" for p, _ in alternatives), re.IGNORECASE | re.DOTALL).search
        pieces = tuple({piece for _, piece in alternatives if piece})
        if not all(piece for _, piece in alternatives) or not all(piece.isascii() for piece in pieces):
            pieces = ()
        read = (lambda event: event.message) if name is None else fields.getter(name)

        def test(event: Event, search=search, read=read, pieces=pieces) -> bool:
            found = read(event)
            if found is None:
                return False
            text = _text(found)
            if pieces:
                folded = _folded(text)
                if not any(map(folded.__contains__, pieces)):
                    return False
            return search(text) is not None

        tests.append(test)
    return tests


def keyword_test(value: st.SigmaType) -> ValueTest:
    if isinstance(value, st.SigmaString) and not isinstance(value, st.SigmaCasedString):
        parts = list(value.s)
        if all(isinstance(part, str) for part in parts):
            needle = value.to_plain().lower()
            return lambda text, event: text is not None and needle in text.lower()
        # Wildcards inside a keyword: a search, so `*` is implied at both ends.
        if parts and parts[0] != st.SpecialChars.WILDCARD_MULTI:
            parts.insert(0, st.SpecialChars.WILDCARD_MULTI)
        if parts[-1] != st.SpecialChars.WILDCARD_MULTI:
            parts.append(st.SpecialChars.WILDCARD_MULTI)
        widened = st.SigmaString()
        widened.s = parts
        return value_test(widened)
    return value_test(value)


def value_test(value: st.SigmaType) -> ValueTest:
    """A test for one typed value of a rule, as pySigma produced it after the modifiers."""
    if isinstance(value, st.SigmaExpansion):  # base64offset, windash: any of the expanded values
        tests = [value_test(each) for each in value.values]
        return lambda found, event: any(test(found, event) for test in tests)
    if isinstance(value, st.SigmaString):
        return _string_test(value, cased=isinstance(value, st.SigmaCasedString))
    if isinstance(value, st.SigmaTimestampPart):  # before SigmaNumber: it is one
        return _timestamp_test(value)
    if isinstance(value, st.SigmaBool):
        return _bool_test(bool(value.boolean))
    if isinstance(value, st.SigmaNumber):
        return _number_test(value.number)
    if isinstance(value, st.SigmaNull):
        return lambda found, event: found is None or found == ""
    if isinstance(value, st.SigmaExists):
        wanted = bool(value.exists)
        return lambda found, event: (found is not None) == wanted
    if isinstance(value, st.SigmaRegularExpression):
        flags = 0
        for flag in value.flags:
            flags |= st.SigmaRegularExpression.sigma_to_python_flags[flag]
        if value.regexp.contains_placeholder():
            raise Unsupported("a regular expression with a placeholder needs a processing pipeline")
        pattern = re.compile(str(value.regexp), flags)
        return lambda found, event: found is not None and pattern.search(_text(found)) is not None
    if isinstance(value, st.SigmaCIDRExpression):
        return _cidr_test(value.network)
    if isinstance(value, st.SigmaCompareExpression):
        return _compare_test(value)
    if isinstance(value, st.SigmaFieldReference):
        return _field_reference_test(value)
    raise Unsupported(f"values of type {type(value).__name__} are not evaluated")


def _text(found: Any) -> str:
    if isinstance(found, bool):
        return "true" if found else "false"
    return found if isinstance(found, str) else str(found)


def _string_test(value: st.SigmaString, cased: bool) -> ValueTest:
    if value.contains_placeholder():
        raise Unsupported("a value with a placeholder (%name%) needs a processing pipeline; none is configured")
    parts = list(value.s)
    fold = (lambda text: text) if cased else str.lower
    star = st.SpecialChars.WILDCARD_MULTI
    inner = parts[1 if parts[:1] == [star] else 0 : len(parts) - 1 if len(parts) > 1 and parts[-1] == star else None]
    # The common shapes get a plain string operation: equals, starts with, ends with, contains.
    if all(isinstance(part, str) for part in inner):
        needle = fold("".join(inner))
        leading, trailing = parts[:1] == [star], len(parts) > 1 and parts[-1] == star
        if parts == [star]:
            return lambda found, event: found is not None
        if leading and trailing:
            return lambda found, event: found is not None and needle in fold(_text(found))
        if leading:
            return lambda found, event: found is not None and fold(_text(found)).endswith(needle)
        if trailing:
            return lambda found, event: found is not None and fold(_text(found)).startswith(needle)
        return lambda found, event: found is not None and fold(_text(found)) == needle
    search = re.compile(_search_pattern(value, anchored=True), re.DOTALL | (0 if cased else re.IGNORECASE)).search
    return lambda found, event: found is not None and search(_text(found)) is not None


def _bool_test(wanted: bool) -> ValueTest:
    def test(found: Any, event: Event) -> bool:
        if isinstance(found, bool):
            return found is wanted
        return isinstance(found, str) and found.lower() == ("true" if wanted else "false")

    return test


def _number(found: Any) -> float | None:
    if isinstance(found, bool) or found is None:
        return None
    try:
        return float(found)
    except (TypeError, ValueError):
        return None


def _number_test(number: int | float) -> ValueTest:
    return lambda found, event: _number(found) == number


_COMPARE = {
    st.CompareOperators.LT: operator.lt,
    st.CompareOperators.LTE: operator.le,
    st.CompareOperators.GT: operator.gt,
    st.CompareOperators.GTE: operator.ge,
    st.CompareOperators.NEQ: operator.ne,
}


def _compare_test(value: st.SigmaCompareExpression) -> ValueTest:
    compare, bound = _COMPARE[value.op], value.number.number
    if isinstance(value.number, st.SigmaTimestampPart):  # `time|hour|lt: 7`: the hour of the event's time
        part = _PARTS[value.number.timestamp_part]

        def test_part(found: Any, event: Event) -> bool:
            return compare(part(found if isinstance(found, datetime) else event.time), bound)

        return test_part

    def test(found: Any, event: Event) -> bool:
        number = _number(found)
        return number is not None and compare(number, bound)

    return test


def _cidr_test(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ValueTest:
    def test(found: Any, event: Event) -> bool:
        if found is None:
            return False
        try:
            return ipaddress.ip_address(_text(found)) in network
        except ValueError:  # a host name, or nothing like an address
            return False

    return test


def _field_reference_test(value: st.SigmaFieldReference) -> ValueTest:
    other = fields.getter(value.field)

    def test(found: Any, event: Event) -> bool:
        reference = other(event)
        if found is None or reference is None:
            return False
        text, wanted = _text(found).lower(), _text(reference).lower()
        if value.starts_with:
            return text.startswith(wanted)
        if value.ends_with:
            return text.endswith(wanted)
        return text == wanted

    return test


_PARTS: dict[st.TimestampPart, Callable[[datetime], int]] = {
    st.TimestampPart.MINUTE: lambda moment: moment.minute,
    st.TimestampPart.HOUR: lambda moment: moment.hour,
    st.TimestampPart.DAY: lambda moment: moment.day,
    st.TimestampPart.WEEK: lambda moment: moment.isocalendar().week,
    st.TimestampPart.MONTH: lambda moment: moment.month,
    st.TimestampPart.YEAR: lambda moment: moment.year,
}


def _timestamp_test(value: st.SigmaTimestampPart) -> ValueTest:
    part, wanted = _PARTS[value.timestamp_part], value.number

    def test(found: Any, event: Event) -> bool:
        moment = found if isinstance(found, datetime) else event.time
        return part(moment) == wanted

    return test
