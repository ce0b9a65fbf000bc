"""Piccolo apps contributed by installed plugins, for `guiche migrate`."""

from __future__ import annotations


def plugin_piccolo_apps() -> list[str]:
    """Module paths of installed plugins' Piccolo apps (via the `guiche_piccolo_app` hook)."""
    from guiche.plugin_host.manager import build_plugin_manager

    pm = build_plugin_manager(blocked=_blocked_from_env())
    apps: list[str] = []
    for result in pm.hook.guiche_piccolo_app():
        if result:
            apps.append(result)
    return apps


def _blocked_from_env() -> list[str]:
    import os

    raw = os.environ.get("GUICHE_PLUGINS_BLOCKED", "")
    return [part.strip() for part in raw.split(",") if part.strip()]
