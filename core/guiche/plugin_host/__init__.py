"""Plugin system: manager construction, event runner, per-tenant enablement, route gating."""
