"""The README's verification snippet, run as written against a real delivery."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from guiche_webhooks.delivery import deliver_due

from tests.plugins.webhooks.conftest import Receiver, Setup

README = Path(__file__).resolve().parents[3] / "plugins" / "webhooks" / "README.md"


def snippet() -> Any:
    text = README.read_text()
    found = re.search(r"<!-- verify-snippet -->\n```python\n(.*?)```", text, flags=re.DOTALL)
    assert found, "the README lost its verification snippet"
    scope: dict[str, Any] = {}
    exec(compile(found.group(1), str(README), "exec"), scope)
    return scope["verify_guiche_signature"]


async def test_the_documented_snippet_verifies_real_deliveries(
    setup: Setup, receiver: Receiver
) -> None:
    verify = snippet()
    sub = await setup.subscribe(receiver.url)
    await setup.publish(2)
    await deliver_due(setup.services, tenants={setup.company.tenant_id})
    assert receiver.received
    for item in receiver.received:
        header = item.headers["X-Guiche-Signature"]
        assert verify(sub["secret"], header, item.body)
        assert not verify(sub["secret"], header, item.body.replace(b"}", b" }", 1))
        assert not verify("whsec_other", header, item.body)
        stale = re.sub(r"t=\d+", "t=1000", header)
        assert not verify(sub["secret"], stale, item.body)


def test_the_readme_shows_the_subscription_call() -> None:
    text = README.read_text()
    assert "POST \"$GUICHE/api/v1/plugins/webhooks/subscriptions\"" in text
