"""Loading rules: Sigma YAML files into a Ruleset of compiled detections and correlations, and the rules refused.

Every document of every file ends up in exactly one place: `detections`, `correlations` or `refused` (with the
reason). Nothing is dropped silently: a rule pySigma cannot read, one whose modifier or value type the engine does
not evaluate, a correlation of a kind or condition not evaluated, or one referring to a rule that is not loaded.

Correlation thresholds and windows can be tuned without editing the files (`tuning`): {rule name: {"timespan":
"120s", "gte": 5}}; a tuning naming no loaded correlation is an error, so a typo is never silently ignored.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from sigma.correlations import (
    CorrelationConditionNOT,
    SigmaCorrelationCondition,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
    SigmaExtendedCorrelationCondition,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from bookwarden.monitor.sigma import fields
from bookwarden.monitor.sigma.compile import Predicate, Requirement, Unsupported, compile_rule, requirement

# The correlation conditions evaluated as events arrive. A bound from above (lt, lte, eq, neq) is only known to
# hold when a window has closed; the engine alerts as events arrive, so such rules are refused with that reason.
EVALUATED_OPERATORS = {SigmaCorrelationConditionOperator.GTE, SigmaCorrelationConditionOperator.GT}
EVALUATED_TYPES = {
    SigmaCorrelationType.EVENT_COUNT,
    SigmaCorrelationType.VALUE_COUNT,
    SigmaCorrelationType.VALUE_SUM,
    SigmaCorrelationType.VALUE_AVG,
    SigmaCorrelationType.TEMPORAL,
    SigmaCorrelationType.TEMPORAL_ORDERED,
}


@dataclass(frozen=True)
class Detection:
    key: str  # the rule's name, else its id: what correlations refer to it by and alerts name
    title: str
    level: str | None
    product: str | None
    category: str | None
    service: str | None
    predicate: Predicate
    path: Path | None
    sigma_id: str | None = None  # correlations may refer to a rule by id as well as by name
    requirement: Requirement | None = None  # a field and the values it must equal, for the engine's index
    # Whether a match is an alert by itself: a rule only a correlation uses is not, unless it says `generate`.
    output: bool = True

    @property
    def fed(self) -> bool:
        """Whether a log source we parse today feeds this rule."""
        return fields.produced(self.product, self.category, self.service)


@dataclass(frozen=True)
class Correlation:
    key: str
    title: str
    level: str | None
    kind: SigmaCorrelationType
    rules: tuple[str, ...]  # keys of the detections it counts
    group_by: tuple[str, ...]
    aliases: Mapping[str, Mapping[str, str]]  # group-by alias -> {detection key: its field}
    timespan: timedelta
    operator: SigmaCorrelationConditionOperator | None
    threshold: float | None
    value_field: str | None  # value_count, value_sum, value_avg: the field counted or summed
    expression: Any = None  # a temporal correlation's extended condition (pySigma's parse tree), if any
    references: Mapping[str, str] = field(default_factory=dict)  # how the rule refers to each detection -> its key
    path: Path | None = None


@dataclass(frozen=True)
class Refused:
    path: Path | None
    title: str | None
    key: str | None
    reason: str


@dataclass
class Ruleset:
    detections: list[Detection] = field(default_factory=list)
    correlations: list[Correlation] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "detections": len(self.detections),
            "correlations": len(self.correlations),
            "refused": len(self.refused),
            "without_source": sum(not detection.fed for detection in self.detections),
        }


def builtin_paths() -> list[Path]:
    """The built-in pack: the YAML files shipped in bookwarden/monitor/rules/."""
    folder = resources.files("bookwarden.monitor") / "rules"
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith((".yml", ".yaml")))


def rule_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders searched for *.yml and *.yaml, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml")))
        else:
            found.append(path)
    return found


def load(paths: Iterable[Path], tuning: Mapping[str, Mapping[str, Any]] | None = None) -> Ruleset:
    ruleset = Ruleset()
    tuning = dict(tuning or {})
    correlations: list[tuple[Path, dict[str, Any]]] = []
    for path in rule_files(paths):
        try:
            documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            ruleset.refused.append(Refused(path, None, None, f"cannot be read as YAML: {exc}"))
            continue
        for document in documents:
            if not isinstance(document, dict):
                ruleset.refused.append(Refused(path, None, None, "a rule document must be a mapping"))
            elif "correlation" in document:
                correlations.append((path, document))
            elif "filter" in document:
                ruleset.refused.append(_refused(path, document, "Sigma filters are not applied yet"))
            elif "action" in document:
                ruleset.refused.append(_refused(path, document, "collection actions (global, repeat) are not read"))
            else:
                _load_detection(ruleset, path, document)
    by_key = {detection.key: detection for detection in ruleset.detections}
    by_id = {detection.sigma_id: detection for detection in ruleset.detections if detection.sigma_id}
    correlation_names = {str(d.get("name") or d.get("id")) for _, d in correlations}
    for path, document in correlations:
        _load_correlation(ruleset, path, document, by_key, by_id, tuning, correlation_names)
    if tuning:
        raise ValueError(f"tuning names no loaded correlation rule: {', '.join(sorted(tuning))}")
    _settle_outputs(ruleset, correlations)
    return ruleset


def _refused(path: Path, document: dict[str, Any], reason: str) -> Refused:
    key = document.get("name") or document.get("id")
    return Refused(path, document.get("title"), str(key) if key else None, reason)


def _load_detection(ruleset: Ruleset, path: Path, document: dict[str, Any]) -> None:
    try:
        rule = SigmaRule.from_dict(document)
        predicate = compile_rule(rule)
        required = requirement(rule)
    except SigmaError as exc:
        ruleset.refused.append(_refused(path, document, f"pySigma cannot read it: {exc}"))
        return
    except Unsupported as exc:
        ruleset.refused.append(_refused(path, document, str(exc)))
        return
    except Exception as exc:  # pySigma raises plain errors on some malformed rules: refused all the same
        ruleset.refused.append(_refused(path, document, f"pySigma cannot read it: {type(exc).__name__}: {exc}"))
        return
    key = rule.name or (str(rule.id) if rule.id else rule.title)
    logsource = rule.logsource
    detection = Detection(
        key=key,
        title=rule.title,
        level=rule.level.name.lower() if rule.level else None,
        product=logsource.product,
        category=logsource.category,
        service=logsource.service,
        predicate=predicate,
        path=path,
        sigma_id=str(rule.id) if rule.id else None,
        requirement=required,
    )
    ruleset.detections.append(detection)


def _load_correlation(
    ruleset: Ruleset,
    path: Path,
    document: dict[str, Any],
    by_key: dict[str, Detection],
    by_id: dict[str, Detection],
    tuning: dict[str, Mapping[str, Any]],
    correlation_names: set[str],
) -> None:
    document = copy.deepcopy(document)
    name = document.get("name") or document.get("id")
    if name is not None and (tuned := tuning.pop(str(name), None)) is not None:
        _tune(document, tuned)
    try:
        rule = SigmaCorrelationRule.from_dict(document)
    except SigmaError as exc:
        ruleset.refused.append(_refused(path, document, f"pySigma cannot read it: {exc}"))
        return
    reason = _unsupported_correlation(rule)
    references = [reference.reference for reference in rule.rules or []]
    if isinstance(rule.condition, SigmaExtendedCorrelationCondition) and not references:
        references = rule.condition.get_referenced_rules()
    keys, refmap = [], {}
    for reference in references:
        detection = by_key.get(reference) or by_id.get(reference)
        if detection is None:
            nested = reference in correlation_names
            reason = reason or (
                f"refers to the correlation {reference!r}: correlations of correlations are not evaluated yet"
                if nested
                else f"refers to rule {reference!r}, which is not loaded (missing, or refused)"
            )
            break
        keys.append(detection.key)
        refmap[reference] = detection.key
    if reason is not None:
        ruleset.refused.append(_refused(path, document, reason))
        return
    condition = rule.condition
    simple = isinstance(condition, SigmaCorrelationCondition)
    aliases = {
        alias.alias: {_key_of(ref.reference, by_key, by_id): field_name for ref, field_name in alias.mapping.items()}
        for alias in rule.aliases
    }
    ruleset.correlations.append(
        Correlation(
            key=rule.name or (str(rule.id) if rule.id else rule.title),
            title=rule.title,
            level=rule.level.name.lower() if rule.level else None,
            kind=rule.type,
            rules=tuple(keys),
            group_by=tuple(rule.group_by or ()),
            aliases=aliases,
            timespan=timedelta(seconds=rule.timespan.seconds),
            operator=condition.op if simple else None,
            threshold=condition.count if simple else None,
            value_field=_single_field(condition.fieldref) if simple else None,
            expression=None if simple else condition.parsed,
            references=refmap,
            path=path,
        )
    )


def _key_of(reference: str, by_key: dict[str, Detection], by_id: dict[str, Detection]) -> str:
    detection = by_key.get(reference) or by_id.get(reference)
    return detection.key if detection is not None else reference


def _single_field(fieldref: str | list[str] | None) -> str | None:
    if isinstance(fieldref, list):
        return fieldref[0] if fieldref else None
    return fieldref


def _unsupported_correlation(rule: SigmaCorrelationRule) -> str | None:
    if rule.type not in EVALUATED_TYPES:
        return f"{rule.type.name.lower()} correlations are not evaluated yet (percentiles and medians over a window)"
    condition = rule.condition
    if isinstance(condition, SigmaCorrelationCondition):
        if condition.op not in EVALUATED_OPERATORS:
            return (
                f"condition {condition.op.name.lower()}: a bound from above is only known once a window closes; "
                "the engine alerts as events arrive (gte and gt are evaluated)"
            )
        if isinstance(condition.fieldref, list) and len(condition.fieldref) > 1:
            return "a condition over several fields is not evaluated"
    elif rule.type is SigmaCorrelationType.TEMPORAL_ORDERED:
        return "an extended condition on temporal_ordered is not evaluated (only on temporal)"
    elif _has_not(condition.parsed):
        return (
            "`not` in an extended condition (a rule that did not match) is only known once a window closes; "
            "the engine alerts as events arrive"
        )
    return None


def _has_not(node: Any) -> bool:
    if isinstance(node, CorrelationConditionNOT):
        return True
    return any(_has_not(arg) for arg in getattr(node, "args", ()))


def _tune(document: dict[str, Any], tuned: Mapping[str, Any]) -> None:
    correlation = document.setdefault("correlation", {})
    for key, value in tuned.items():
        if key == "timespan":
            correlation["timespan"] = str(value) if not isinstance(value, int) else f"{value}s"
        elif key in SigmaCorrelationConditionOperator.operators():
            condition = correlation.get("condition")
            kept = (
                {k: v for k, v in condition.items() if k in ("field", "percentile")}
                if isinstance(condition, dict)
                else {}
            )
            correlation["condition"] = {**kept, key: value}
        else:
            raise ValueError(f"tuning key {key!r} is neither timespan nor a condition operator (gte, gt...)")


def _settle_outputs(ruleset: Ruleset, correlations: list[tuple[Path, dict[str, Any]]]) -> None:
    """A detection only a correlation counts raises no alert of its own, unless a correlation says `generate`."""
    counted = {key for correlation in ruleset.correlations for key in correlation.rules}
    generating = set()
    for _, document in correlations:
        if document.get("correlation", {}).get("generate"):
            name = document.get("name") or document.get("id")
            generating.update(k for c in ruleset.correlations if c.key == name for k in c.rules)
    ruleset.detections = [
        detection if detection.key not in counted or detection.key in generating else replace(detection, output=False)
        for detection in ruleset.detections
    ]
