"""Detection of payment card numbers and bank details in submitted text.

The platform promises never to store payment or bank data, so every string
field coming through the API is screened here before anything is persisted.
Library data is full of long numbers (item and patron barcodes, ISBNs, phone
numbers, dates), so each rule pairs a checksum with a structural constraint
(issuer prefix and length, IBAN country length, an explicit account keyword)
to keep ordinary records from being refused.

Findings never carry the matched digits: the explanation ends up in error
messages and logs, and echoing the number there would store it after all.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "SensitiveDataKind",
    "SensitiveDataRefused",
    "SensitiveFinding",
    "check_fields",
    "find_sensitive",
]


class SensitiveDataKind(StrEnum):
    PAYMENT_CARD = "payment card number"
    IBAN = "IBAN"
    BANK_ACCOUNT = "bank account number"


@dataclass(frozen=True)
class SensitiveFinding:
    kind: SensitiveDataKind
    detail: str


class SensitiveDataRefused(ValueError):
    """A submitted field holds payment or bank data and must not be stored."""

    def __init__(self, field: str, finding: SensitiveFinding) -> None:
        self.field = field
        self.finding = finding
        super().__init__(
            f'field "{field}" looks like a {finding.kind} ({finding.detail}); payment and bank data are never stored.'
        )

    def __reduce__(self) -> tuple[type[SensitiveDataRefused], tuple[str, SensitiveFinding]]:
        # The default reduction replays the message as the only argument, which
        # this signature rejects; keep the error picklable for worker processes.
        return type(self), (self.field, self.finding)


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def _ascii_digits(text: str) -> str:
    """Map every Unicode decimal digit to its ASCII form, one char for one.

    A card typed with full-width or Arabic-Indic digits is still a card; keeping
    the length unchanged keeps match positions comparable across the rules.
    """
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(ch)) if not ch.isascii() and ch.isdecimal() else ch for ch in text)


# A doubled Luhn digit (2 * d, minus 9 if above 9) is again a single digit, so
# doubling can be done with str.translate; long texts yield many candidates.
_LUHN_DOUBLE = str.maketrans("0123456789", "0246813579")


def _luhn_valid(digits: str) -> bool:
    mixed = digits[-1::-2] + digits[-2::-2].translate(_LUHN_DOUBLE)
    return sum(map(int, mixed)) % 10 == 0


def _ean13_valid(digits: str) -> bool:
    """EAN-13 / GTIN-13 check digit (weights 1, 3): ISBNs and media barcodes."""
    if len(digits) != 13:
        return False
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return total % 10 == 0


# Runs of digits joined by single spaces or hyphens; the lookbehind stops a run
# from starting in the middle of a longer one.
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*", re.ASCII)


# ---------------------------------------------------------------------------
# IBAN
# ---------------------------------------------------------------------------

# Total IBAN length per country, from the SWIFT IBAN registry (ISO 13616).
_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16,
    "BG": 22, "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22,
    "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22,
    "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26,
    "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

_IBAN_UNLISTED_LENGTHS = range(15, 35)
_BBAN_MIN, _BBAN_MAX = 11, 30

# Country code and check digits, not glued to a preceding word or number.
_IBAN_HEAD = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})([0-9]{2})", re.ASCII)
_COMPACT_BBAN = re.compile(r"[A-Za-z0-9]+", re.ASCII)
_PRINT_GROUP = re.compile(r" ([A-Za-z0-9]{1,4})(?![A-Za-z0-9])", re.ASCII)


def _iban_mod97_valid(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    # int(ch, 36) maps 0-9 to themselves and A-Z to 10-35, as ISO 13616 requires.
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def _iban_length_ok(country: str, length: int) -> bool:
    expected = _IBAN_LENGTHS.get(country)
    if expected is None:
        return length in _IBAN_UNLISTED_LENGTHS
    return length == expected


def _bban_candidates(text: str, pos: int) -> Iterator[tuple[str, int]]:
    """Possible (BBAN, end position) pairs starting at `pos`: compact, or print
    format in groups of 4.

    In print format the IBAN may be followed by ordinary words, so every
    group-aligned prefix is offered and the country length picks the right one.
    """
    compact = _COMPACT_BBAN.match(text, pos)
    if compact is not None:
        yield compact.group(), compact.end()
        return
    bban = ""
    while (group := _PRINT_GROUP.match(text, pos)) is not None:
        bban += group.group(1)
        if len(bban) > _BBAN_MAX:
            return
        yield bban, group.end()
        if len(group.group(1)) < 4:
            return  # only the final group may be short
        pos = group.end()


def _iban_shaped_spans(text: str) -> list[tuple[int, int]]:
    """Spans laid out like an IBAN, whether or not the checksum holds.

    A mistyped IBAN is not a card: without this, the digit groups of
    "DE89 3804 0044 ..." can by chance form a Luhn-valid card number.
    """
    spans = []
    for head in _IBAN_HEAD.finditer(text):
        ends = [end for bban, end in _bban_candidates(text, head.end()) if len(bban) >= _BBAN_MIN]
        if ends:
            spans.append((head.start(), ends[-1]))
    return spans


class _SpanSet:
    """Sorted, merged spans answering overlap queries in logarithmic time, so
    text crowded with IBAN-like codes cannot make card scanning quadratic."""

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        merged: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        self._starts = [start for start, _ in merged]
        self._spans = merged

    def overlaps(self, start: int, end: int) -> bool:
        index = bisect.bisect_right(self._starts, start) - 1
        candidates = self._spans[max(index, 0) : index + 2]
        return any(s < end and start < e for s, e in candidates)


def _find_iban(text: str) -> tuple[int, SensitiveFinding] | None:
    for head in _IBAN_HEAD.finditer(text):
        country = head.group(1).upper()
        # 00, 01 and 99 can never result from the check digit computation.
        if not 2 <= int(head.group(2)) <= 98:
            continue
        for bban, _end in _bban_candidates(text, head.end()):
            iban = (head.group(1) + head.group(2) + bban).upper()
            if _BBAN_MIN <= len(bban) <= _BBAN_MAX and _iban_length_ok(country, len(iban)) and _iban_mod97_valid(iban):
                detail = f"valid IBAN checksum, country {country}"
                return head.start(), SensitiveFinding(SensitiveDataKind.IBAN, detail)
    return None


# ---------------------------------------------------------------------------
# Payment cards
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Issuer:
    name: str
    prefixes: tuple[tuple[int, int], ...]  # inclusive ranges, compared on equal width
    lengths: frozenset[int]
    # Lengths that only count when the digits are grouped in this printed layout.
    layout_only: Mapping[int, tuple[int, ...]] = field(default_factory=dict)


def _lengths(low: int, high: int) -> frozenset[int]:
    return frozenset(range(low, high + 1))


# Order matters: the first issuer whose prefix matches owns the number, so the
# catch-all Maestro ranges come last and cannot lend their looser lengths to
# prefixes that belong to another scheme (e.g. a 13-digit "6011..." is not a card).
_ISSUERS: tuple[_Issuer, ...] = (
    _Issuer("Amex", ((34, 34), (37, 37)), frozenset({15})),
    _Issuer("JCB", ((3528, 3589),), _lengths(16, 19)),
    # An unbroken 14-digit run starting 300-305/36/38/39 is exactly the shape of a
    # library item barcode ("3" + institution code + serial + Luhn check digit),
    # so 14-digit Diners numbers are only recognised in their printed 4-6-4 layout.
    _Issuer("Diners", ((300, 305), (36, 36), (38, 39)), _lengths(14, 19), {14: (4, 6, 4)}),
    _Issuer("Visa", ((4, 4),), frozenset({13, 16, 19})),
    _Issuer("Mastercard", ((51, 55), (2221, 2720)), frozenset({16})),
    _Issuer("Discover", ((6011, 6011), (644, 649), (65, 65)), _lengths(16, 19)),
    _Issuer("UnionPay", ((62, 62),), _lengths(16, 19)),
    # Maestro allows 12 digits too, but 12 is below the card floor used here.
    _Issuer("Maestro", ((50, 50), (56, 69)), _lengths(13, 19)),
)

_CARD_MIN_DIGITS = 13
_CARD_MAX_DIGITS = 19
_PREFIX_WIDTH = 4  # the longest issuer prefix


@functools.cache
def _issuer_for_prefix(prefix: str) -> _Issuer | None:
    # Cached: the issuer depends only on the first four digits, and a long text
    # asks about the same few prefixes over and over.
    for issuer in _ISSUERS:
        for low, high in issuer.prefixes:
            width = len(str(low))
            if low <= int(prefix[:width]) <= high:
                return issuer
    return None


class _DigitRun:
    """Digit groups joined by single spaces or hyphens, e.g. "4111 1111 1111 1111".

    Card candidates are group-aligned windows of the run. Windows never split a
    group, so a card cannot be carved out of a longer unbroken number. They let a
    card be found next to other numbers ("4111 1111 1111 1111 123" with a
    security code), but every separator inside one window must be the same: a
    card is written "4111-1111-..." or "4111 1111 ...", whereas a space-separated
    list of hyphenated ISBNs would otherwise offer cross-ISBN windows that pass
    Luhn by chance.
    """

    def __init__(self, run: str) -> None:
        parts = re.split(r"([ -])", run)
        self.groups: list[str] = parts[0::2]
        separators = parts[1::2]
        count = len(self.groups)
        self._digits_before = list(itertools.accumulate((len(g) for g in self.groups), initial=0))
        self._offsets = list(itertools.accumulate((len(g) + 1 for g in self.groups), initial=0))
        # _chain_end[i]: the last group a window starting at group i may reach
        # while all of its separators stay the same character.
        self._chain_end = list(range(count))
        for i in range(count - 2, -1, -1):
            same = i + 1 < count - 1 and separators[i + 1] == separators[i]
            self._chain_end[i] = self._chain_end[i + 1] if same else i + 1

    def prefix(self, first: int) -> str:
        return "".join(self.groups[first : first + _PREFIX_WIDTH])[:_PREFIX_WIDTH]

    def windows(self, first: int, lengths: frozenset[int]) -> Iterator[int]:
        """Last group index of each window starting at group `first` whose digit
        count is in `lengths`, shortest first."""
        before = self._digits_before
        last = bisect.bisect_left(before, before[first] + _CARD_MIN_DIGITS) - 1
        while first <= last <= self._chain_end[first]:
            length = before[last + 1] - before[first]
            if length > _CARD_MAX_DIGITS:
                return
            if length in lengths:
                yield last
            last += 1

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Character offsets of groups first..last within the run."""
        return self._offsets[first], self._offsets[last] + len(self.groups[last])


