"""A company's locale for plugins: the region its local phone numbers are read in and its
time zone (campaign send windows, daily caps), from its settings and the deployment's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guiche.tenancy.settings import load_tenant_settings

if TYPE_CHECKING:
    from guiche.runtime.services import Services


@dataclass(frozen=True)
class CompanyLocale:
    region: str  # ISO 3166 region, e.g. "BR"
    timezone: str  # IANA name, e.g. "America/Sao_Paulo"


async def company_locale(services: Services, tenant_id: uuid.UUID) -> CompanyLocale:
    """The company's `default_region` (else `GUICHE_DEFAULT_REGION`) and `timezone`."""
    settings = await load_tenant_settings(tenant_id)
    return CompanyLocale(
        settings.default_region or services.settings.default_region, settings.timezone
    )
