"""Placeholder until implemented."""

from __future__ import annotations

from typing import Any

import pluggy


class PluginRegistry:
    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    @classmethod
    def from_manager(cls, pm: pluggy.PluginManager) -> PluginRegistry:
        return cls(pm)

    def permission_grants(self) -> list[Any]:
        return []

    def tables(self) -> list[Any]:
        return []