def _is_card(issuer: _Issuer, groups: list[str]) -> bool:
    digits = "".join(groups)
    required_layout = issuer.layout_only.get(len(digits))
    if required_layout is not None and tuple(len(g) for g in groups) != required_layout:
        return False
    # DVDs, CDs and games carry EAN-13 barcodes whose leading country codes
    # (40-44, 50, 56-69, ...) overlap Visa and Maestro. One in ten also passes
    # Luhn, so a valid EAN-13 is read as a product code; 13-digit cards are
    # nearly extinct, which makes that the cheaper mistake.
    if _ean13_valid(digits):
        return False
    return _luhn_valid(digits)


def _find_card(text: str) -> tuple[int, SensitiveFinding] | None:
    iban_spans = _SpanSet(_iban_shaped_spans(text))
    for match in _DIGIT_RUN.finditer(text):
        # A leading "+" marks an international phone number; cards never have one.
        after_plus = match.start() > 0 and text[match.start() - 1] == "+"
        run = _DigitRun(match.group())
        for first in range(int(after_plus), len(run.groups)):
            issuer = _issuer_for_prefix(run.prefix(first))
            if issuer is None:
                continue
            for last in run.windows(first, issuer.lengths):
                groups = run.groups[first : last + 1]
                start, end = (match.start() + offset for offset in run.span(first, last))
                if _is_card(issuer, groups) and not iban_spans.overlaps(start, end):
                    digit_count = sum(len(g) for g in groups)
                    detail = f"Luhn-valid, {digit_count} digits, {issuer.name} prefix"
                    return start, SensitiveFinding(SensitiveDataKind.PAYMENT_CARD, detail)
    return None


