"""Guichê: a plugin-based customer-service gateway for WhatsApp and other chat channels.

The public API for plugins is `PUBLIC_MODULES`; everything else is internal and may
change. `tests/test_import_rules.py` holds plugins and examples to it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("guiche")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

#: What a plugin may import from Guichê: the hooks and specs, the channel contract and its
#: types, the shared rate limiter, and the test kit (fakes, the contract suite).
PUBLIC_MODULES: tuple[str, ...] = (
    "guiche.plugin",
    "guiche.channels",
    "guiche.ratelimit",
    "guiche.testing",
    "guiche.contract",
)

__all__ = ["PUBLIC_MODULES", "__version__"]
