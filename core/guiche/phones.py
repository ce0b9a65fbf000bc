"""Phone numbers in one canonical form (E.164), so one customer is one contact per company.

People type numbers as they dial them locally ("(31) 98888-7777"); providers send them
with the country code and no "+". Both must land on the same `+5531988887777`.
"""

from __future__ import annotations

import uuid

import phonenumbers

from guiche.config import Settings
from guiche.tenant_settings import load_tenant_settings


class InvalidPhone(ValueError):
    """The text is not a valid phone number for the region (message says why)."""


def normalize_phone(raw: str, region: str) -> str:
    """`raw` as E.164, read as a local number of `region` unless it carries a country code.

    A number without "+" that is not valid locally is retried as international, because
    providers and spreadsheets often drop the "+" ("14155552671").
    """
    text = raw.strip()
    if not text:
        raise InvalidPhone("phone number is empty")
    number = _parse(text, region)
    if number is None and not text.startswith("+"):
        digits = phone_digits(text)
        if len(digits) >= 8:
            number = _parse("+" + digits, region)
    if number is None:
        raise InvalidPhone(f"not a valid phone number for region {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


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