# ---------------------------------------------------------------------------
# Bank account numbers
# ---------------------------------------------------------------------------

# How far (in non-digit characters) a number may sit from its keyword.
_KEYWORD_REACH = 20

_ROUTING = re.compile(
    r"\b(?P<keyword>routing|aba|rtn)\b"
    rf"[^0-9]{{0,{_KEYWORD_REACH}}}?"
    r"(?P<number>[0-9]{9})(?![0-9])",
    re.IGNORECASE | re.ASCII,
)

# "IBAN" is deliberately not a keyword: text that names an IBAN but carries no
# valid one is not treated as bank data.
_ACCOUNT = re.compile(
    r"(?:\b(?P<qualifier>library|patron|borrower|member|membership|reader|user)\s+)?"
    r"\b(?P<keyword>accounts?|acct|a/c|kontonummer|konto|sort[ -]?code|bsb|bank)\b"
    rf"(?P<gap>[^0-9]{{0,{_KEYWORD_REACH}}}?)"
    r"(?P<number>[0-9]+(?:[ -][0-9]+)*)",
    re.IGNORECASE | re.ASCII,
)

# Another label between the keyword and the number claims the number for itself:
# "Bank of England, ISBN 978-..." is a book, "bank, call 555-0100" a phone.
_OTHER_LABEL = re.compile(
    r"\b(?:isbn|issn|barcode|phone|tel|telephone|mobile|fax|call)\b",
    re.IGNORECASE | re.ASCII,
)

_ACCOUNT_MIN_DIGITS, _ACCOUNT_MAX_DIGITS = 6, 17

# First two digits of a real ABA routing number (Federal Reserve districts,
# thrift institutions, electronic transactions).
_ABA_PREFIXES = frozenset([*range(0, 13), *range(21, 33), *range(61, 73), 80])


