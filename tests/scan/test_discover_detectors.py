"""The value detectors and masks of `troth discover`, on values chosen to sit at their edges."""

from __future__ import annotations

import pytest

from troth.scan.detectors import DETECTORS, iban_valid, is_name_column, luhn_valid, mask
from troth.scan.discover import classify_column


def matches(kind: str, value: str) -> bool:
    return next(d for d in DETECTORS if d.kind == kind).matches(value)


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("email", "ada.lovelace+news@mail.example.org", True),
        ("email", "not an e-mail @ all", False),
        ("email", "user@localhost", False),
        ("phone", "+49 30 1234567", True),
        ("phone", "0049 30 1234567", True),
        ("phone", "030/1234567", True),
        ("phone", "555-123-4567", True),
        ("phone", "40012345", False),  # a bare number
        ("phone", "2026-03-31", False),  # a date
        ("phone", "12345.67", False),  # a price
        ("phone", "+4930123456", True),  # all digits after a '+'
        ("phone", "(030) 1234567", True),
        ("phone", "00001000", False),  # an id kept as text
        ("phone", "0049301234567", False),  # all digits without a '+'
        ("phone", "03/15/2024", False),  # a US date
        ("phone", "01-14-2024", False),
        ("phone", "15.03.2024", False),
        ("phone", "2024/03/15", False),
        ("phone", "0001-2345-6789", False),  # '00' but no country code before a separator
        ("phone", "00 1234 5678", False),
        ("ip", "198.51.100.7", True),
        ("ip", "2001:db8::1", True),
        ("ip", "1.2", False),
        ("ip", "0.0.0.0", False),
        ("ip", "127.0.0.1", False),  # loopback: nobody's address
        ("ip", "::1", False),
        ("ip", "1.2.0.2", False),  # a version string
        ("ip", "10.4.3.1", True),
        ("card", "4111 1111 1111 1111", True),
        ("card", "4111111111111112", False),  # fails Luhn
        ("card", "0000000000000000", False),  # no card starts with 0
        ("card", "79927398713", False),  # Luhn-valid but too short for a card
        ("iban", "DE89 3704 0044 0532 0130 00", True),
        ("iban", "DE88 3704 0044 0532 0130 00", False),  # wrong check digits
        ("iban", "GB82WEST12345698765432", True),
    ],
)
def test_detectors(kind: str, value: str, expected: bool) -> None:
    assert matches(kind, value) is expected


def test_checksums() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB82WEST12345698765433")


def test_names_only_where_the_column_says_so() -> None:
    assert is_name_column("anything", "last_name")
    assert is_name_column("customers", "name")
    assert not is_name_column("products", "name")
    names = ["Ada Lovelace", "Grace Hopper", "Alan Turing"]
    assert classify_column("products", "name", names) is None
    found = classify_column("customers", "name", names)
    assert found is not None
    assert found[0].kind == "name"


def test_integer_ids_are_never_personal_data() -> None:
    ids = [str(n) for n in range(1, 200)] + [str(4_000_000_000_000_000 + n) for n in range(50)]
    assert classify_column("people", "id", ids, numeric=True) is None
    assert classify_column("people", "id", ids) is None


def test_a_minority_of_hits_is_not_enough() -> None:
    values = ["ada@mail.example"] + ["n/a"] * 3
    assert classify_column("t", "c", values) is None
    found = classify_column("t", "c", ["ada@mail.example", "bob@mail.example", "n/a"])
    assert found is not None
    assert (found[1], found[3]) == (2, 3)


@pytest.mark.parametrize(
    ("kind", "value", "masked"),
    [
        ("email", "ada.lovelace@mail.example.org", "a***@m***.org"),
        ("phone", "+49 30 1234567", "+49 ** *****67"),
        ("ip", "198.51.100.7", "198.*.*.*"),
        ("ip", "2001:db8::1", "2001:****:…"),
        ("card", "4111 1111 1111 1111", "************1111"),
        ("iban", "DE89 3704 0044 0532 0130 00", "DE******************00"),
        ("name", "Ada Lovelace", "A*** L***"),
        ("free_text", "Called about the invoice", "[24 characters]"),
    ],
)
def test_masks(kind: str, value: str, masked: str) -> None:
    assert mask(kind, value) == masked


def test_version_columns_are_not_ip_addresses() -> None:
    versions = ["10.4.3.1", "10.4.12.0", "11.0.0.3"]
    assert classify_column("devices", "firmware_version", versions) is None
    assert classify_column("devices", "build", versions) is None
    found = classify_column("devices", "last_ip", versions)
    assert found is not None
    assert found[0].kind == "ip"
