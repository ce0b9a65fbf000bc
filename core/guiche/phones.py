"""Phone numbers in one canonical form (E.164), so one customer is one contact per company.

People type numbers as they dial them locally ("(31) 98888-7777"); providers send them
with the country code and no "+". Both must land on the same `+5531988887777`.
"""

from __future__ import annotations

import re
import uuid

import phonenumbers

from guiche.config import Settings
from guiche.tenant_settings import load_tenant_settings


class InvalidPhone(ValueError):
    """The text is not a valid phone number for the region (message says why)."""


META_TEST_NUMBER = re.compile(r"1555\d{7}")
"""Digits of Meta's WhatsApp test numbers (+1 555 and seven digits): no real numbering
plan has them, but channels use them before going live."""


def normalize_phone(raw: str, region: str, *, meta_test_numbers: bool = False) -> str:
    """`raw` as E.164, read as a local number of `region` unless it carries a country code.

    A number written with "+" is validated in the region its country code names, and an
    error names that region. A number without "+" that is not valid locally is retried as
    international, because providers and spreadsheets often drop the "+" ("14155552671").
    `meta_test_numbers` (channels) also accepts Meta's test numbers.
    """
    text = raw.strip()
    if not text:
        raise InvalidPhone("phone number is empty")
    digits = phone_digits(text)
    if text.startswith("+"):
        if meta_test_numbers and META_TEST_NUMBER.fullmatch(digits):
            return "+" + digits
        used = _region_of("+" + digits)
        if used is None:
            raise InvalidPhone(f"not a valid phone number: no country has the code of {text!r}")
        number = _parse("+" + digits, used)
    else:
        used = region
        number = _parse(text, region)
        if number is None and len(digits) >= 8:  # a country code without its "+"
            if meta_test_numbers and META_TEST_NUMBER.fullmatch(digits):
                return "+" + digits
            number = _parse("+" + digits, region)
    if number is None:
        raise InvalidPhone(f"not a valid phone number for region {used}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _region_of(international: str) -> str | None:
    """The region a "+CC..." number's country code names (None: no country has it)."""
    try:
        number = phonenumbers.parse(international, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number) or (
        phonenumbers.region_code_for_country_code(number.country_code)
    )
    return None if region in (None, "ZZ", "001") else region


def _parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def phone_digits(text: str) -> str:
    """Only the digits: what a phone search matches against the stored E.164 number."""
    return "".join(ch for ch in text if ch.isdigit())


async def tenant_region(tenant_id: uuid.UUID, settings: Settings) -> str:
    """The region used to read this company's local numbers: its own setting, else the
    deployment's `GUICHE_DEFAULT_REGION`."""
    return (await load_tenant_settings(tenant_id)).default_region or settings.default_region