def _aba_valid(digits: str) -> bool:
    if int(digits[:2]) not in _ABA_PREFIXES:
        return False
    weights = (3, 7, 1) * 3
    return sum(w * int(d) for w, d in zip(weights, digits, strict=True)) % 10 == 0


def _find_routing(text: str) -> tuple[int, SensitiveFinding] | None:
    for match in _ROUTING.finditer(text):
        if _aba_valid(match.group("number")):
            keyword = match.group("keyword").lower()
            detail = f"9-digit number after '{keyword}', valid ABA routing checksum"
            return match.start("number"), SensitiveFinding(SensitiveDataKind.BANK_ACCOUNT, detail)
    return None


def _is_year(value: str) -> bool:
    return len(value) == 4 and 1000 <= int(value) <= 2199


def _is_day_month(first: str, second: str) -> bool:
    a, b = int(first), int(second)
    return 1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12


def _looks_like_date(groups: list[str]) -> bool:
    """Dates and year ranges: "Bank of England 1694-1994", "account opened 2024-03-01"."""
    sizes = [len(g) for g in groups]
    if sizes == [4, 4]:
        return _is_year(groups[0]) and _is_year(groups[1])
    if sizes == [4, 2, 2]:
        return _is_year(groups[0]) and _is_day_month(groups[2], groups[1])
    if sizes == [2, 2, 4]:
        return _is_year(groups[2]) and _is_day_month(groups[0], groups[1])
    return False


def _looks_like_isbn13(digits: str) -> bool:
    return digits[:3] in ("978", "979") and _ean13_valid(digits)


def _plausible_account_number(match: re.Match[str]) -> bool:
    groups = re.split(r"[ -]", match.group("number"))
    digits = "".join(groups)
    if not _ACCOUNT_MIN_DIGITS <= len(digits) <= _ACCOUNT_MAX_DIGITS:
        return False
    if match.group("gap").endswith("+"):
        return False  # "+44 20 ..." is an international phone number
    return not (_looks_like_date(groups) or _looks_like_isbn13(digits))


def _find_account(text: str) -> tuple[int, SensitiveFinding] | None:
    for match in _ACCOUNT.finditer(text):
        if match.group("qualifier"):
            continue  # "library account 1234567" is the patron's account with us
        if _OTHER_LABEL.search(match.group("gap")):
            continue
        if not _plausible_account_number(match):
            continue
        keyword = match.group("keyword").lower()
        digit_count = sum(ch.isdigit() for ch in match.group("number"))
        detail = f"{digit_count}-digit number after '{keyword}'"
        return match.start("number"), SensitiveFinding(SensitiveDataKind.BANK_ACCOUNT, detail)
    return None


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------

# When findings start at the same place the most specific one explains best:
# a valid IBAN or card beats a generic "number after a keyword".
_DETECTORS = (_find_iban, _find_card, _find_routing, _find_account)


# An id in the canonical UUID form is an id, alone or quoted in text: its hex groups can read as a card
# number by chance ("30433819-7096-420f-..." holds a Luhn-valid Diners number), and bodies are full of
# ids. Each is blanked before the scan, so the digits around it are not joined across it either.
_UUID = re.compile(
    r"(?<![0-9A-Za-z])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![0-9A-Za-z])"
)


def find_sensitive(text: str) -> SensitiveFinding | None:
    """First sensitive item found in `text`, or None."""
    normalized = _ascii_digits(_UUID.sub(" ", text))
    best: tuple[int, int, SensitiveFinding] | None = None
    for rank, detector in enumerate(_DETECTORS):
        found = detector(normalized)
        if found is None:
            continue
        position, finding = found
        if best is None or (position, rank) < best[:2]:
            best = (position, rank, finding)
    return None if best is None else best[2]


def _join(prefix: str, name: object) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _check_value(value: object, path: str) -> None:
    if isinstance(value, Mapping):
        check_fields(value, path)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(item, _join(path, index))
    elif isinstance(value, str):
        _refuse_if_sensitive(value, path)
    elif isinstance(value, int) and not isinstance(value, bool):
        # A card number can arrive as a JSON number just as well as a string.
        _refuse_if_sensitive(str(value), path)


def _refuse_if_sensitive(text: str, path: str) -> None:
    finding = find_sensitive(text)
    if finding is not None:
        raise SensitiveDataRefused(path, finding)


def check_fields(values: Mapping[str, object], prefix: str = "") -> None:
    """Raise SensitiveDataRefused for the first string (or int) value holding
    payment or bank data, naming it by dotted path ("items.2.note")."""
    for name, value in values.items():
        _check_value(value, _join(prefix, name))
