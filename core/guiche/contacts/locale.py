"""A company's locale for plugins: the region its local phone numbers are read in and its
time zone (campaign send windows, daily caps), from its settings and the deployment's.

The settings are read on every send to a phone number (its region), so they are served
from the process's cache (`guiche.runtime.cache`); `company_settings_changed` drops them
here and in every other process after a change commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guiche.runtime.cache import TENANT_SETTINGS, invalidate, runtime_cache
from guiche.tenancy.settings import TenantSettings, load_tenant_settings

if TYPE_CHECKING:
    from guiche.runtime.services import Services


@dataclass(frozen=True)
class CompanyLocale:
    region: str  # ISO 3166 region, e.g. "BR"
    timezone: str  # IANA name, e.g. "America/Sao_Paulo"


async def company_settings(services: Services, tenant_id: uuid.UUID) -> TenantSettings:
    """The company's settings (defaults filled in), cached; treat the result as read-only."""
    cache = runtime_cache(services)
    found: TenantSettings | None = cache.get(TENANT_SETTINGS, tenant_id)
    if found is None:
        generation = cache.generation
        found = await load_tenant_settings(tenant_id)
        cache.put(TENANT_SETTINGS, tenant_id, found, generation)
    return found


async def company_settings_changed(services: Services, tenant_id: uuid.UUID) -> None:
    """After a company's settings commit: every process reads them again."""
    await invalidate(services, TENANT_SETTINGS, tenant_id)


async def company_locale(services: Services, tenant_id: uuid.UUID) -> CompanyLocale:
    """The company's `default_region` (else `GUICHE_DEFAULT_REGION`) and `timezone`."""
    settings = await company_settings(services, tenant_id)
    return CompanyLocale(
        settings.default_region or services.settings.default_region, settings.timezone
    )
