"""Roles and named permissions. Routes declare a permission; roles grant sets of them.

Plugins add permissions (with the roles that get them by default) through the
`guiche_permissions` hook; the registry below merges them at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ROLES: tuple[str, ...] = ("owner", "admin", "supervisor", "agent", "viewer")

_ALL = set(ROLES)
_STAFF = {"owner", "admin", "supervisor", "agent"}
_LEADS = {"owner", "admin", "supervisor"}
_ADMINS = {"owner", "admin"}

#: Granted only through `users.is_platform_admin` (set by the CLI), never by a role.
PLATFORM_PERMISSIONS: frozenset[str] = frozenset({"platform.tenants.manage"})

CORE_PERMISSIONS: dict[str, set[str]] = {
    "tenant.settings.read": _ALL,
    "tenant.settings.manage": {"owner"},
    "users.read": _LEADS,
    "users.manage": _ADMINS,
    "departments.read": _ALL,
    "departments.manage": _ADMINS,
    "contacts.read": _ALL,
    "contacts.manage": _STAFF,
    "contacts.import": _LEADS,
    "channels.read": _LEADS,
    "channels.manage": _ADMINS,
    "tabulations.read": _ALL,
    "tabulations.manage": _ADMINS,
    "templates.read": _ALL,
    "templates.manage": _LEADS,
    "notes.read": _ALL,
    "notes.write": _STAFF,
    "plugins.read": _ADMINS,
    "plugins.manage": _ADMINS,
    "api_keys.manage": _ADMINS,
    "audit.read": _ADMINS,
    "provider_usage.read": _ADMINS,
    # conversations: what a role may see is scoped further by guiche.auth.visibility
    "conversations.read": _ALL,
    "conversations.read_departments": _LEADS,
    "conversations.read_all": {"owner", "admin", "viewer"},
    "conversations.accept": _STAFF,
    "conversations.assign": _LEADS,
    "conversations.transfer": _STAFF,
    "conversations.close": _STAFF,
    "conversations.reopen": _STAFF,
    "conversations.start": _STAFF,
    "messages.send": _STAFF,
    "media.upload": _STAFF,
    "events.read": _ALL,
}


@dataclass(frozen=True)
class PermissionGrant:
    """A permission and the roles that get it by default (what a plugin declares)."""

    name: str
    roles: tuple[str, ...]
    description: str = ""


class PermissionRegistry:
    """Which role holds which permission: core's table plus every plugin's grants."""

    def __init__(self, grants: Iterable[PermissionGrant] = ()) -> None:
        self._roles: dict[str, set[str]] = {name: set(r) for name, r in CORE_PERMISSIONS.items()}
        self._by_role: dict[str, frozenset[str]] = {}
        for grant in grants:
            self.add(grant)

    def add(self, grant: PermissionGrant) -> None:
        unknown = set(grant.roles) - set(ROLES)
        if unknown:
            raise ValueError(f"permission {grant.name!r} names unknown roles {sorted(unknown)}")
        if grant.name in self._roles or grant.name in PLATFORM_PERMISSIONS:
            raise ValueError(f"duplicate permission {grant.name!r}")
        self._roles[grant.name] = set(grant.roles)
        self._by_role.clear()

    def known(self, permission: str) -> bool:
        return permission in self._roles or permission in PLATFORM_PERMISSIONS

    def for_role(self, role: str) -> frozenset[str]:
        """The role's permissions: one shared frozenset per role, not one per principal
        (every request and every open socket holds its principal's set)."""
        permissions = self._by_role.get(role)
        if permissions is None:
            permissions = frozenset(name for name, roles in self._roles.items() if role in roles)
            self._by_role[role] = permissions
        return permissions

    def roles_for(self, permission: str) -> frozenset[str]:
        return frozenset(self._roles.get(permission, ()))

    def names(self) -> list[str]:
        return sorted(self._roles)
