"""Routing tests run against the same app as the conversations tests: the fake channel
plugin installed, channels of that type, signed webhooks."""

from tests.core.conversations.conftest import (  # noqa: F401 (fixtures)
    client,
    fake_plugin,
    make_channel,
    post_webhook,
)
