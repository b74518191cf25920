"""Recognise personal data in sampled column values, and mask what is shown of it.

Each detector answers for one value; a column is classified when enough of its sampled
values agree (see :mod:`troth.scan.discover`). The rules are strict on purpose, so that ids,
counters, prices, dates and reference numbers are not taken for personal data: a phone number
needs a ``+``, or separators after a trunk ``0`` or a country code, and is never a date; a
card number 13-19 digits and the Luhn check; an IBAN its country code and the ISO 7064 mod-97
check; a name is only looked for in columns whose name says it holds one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DETECTORS",
    "Detector",
    "iban_valid",
    "is_name_column",
    "luhn_valid",
    "mask",
]

_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}$")
_PHONE_CHARS = re.compile(r"^\+?[0-9 ()./-]+$")
_NANP = re.compile(r"^[2-9][0-9]{2}[-. ][0-9]{3}[-. ][0-9]{4}$")
# 0049 30 1234567: a country code (1-3 digits, not starting with 0), then a separator
_INTERNATIONAL = re.compile(r"^00[1-9][0-9]{0,2}[ ./-]")
# 030 1234567, 030/1234567: a trunk 0, an area code not starting with 0, separators
_NATIONAL = re.compile(r"^0[1-9][0-9]*[ /-][0-9 /-]*[0-9]$")
# 03/15/2024, 01-14-2024, 15.03.2024, 2024-03-15, 2024/3/1
_DATE = re.compile(
    r"^([0-9]{1,2}[./-][0-9]{1,2}[./-][0-9]{2,4}|[0-9]{4}[./-][0-9]{1,2}[./-][0-9]{1,2})$"
)
_VERSION_COLUMN = re.compile(r"(?i)(^|_)(version|ver|build|release|firmware|revision)(_|$)")
_CARD_CHARS = re.compile(r"^[0-9][0-9 -]*[0-9]$")
_IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
_NAME_WORD = re.compile(r"^[^\W\d_]+(?:[-'’.][^\W\d_]*)*$")

_NAME_COLUMNS = frozenset((
    "first_name", "firstname", "last_name", "lastname", "surname", "given_name", "givenname",
    "family_name", "familyname", "full_name", "fullname", "middle_name", "maiden_name",
    "display_name", "contact_name", "customer_name", "person_name", "holder_name",
    "cardholder_name", "account_holder", "recipient_name", "sender_name", "billing_name",
    "shipping_name",
))  # fmt: skip
_PERSON_TABLES = frozenset((
    "user", "users", "customer", "customers", "person", "persons", "people", "contact",
    "contacts", "member", "members", "employee", "employees", "account", "accounts",
    "subscriber", "subscribers", "patient", "patients", "student", "students", "prospect",
    "prospects", "lead", "leads", "client", "clients", "guest", "guests",
))  # fmt: skip
_TEXT_COLUMNS = frozenset((
    "note", "notes", "comment", "comments", "message", "messages", "body", "remark", "remarks",
    "feedback", "bio", "memo", "text", "content", "details", "free_text", "freetext",
    "description",
))  # fmt: skip


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _email(value: str) -> bool:
    return len(value) <= 254 and bool(_EMAIL.match(value))


def _phone(value: str) -> bool:
    if not _PHONE_CHARS.match(value):
        return False
    digits = re.sub(r"\D", "", value)
    if not 7 <= len(digits) <= 15:
        return False
    # International (+49 ..., 0049 30 ...), with an area code in brackets, national with a
    # trunk 0 and separators (030 1234567), or North American (555-123-4567). A bare run of
    # digits is a phone number only after a '+' (else it is an id or a counter kept as
    # text: '00001000'); dates and decimal numbers are not phone numbers.
    if value.startswith("+"):
        return True
    if value.isdigit() or _DATE.match(value):
        return False
    if value.startswith("00"):
        return bool(_INTERNATIONAL.match(value))
    if value.startswith("("):
        return True
    if _NATIONAL.match(value):
        return True
    return bool(_NANP.match(value))


def _ip(value: str) -> bool:
    if not any(ch in value for ch in ".:") or len(value) > 45:
        return False
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    # "1.2" is no address; ip_address rejects it. The unspecified and loopback addresses are
    # nobody's, and four small numbers (1.2.0.2) are a version, not where someone was.
    if address.is_unspecified or address.is_loopback:
        return False
    return not (address.version == 4 and all(len(part) == 1 for part in value.split(".")))


def _ip_column(table: str, column: str) -> bool:
    _ = table
    return not _VERSION_COLUMN.search(column)


def _card(value: str) -> bool:
    if not _CARD_CHARS.match(value):
        return False
    digits = value.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def _iban(value: str) -> bool:
    compact = value.replace(" ", "").upper()
    return bool(_IBAN.match(compact)) and iban_valid(compact)


def _name(value: str) -> bool:
    words = value.split()
    return 1 <= len(words) <= 5 and len(value) <= 80 and all(_NAME_WORD.match(w) for w in words)


def _free_text(value: str) -> bool:
    return len(value) >= 30 and len(value.split()) >= 5


def is_name_column(table: str, column: str) -> bool:
    column = column.lower()
    return column in _NAME_COLUMNS or (column == "name" and table.lower() in _PERSON_TABLES)


def _text_column(table: str, column: str) -> bool:
    _ = table
    return column.lower() in _TEXT_COLUMNS


def _any_column(table: str, column: str) -> bool:
    _ = (table, column)
    return True


@dataclass(frozen=True)
class Detector:
    """One kind of personal data: how to recognise a value, and in which columns to look."""

    kind: str
    label: str
    personal_data: str | None  # the DPV term a policy's data category would map to
    matches: Callable[[str], bool]
    applies: Callable[[str, str], bool]  # (table, column) -> look here at all
    numeric: bool = False  # also look at integer columns
    severity: str = "violation"


DETECTORS: tuple[Detector, ...] = (
    Detector("email", "e-mail addresses", "pd:EmailAddress", _email, _any_column),
    Detector(
        "card",
        "payment card numbers (Luhn)",
        "pd:PaymentCardNumber",
        _card,
        _any_column,
        numeric=True,
    ),
    Detector("iban", "IBANs (mod-97)", "pd:BankAccount", _iban, _any_column),
    Detector("ip", "IP addresses", "pd:IPAddress", _ip, _ip_column),
    Detector("phone", "phone numbers", "pd:TelephoneNumber", _phone, _any_column),
    Detector("name", "names of people", "pd:Name", _name, is_name_column),
    Detector(
        "free_text",
        "free text (may hold anything)",
        None,
        _free_text,
        _text_column,
        severity="warning",
    ),
)


def mask(kind: str, value: str) -> str:
    """What a report may show of ``value``: never the whole of it."""
    if kind == "email":
        local, _, domain = value.partition("@")
        host, _, tld = domain.rpartition(".")
        return f"{local[:1]}***@{host[:1]}***.{tld}"
    if kind == "ip":
        if ":" in value:
            return value.split(":")[0] + ":****:…"
        return value.split(".")[0] + ".*.*.*"
    if kind == "card":
        digits = re.sub(r"\D", "", value)
        return "*" * (len(digits) - 4) + digits[-4:]
    if kind == "iban":
        compact = value.replace(" ", "").upper()
        return compact[:2] + "*" * (len(compact) - 4) + compact[-2:]
    if kind == "phone":
        digits_seen = sum(ch.isdigit() for ch in value)
        out, n = [], 0
        for ch in value:
            if ch.isdigit():
                n += 1
                out.append(ch if n <= 2 or n > digits_seen - 2 else "*")
            else:
                out.append(ch)
        return "".join(out)
    if kind == "name":
        return " ".join(w[:1] + "***" for w in value.split())
    return f"[{len(value)} characters]"
