"""Phone numbers in one canonical form (E.164), so one customer is one contact per company.

People type numbers as they dial them locally ("(31) 98888-7777"); providers send them
with the country code and no "+". Both must land on the same `+5531988887777`. The one
owner of the rules for both doors: `normalize_phone` for what people type (the API, the
CSV import), `whatsapp_phone` for what providers send, and the Brazilian ninth-digit
rule they share (`restore_brazil_ninth_digit`).
"""

from __future__ import annotations

import functools
import re
import uuid
from typing import TYPE_CHECKING

import phonenumbers

from guiche.contacts.locale import company_locale

if TYPE_CHECKING:
    from guiche.runtime.services import Services


class InvalidPhone(ValueError):
    """The text is not a valid phone number for the region (message says why)."""


META_TEST_NUMBER = re.compile(r"1555\d{7}")
"""Digits of Meta's WhatsApp test numbers (+1 555 and seven digits): no real numbering
plan has them, but channels use them before going live."""


def restore_brazil_ninth_digit(digits: str) -> str:
    """Brazil's mobiles gained a ninth digit (a leading 9) by 2016; spreadsheets and older
    WhatsApp accounts still carry the 8-digit form (`55 31 8888-7777`). That is the same
    line as `+55 31 98888-7777`: given international digits (`55` + area + number), add
    the 9 to an 8-digit mobile (first digit 6-9); landlines (2-5) keep eight digits."""
    if digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        return digits[:4] + "9" + digits[4:]
    return digits


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
        digits = restore_brazil_ninth_digit(digits)
        used = _region_of("+" + digits)
        if used is None:
            raise InvalidPhone(f"not a valid phone number: no country has the code of {text!r}")
        number = _parse("+" + digits, used)
    else:
        used = region
        number = _parse(text, region)
        if number is None and region == "BR":  # "(31) 8888-7777": an old-form mobile
            national = digits.lstrip("0")  # the trunk prefix of "031 ..."
            number = _parse("+" + restore_brazil_ninth_digit("55" + national), region)
        if number is None and len(digits) >= 8:  # a country code without its "+"
            if meta_test_numbers and META_TEST_NUMBER.fullmatch(digits):
                return "+" + digits
            number = _parse("+" + restore_brazil_ninth_digit(digits), region)
    if number is None:
        raise InvalidPhone(f"not a valid phone number for region {used}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def whatsapp_phone(raw: str | None) -> str | None:
    """A provider's phone/wa_id as E.164, or None when it is not plausibly one.

    WhatsApp ids are digits with the country code and no "+" (Evolution/Baileys add
    `@s.whatsapp.net` and a `:device`). Brazilian mobiles may come without the ninth
    digit (`restore_brazil_ninth_digit`).

    The phone library's ranges lag the world (new ranges, Meta's `+1 555` test numbers),
    and a wa_id is WhatsApp's own account number, so digits the library calls invalid
    are still kept as the phone when plausibly E.164: 8 to 15 digits behind a country
    code that exists. Anything else is no phone (the sender keeps it as a user id).
    """
    if not raw:
        return None
    digits = phone_digits(raw.split("@", 1)[0].split(":", 1)[0])
    if len(digits) < 8:
        return None
    digits = restore_brazil_ninth_digit(digits)
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return "+" + digits if len(digits) <= 15 else None  # the country code exists
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


cached_whatsapp_phone = functools.lru_cache(maxsize=65_536)(whatsapp_phone)
"""Phone parsing costs tens of microseconds; customers write again and again."""


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


async def tenant_region(tenant_id: uuid.UUID, services: Services) -> str:
    """The region used to read this company's local numbers: its own setting, else the
    deployment's `GUICHE_DEFAULT_REGION` (cached per process: read on every send)."""
    return (await company_locale(services, tenant_id)).region
