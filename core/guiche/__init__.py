"""Guichê: a plugin-based customer-service gateway for WhatsApp and other chat channels.

Public API for plugins lives in :mod:`guiche.plugin` (and later :mod:`guiche.channels`);
everything else is internal and may change.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("guiche")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
