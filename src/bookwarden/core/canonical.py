"""The one place JSON is encoded for hashing, signing or binding.

`canonical_json` is RFC 8785, the JSON Canonicalization Scheme (JCS): what anything new that is hashed or
signed uses, because any other JCS implementation (an auditor's, an institution's) reproduces its bytes.

`ascii_sorted_json` is the form the platform hashed before it had JCS: Python's
`json.dumps(sort_keys=True, separators=(",", ":"))`, every non-ASCII character and DEL written as a
\\uXXXX escape, floats as Python writes them. Audit chain links and signed checkpoints (through each
event's body digest) and the approval of sign-on settings (their content digest) are stored hashes of
it, so it stays, byte for byte, for as long as they must verify. `ascii_sorted_json_fast` is msgspec's
faster draft of it for the audit verifier's hot path.

Floats in `canonical_json`: written as ECMAScript's Number::toString writes them (the shortest text that
reads back as the same double, in ES's plain or exponent form), as RFC 8785 requires. So 1.0 and 1 encode
alike ("1"), as they do in JavaScript: a value that is hashed should hold integers or strings when the
difference matters. NaN and the infinities are refused (JSON has no spelling for them). Integers within
±(2**53 - 1) are written as they are; past that, only those a double holds exactly and whose ES text is
the integer itself (2**53, or a large float read back by Python as an int) are taken, and the rest
(2**53 + 1, 2**60, whose ES text is 1152921504606847000) refused: encoding them would hash another
number than the one given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import msgspec

MAX_SAFE_INTEGER = 2**53 - 1  # ECMAScript's Number.MAX_SAFE_INTEGER

# ECMAScript JSON.stringify escapes exactly these: the quote, the backslash and the C0 controls; the
# five with a short form use it, the others \u00xx in lowercase hex. Everything else is written as is.
_MUST_ESCAPE = re.compile(r'[\x00-\x1f"\\]')
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def canonical_json(value: Any) -> bytes:
    """`value` as RFC 8785 canonical JSON, in UTF-8.

    Takes dicts with string keys, lists and tuples, strings, booleans, None, integers a double holds
    exactly and finite floats. Raises TypeError for any other type and ValueError for a value JSON
    cannot carry exactly (NaN, an infinity, an integer such as 2**53 + 1, a lone surrogate).
    """
    parts: list[str] = []
    try:
        _encode(value, parts.append)
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "canonical JSON: a string holds a lone surrogate, which is not Unicode text; nothing was encoded"
        ) from None


def _encode(value: Any, write: Callable[[str], Any]) -> None:
    if isinstance(value, str):
        write(_string(value))
    elif value is None:
        write("null")
    elif value is True:
        write("true")
    elif value is False:
        write("false")
    elif isinstance(value, int):
        write(_integer(int(value)))  # int(): an IntEnum member writes its number, not its name
    elif isinstance(value, float):
        write(es_number(value))
    elif isinstance(value, dict):
        write("{")
        # UTF-16 code units, as RFC 8785 sorts: big-endian UTF-16 bytes compare in the same order.
        # (Python's own order, by code point, differs for keys mixing U+E000..U+FFFF and astral characters.)
        for index, (key, item) in enumerate(sorted(value.items(), key=_utf16_key)):
            if index:
                write(",")
            write(_string(key))
            write(":")
            _encode(item, write)
        write("}")
    elif isinstance(value, list | tuple):
        write("[")
        for index, item in enumerate(value):
            if index:
                write(",")
            _encode(item, write)
        write("]")
    else:
        raise TypeError(
            f"canonical JSON: a {type(value).__name__} is not a JSON value; convert it to a string, number, "
            "boolean, null, list or dict first"
        )


def _integer(number: int) -> str:
    text = str(number)
    if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        return text
    # Past 2**53 a double holds only some integers: keep those whose JSON text is the integer itself
    # (a large float read back by Python is one), refuse the rest rather than hash a neighbour.
    try:
        as_double = es_number(float(number))
    except OverflowError:
        as_double = "a number past the largest double"
    if as_double != text:
        raise ValueError(
            f"canonical JSON: the integer {number} has no exact JSON number (a double; it would be "
            f"{as_double}); send it as a string"
        )
    return text


def _utf16_key(item: tuple[Any, Any]) -> bytes:
    key = item[0]
    if not isinstance(key, str):
        raise TypeError(f"canonical JSON: object keys must be strings, not {type(key).__name__} ({key!r})")
    return key.encode("utf-16-be")


def _string(text: str) -> str:
    return '"' + _MUST_ESCAPE.sub(_escape, text) + '"'


def _escape(found: re.Match[str]) -> str:
    character = found.group()
    return _SHORT_ESCAPES.get(character) or f"\\u{ord(character):04x}"


def es_number(number: float) -> str:
    """A finite double as ECMAScript's Number::toString writes it (ECMA-262, Number::toString, radix 10).

    repr() gives the digits: Python, like ES, writes the shortest digit string that reads back as the
    same double, the closest one when several are as short. Only the layout differs, so the digits and
    the decimal point's place are taken from repr() and laid out by ES's rules.
    """
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"canonical JSON: {number} is not a JSON number; nothing was encoded")
    if number == 0:
        return "0"  # -0 too, as in ES
    if number < 0:
        return "-" + es_number(-number)
    mantissa, _, exponent = repr(number).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    # point: where the decimal point sits, counted from the first digit (value = 0.digits × 10**point)
    point = len(whole) + (int(exponent) if exponent else 0)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    shown = n - 1
    sign = "+" if shown >= 0 else "-"
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(shown)}"


def ascii_sorted_json(value: Any) -> bytes:
    """The pre-JCS hashed form: `json.dumps(value, sort_keys=True, separators=(",", ":"))`, as bytes.

    Kept because stored hashes depend on it: every audit event's body digest (and so the chain hashes
    and the signed checkpoints over them) and the content digest an approval of sign-on settings binds.
    It differs from `canonical_json` wherever text is not ASCII or holds DEL (written \\u00e9, \\u007f,
    surrogate pairs as two escapes, where JCS writes UTF-8), for floats (Python's repr, e.g. 1e+16 and 1.0,
    where JCS writes 10000000000000000 and 1), for integers past 2**53 (written, where JCS refuses) and
    for NaN and the infinities (written NaN, Infinity). Do not use it for anything new.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


# msgspec's draft of `ascii_sorted_json`, several times faster: dict keys sorted, a msgspec.Struct's
# fields in their declared order (declare them sorted). It matches `ascii_sorted_json` byte for byte
# when its output is ASCII without DEL and holds no float; otherwise it writes UTF-8, a raw DEL or
# msgspec's float text. So a caller must confirm each draft (the audit verifier compares it with the
# stored digest) and fall back to `ascii_sorted_json` when it does not match.
ascii_sorted_json_fast: Callable[[Any], bytes] = msgspec.json.Encoder(order="deterministic").encode
