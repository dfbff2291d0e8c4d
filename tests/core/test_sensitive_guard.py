"""Tests for the payment-card / IBAN / bank-account guard.

False positives on ordinary library data (barcodes, ISBNs, phone numbers,
dates) matter as much as misses, so negatives are tested as carefully as hits.
"""

from __future__ import annotations

import datetime as dt
import itertools
import pickle
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bookwarden.core.sensitive import (
    SensitiveDataKind,
    SensitiveDataRefused,
    SensitiveFinding,
    check_fields,
    find_sensitive,
)

CARD = SensitiveDataKind.PAYMENT_CARD
IBAN = SensitiveDataKind.IBAN
ACCOUNT = SensitiveDataKind.BANK_ACCOUNT


# ---------------------------------------------------------------------------
# Helpers that build valid numbers, so tests do not depend on magic constants
# ---------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def with_luhn_digit(body: str) -> str:
    """Append the check digit that makes `body` Luhn-valid."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def iban_with_check(country: str, bban: str) -> str:
    """Compact IBAN for `country` and `bban`, with correct ISO 13616 check digits."""
    numeric = "".join(str(int(ch, 36)) for ch in (bban + country + "00").upper())
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def print_format(compact: str) -> str:
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def same_class_substitute(char: str) -> str:
    """A different character of the same class: digit for digit, letter for letter.

    Mod-97 catches every such single substitution; a letter swapped for a digit
    changes the expansion length and is only caught with high probability.
    """
    if char.isdigit():
        return str((int(char) + 1) % 10)
    return "A" if char != "A" else "B"


def kind_of(text: str) -> SensitiveDataKind | None:
    finding = find_sensitive(text)
    return None if finding is None else finding.kind


# ---------------------------------------------------------------------------
# Payment cards
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "my card is 5555 5555 5555 4444 thanks",
        "card:4111111111111111.",
        "4111 1111 1111 1111 123",  # followed by a security code
        "order 12 4111-1111-1111-1111",  # preceded by an unrelated number
    ],
)
def test_card_found_in_all_layouts(text: str) -> None:
    assert kind_of(text) is CARD


@pytest.mark.parametrize(
    ("number", "issuer"),
    [
        ("4222222222222", "Visa"),  # 13-digit Visa
        ("378282246310005", "Amex"),
        ("3782 822463 10005", "Amex"),  # Amex print layout 4-6-5
        ("5105105105105100", "Mastercard"),
        ("2221000000000009", "Mastercard"),  # 2-series
        ("6011111111111117", "Discover"),
        ("3530111333300000", "JCB"),
        ("3056 930902 5904", "Diners"),  # 14 digits, in the printed 4-6-4 layout
        ("3600000000000008", "Diners"),  # 16 digits
        ("6200000000000005", "UnionPay"),
        ("6759649826438453", "Maestro"),
    ],
)
def test_each_issuer_is_recognised(number: str, issuer: str) -> None:
    finding = find_sensitive(number)
    assert finding is not None
    assert finding.kind is CARD
    assert f"{issuer} prefix" in finding.detail


def test_full_width_digits_are_still_a_card() -> None:
    assert kind_of("４１１１ １１１１ １１１１ １１１１") is CARD


def test_luhn_invalid_number_is_not_a_card() -> None:
    assert find_sensitive("4111 1111 1111 1112") is None


def test_valid_number_inside_a_longer_digit_run_is_not_a_card() -> None:
    assert kind_of("9" + "4111111111111111") is None
    assert kind_of("4111111111111111" + "0000") is None


def test_issuer_length_is_enforced() -> None:
    # Luhn-valid, Mastercard prefix, but Mastercard only issues 16 digits.
    fifteen = with_luhn_digit("55555555555555")
    assert luhn_valid(fifteen)
    assert find_sensitive(fifteen) is None


def test_mixed_separators_inside_one_window_do_not_join_numbers() -> None:
    # Two hyphenated ISBNs separated by a space must not be read across.
    assert find_sensitive("978-0-306-40615-7 978-1-4028-9462-6") is None


@pytest.mark.parametrize(
    "body",
    [
        "2123400012345",  # patron barcode: "2" + institution + serial
        "2987600000001",
        "3123400056789",  # item barcode: "3" + institution + serial
        "3101000123456",
    ],
)
def test_luhn_valid_library_barcodes_are_accepted(body: str) -> None:
    barcode = with_luhn_digit(body)
    assert len(barcode) == 14
    assert luhn_valid(barcode)  # so only the issuer prefix/length rule lets it through
    assert find_sensitive(barcode) is None
    assert find_sensitive(f"barcode {barcode}") is None
    assert find_sensitive(f"items {barcode} {barcode}") is None


def test_unbroken_14_digit_diners_number_reads_as_an_item_barcode() -> None:
    # Item barcodes are "3" + institution code + serial + Luhn digit, so an
    # institution code starting 0-5/6/8/9 gives a Diners-shaped 14-digit number.
    barcode = "30569309025904"
    assert luhn_valid(barcode)
    assert find_sensitive(barcode) is None
    assert kind_of("3056 930902 5904") is CARD


@given(
    kind=st.sampled_from("23"),
    body=st.text(alphabet="0123456789", min_size=12, max_size=12),
    surround=st.sampled_from([("", ""), ("barcode ", ""), ("item ", " is due back")]),
)
def test_property_luhn_valid_14_digit_barcodes_are_accepted(kind: str, body: str, surround: tuple[str, str]) -> None:
    barcode = with_luhn_digit(kind + body)
    assert find_sensitive(surround[0] + barcode + surround[1]) is None


def test_card_after_a_phone_number_or_mistyped_iban_is_still_found() -> None:
    assert kind_of("+44 20 7946 0958 4111 1111 1111 1111") is CARD
    assert kind_of("DE89 3804 0044 0532 0130 00 4111 1111 1111 1111") is CARD


@pytest.mark.parametrize(
    "phone",
    ["+44 20 7946 0958", "+1 202-555-0143", "+49 30 901820", "+86 139 1234 5678", "call 555-0100"],
)
def test_phone_numbers_are_accepted(phone: str) -> None:
    assert find_sensitive(phone) is None


def test_leading_plus_marks_a_phone_number_not_a_card() -> None:
    digits = with_luhn_digit("431234567890")  # Visa-13 shaped, Luhn-valid
    assert kind_of(digits) is CARD
    assert find_sensitive(f"+{digits[:2]} {digits[2:]}") is None


@given(
    body=st.text(alphabet="0123456789", min_size=14, max_size=14),
    layout=st.sampled_from(["none", "space4", "hyphen4", "random"]),
    separator=st.sampled_from([" ", "-"]),
    cuts=st.sets(st.integers(min_value=1, max_value=15), max_size=6),
    surround=st.sampled_from([("", ""), ("my card is ", " thanks"), ("(", ")")]),
)
def test_property_visa_16_found_in_any_layout(
    body: str, layout: str, separator: str, cuts: set[int], surround: tuple[str, str]
) -> None:
    number = with_luhn_digit("4" + body)
    if layout == "none":
        shown = number
    elif layout in ("space4", "hyphen4"):
        sep = " " if layout == "space4" else "-"
        shown = sep.join(number[i : i + 4] for i in range(0, 16, 4))
    else:
        bounds = [0, *sorted(cuts), 16]
        shown = separator.join(number[a:b] for a, b in itertools.pairwise(bounds))
    assert kind_of(surround[0] + shown + surround[1]) is CARD


@given(
    body=st.text(alphabet="0123456789", min_size=14, max_size=14),
    position=st.integers(min_value=0, max_value=15),
    delta=st.integers(min_value=1, max_value=9),
    grouped=st.booleans(),
)
def test_property_one_changed_digit_is_not_a_card(body: str, position: int, delta: int, grouped: bool) -> None:
    number = with_luhn_digit("4" + body)
    changed_digit = str((int(number[position]) + delta) % 10)
    broken = number[:position] + changed_digit + number[position + 1 :]
    assert not luhn_valid(broken)
    shown = " ".join(broken[i : i + 4] for i in range(0, 16, 4)) if grouped else broken
    assert kind_of(shown) is not CARD


# ---------------------------------------------------------------------------
# IBAN
# ---------------------------------------------------------------------------

REAL_IBANS = [
    "DE89 3704 0044 0532 0130 00",
    "GB82 WEST 1234 5698 7654 32",
    "FR14 2004 1010 0505 0001 3M02 606",
    "BE68 5390 0754 7034",
    "NL91 ABNA 0417 1643 00",
    "CH93 0076 2011 6238 5295 7",
    "NO93 8601 1117 947",
    "MT84 MALT 0110 0001 2345 MTLC AST0 01S",
]


@pytest.mark.parametrize("iban", REAL_IBANS)
def test_real_ibans_found_in_every_form(iban: str) -> None:
    compact = iban.replace(" ", "")
    for text in (iban, compact, iban.lower(), compact.lower(), f"please pay to {iban} from my account"):
        finding = find_sensitive(text)
        assert finding is not None, text
        assert finding.kind is IBAN
        assert finding.detail == f"valid IBAN checksum, country {iban[:2]}"


@pytest.mark.parametrize("iban", REAL_IBANS[:3])
def test_one_changed_character_is_not_flagged(iban: str) -> None:
    for index, char in enumerate(iban):
        if char == " " or index < 2:
            continue
        changed = iban[:index] + same_class_substitute(char) + iban[index + 1 :]
        assert find_sensitive(changed) is None, changed


def test_iban_length_must_match_country() -> None:
    short_de = iban_with_check("DE", "37040044053201300")  # valid checksum, 21 chars
    assert find_sensitive(short_de) is None
    assert find_sensitive(iban_with_check("DE", "370400440532013000")) is not None


def test_unlisted_country_accepts_registry_length_range() -> None:
    assert kind_of(iban_with_check("MA", "0" * 20 + "1234")) is IBAN  # 28 chars
    assert find_sensitive(iban_with_check("MA", "1234567")) is None  # 11 chars: too short


def test_iban_glued_to_a_word_is_not_read() -> None:
    assert find_sensitive("XDE89370400440532013000") is None


_BBAN_SHAPES = {
    "DE": st.text(alphabet="0123456789", min_size=18, max_size=18),
    "BE": st.text(alphabet="0123456789", min_size=12, max_size=12),
    "GB": st.tuples(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=4, max_size=4),
        st.text(alphabet="0123456789", min_size=14, max_size=14),
    ).map("".join),
    "NL": st.tuples(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=4, max_size=4),
        st.text(alphabet="0123456789", min_size=10, max_size=10),
    ).map("".join),
    "FR": st.tuples(
        st.text(alphabet="0123456789", min_size=10, max_size=10),
        st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=11, max_size=11),
        st.text(alphabet="0123456789", min_size=2, max_size=2),
    ).map("".join),
}

random_ibans = st.sampled_from(sorted(_BBAN_SHAPES)).flatmap(
    lambda country: _BBAN_SHAPES[country].map(lambda bban: iban_with_check(country, bban))
)


@given(
    iban=random_ibans,
    form=st.sampled_from(["compact", "print", "lower"]),
    surround=st.sampled_from([("", ""), ("IBAN: ", "."), ("send it to ", " please")]),
)
def test_property_generated_ibans_are_found(iban: str, form: str, surround: tuple[str, str]) -> None:
    shown = {"compact": iban, "print": print_format(iban), "lower": print_format(iban).lower()}[form]
    finding = find_sensitive(surround[0] + shown + surround[1])
    assert finding is not None
    assert finding.kind is IBAN
    assert finding.detail.endswith(f"country {iban[:2]}")


@given(iban=random_ibans, data=st.data())
def test_property_changed_digit_breaks_generated_iban(iban: str, data: st.DataObject) -> None:
    digit_positions = [i for i, ch in enumerate(iban) if ch.isdigit() and i >= 2]
    index = data.draw(st.sampled_from(digit_positions))
    delta = data.draw(st.integers(min_value=1, max_value=9))
    changed = iban[:index] + str((int(iban[index]) + delta) % 10) + iban[index + 1 :]
    assert kind_of(print_format(changed)) is not IBAN


# ---------------------------------------------------------------------------
# Bank account numbers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "routing number 021000021",
        "Routing: 011000015, thanks",
        "ABA 026009593",
        "RTN#122105278",
        "account 12345678",
        "Account no. 12345678",
        "my account number is 00123456789",
        "acct 123456",
        "A/C 40308669",
        "Kontonummer: 1234567890",
        "Konto 532013000",
        "sort code 12-34-56",
        "Sort-code 123456",
        "BSB 062-000",
        "bank details: 1234 5678 90",
        "ACCOUNT 12345678901234567",  # 17 digits, the maximum
    ],
)
def test_bank_account_numbers_found(text: str) -> None:
    assert kind_of(text) is ACCOUNT


def test_routing_number_needs_valid_aba_checksum() -> None:
    assert find_sensitive("routing number 021000022") is None


def test_routing_keyword_within_reach_only() -> None:
    assert kind_of("routing" + " " * 20 + "021000021") is ACCOUNT
    assert find_sensitive("routing" + " " * 21 + "021000021") is None


def test_account_keyword_within_reach_only() -> None:
    assert kind_of("account: please use 12345678") is ACCOUNT
    assert find_sensitive("account was opened last year at branch 12345678") is None


@pytest.mark.parametrize(
    "text",
    [
        "ISBN 978-0-306-40615-7",
        "call 555-0100",
        "barcode 31234000567890",
        "library account is active",
        "library account 12345678",  # the patron's account with the library, not a bank
        "patron account 21234000123456",
        "account 12345",  # too short for any bank account
        "account 123456789012345678",  # too long for a bank account (and not a card)
        "IBAN 12345678",  # names an IBAN, but is not a valid one
        "The Bank of England 1694-1994",
        "account opened 2024-03-01",
        "bank holiday 25-12-2024",
        "Bank of England. ISBN 978-0-306-40615-7",
        "contact the bank, call 555-0100 ext 12",
        "bank +44 20 7946 0958",
        "accountable for 1234567 items",  # "account" only as part of a word
    ],
)
def test_ordinary_library_text_is_accepted(text: str) -> None:
    assert find_sensitive(text) is None


# ---------------------------------------------------------------------------
# Findings never echo the number
# ---------------------------------------------------------------------------

POSITIVE_SAMPLES = [
    "4111 1111 1111 1111",
    "378282246310005",
    "DE89 3704 0044 0532 0130 00",
    "GB82 WEST 1234 5698 7654 32",
    "routing number 021000021",
    "Kontonummer: 1234567890",
    "sort code 12-34-56",
]


@pytest.mark.parametrize("text", POSITIVE_SAMPLES)
def test_detail_never_contains_the_number(text: str) -> None:
    finding = find_sensitive(text)
    assert finding is not None
    # Only short counts such as "16 digits" may appear, never a piece of the number.
    assert all(len(run) <= 2 for run in re.findall(r"\d+", finding.detail))


def test_first_item_in_text_wins() -> None:
    text = "IBAN DE89 3704 0044 0532 0130 00 or card 4111 1111 1111 1111"
    assert kind_of(text) is IBAN
    assert kind_of("card 4111 1111 1111 1111 or IBAN DE89 3704 0044 0532 0130 00") is CARD
    # Same starting point: the specific card rule explains better than "account".
    assert kind_of("account 4111 1111 1111 1111") is CARD


@given(st.text(alphabet=st.characters(blacklist_categories=("Nd",))))
def test_property_text_without_digits_is_never_flagged(text: str) -> None:
    assert find_sensitive(text) is None


@given(
    st.lists(
        st.sampled_from(["account", "IBAN", "DE", "GB", "routing", "bank", "card", "-", " ", "sort code"])
        | st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=5),
        max_size=20,
    ).map(" ".join)
)
def test_property_keywords_without_digits_are_never_flagged(text: str) -> None:
    assert find_sensitive(text) is None


# ---------------------------------------------------------------------------
# check_fields
# ---------------------------------------------------------------------------


def refusal(values: dict[str, object], prefix: str = "") -> SensitiveDataRefused:
    with pytest.raises(SensitiveDataRefused) as caught:
        check_fields(values, prefix)
    return caught.value


def test_clean_payload_passes() -> None:
    check_fields(
        {
            "title": "The Bank of England 1694-1994",
            "isbn": "978-0-306-40615-7",
            "barcode": with_luhn_digit("3123400056789"),
            "phone": "+44 20 7946 0958",
            "copies": 3,
            "active": True,
            "due": dt.date(2024, 3, 1),
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "note": None,
            "tags": ["history", "economics"],
            "address": {"street": "1 Bank Street", "postcode": "EC2R 8AH"},
        }
    )


def test_nested_dict_path() -> None:
    error = refusal({"name": "Ann", "address": {"street": "DE89 3704 0044 0532 0130 00"}})
    assert error.field == "address.street"
    assert error.finding.kind is IBAN


def test_list_items_are_named_by_index() -> None:
    error = refusal({"items": [{"note": "ok"}, {"note": "fine"}, {"note": "card 4111 1111 1111 1111"}]})
    assert error.field == "items.2.note"


def test_tuples_and_nested_lists() -> None:
    error = refusal({"rows": ("a", ["b", "sort code 12-34-56"])})
    assert error.field == "rows.1.1"
    assert error.finding.kind is ACCOUNT


def test_first_offending_field_is_reported() -> None:
    error = refusal({"a": "fine", "b": "4111111111111111", "c": "DE89370400440532013000"})
    assert error.field == "b"


def test_int_values_are_checked() -> None:
    error = refusal({"payment": {"number": 4111111111111111}})
    assert error.field == "payment.number"
    assert error.finding.kind is CARD


def test_other_scalars_are_ignored() -> None:
    check_fields({"flag": True, "ratio": 4111111111111111.0, "when": dt.datetime(2024, 1, 1), "none": None})


def test_prefix_is_prepended() -> None:
    assert refusal({"note": "4111111111111111"}, prefix="body").field == "body.note"


def test_error_message_format_and_no_digits_of_the_number() -> None:
    error = refusal({"notes": "my card is 5555 5555 5555 4444 thanks"})
    finding = SensitiveFinding(CARD, "Luhn-valid, 16 digits, Mastercard prefix")
    assert error.finding == finding
    assert str(error) == (
        'field "notes" looks like a payment card number (Luhn-valid, 16 digits, Mastercard prefix); '
        "payment and bank data are never stored."
    )
    assert "5555" not in str(error) and "4444" not in str(error)
    assert isinstance(error, ValueError)


def test_error_message_for_iban() -> None:
    error = refusal({"iban": "GB82 WEST 1234 5698 7654 32"})
    assert str(error) == (
        'field "iban" looks like a IBAN (valid IBAN checksum, country GB); payment and bank data are never stored.'
    )


def test_exception_can_be_built_directly() -> None:
    finding = SensitiveFinding(ACCOUNT, "8-digit number after 'account'")
    error = SensitiveDataRefused("bank", finding)
    assert (error.field, error.finding) == ("bank", finding)
    assert str(error).startswith('field "bank" looks like a bank account number (')


def test_exception_survives_pickling() -> None:
    error = SensitiveDataRefused("iban", SensitiveFinding(IBAN, "valid IBAN checksum, country DE"))
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - round-tripping our own object
    assert (copy.field, copy.finding, str(copy)) == (error.field, error.finding, str(error))


def test_an_id_is_not_a_card_number_even_when_its_digits_read_as_one():
    # Found by the fuzz test: the digit groups of this UUID join into a Luhn-valid Diners number.
    uuid_text = "30433819-7096-420f-9b9f-ff555504a5dd"
    assert find_sensitive(uuid_text) is None
    assert find_sensitive(f"see request {uuid_text}") is None
    assert find_sensitive(f"card 4111 1111 1111 1111, request {uuid_text}") is not None
