"""The channel config: a tenant-supplied server URL is only accepted when Guichê may call it,
and the webhook secret / instance token are generated and kept."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from guiche_evolution.config import EvolutionConfig
from guiche_evolution.netpolicy import TargetNotAllowed, check_target
from pydantic import ValidationError

BASE = {"api_key": "k" * 20, "instance_name": "loja-centro"}


def config(url: str) -> EvolutionConfig:
    return EvolutionConfig.model_validate({**BASE, "server_url": url})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://api.localhost",
        "https://10.1.2.3",
        "http://192.168.0.10",
        "http://172.16.5.4",
        "http://169.254.169.254/latest/meta-data",
        "http://metadata.google.internal",
        "http://100.100.100.200",
        "http://[::1]:8080",
        "http://[fd00:ec2::254]",
        "http://[::ffff:127.0.0.1]",
        "http://0.0.0.0",
        "ftp://evo.example.com",
        "file:///etc/passwd",
        "evo.example.com",
        "https://user:pass@evo.example.com",
        "https://evo.example.com:99999",
    ],
)
def test_internal_or_non_http_server_urls_are_refused(url, no_private):
    with pytest.raises(ValidationError) as info:
        config(url)
    assert info.value.errors()[0]["loc"] == ("server_url",)


def test_public_urls_are_accepted_and_normalised(no_private):
    assert config("https://evo.example.com/").server_url == "https://evo.example.com"
    assert config(" http://8.8.8.8:8080 ").server_url == "http://8.8.8.8:8080"


def test_the_operator_setting_allows_private_targets(allow_private):
    assert config("http://127.0.0.1:8080").server_url == "http://127.0.0.1:8080"
    with pytest.raises(ValidationError):  # the scheme rule stays
        config("ftp://127.0.0.1")


def test_secrets_are_generated_unique_and_kept_on_revalidation(no_private):
    first, second = config("https://evo.example.com"), config("https://evo.example.com")
    secret = first.webhook_secret.get_secret_value()
    assert len(secret) >= 40
    assert secret != second.webhook_secret.get_secret_value()
    assert first.instance_token.get_secret_value() != second.instance_token.get_secret_value()
    stored = {
        **first.model_dump(),
        "api_key": "k" * 20,
        "webhook_secret": secret,
        "instance_token": first.instance_token.get_secret_value(),
    }
    again = EvolutionConfig.model_validate(stored)
    assert again.webhook_secret.get_secret_value() == secret
    assert (again.reject_groups, again.always_online, again.read_receipts) == (True, False, False)


def test_short_secrets_and_bad_instance_names_are_refused(no_private):
    with pytest.raises(ValidationError):
        EvolutionConfig.model_validate(
            {**BASE, "server_url": "https://e.example.com", "webhook_secret": "short"}
        )
    with pytest.raises(ValidationError):
        EvolutionConfig.model_validate(
            {**BASE, "server_url": "https://e.example.com", "instance_name": "../admin"}
        )


def test_webhook_base_prefers_the_channel_then_guiche_s_public_url(no_private):
    assert config("https://e.example.com").webhook_base("") == "http://127.0.0.1:8080"
    guiche = "https://guiche.example.com"
    assert config("https://e.example.com").webhook_base(guiche) == guiche
    own = EvolutionConfig.model_validate(
        {**BASE, "server_url": "https://e.example.com", "public_base_url": "http://guiche:8080/"}
    )
    assert own.webhook_base(guiche) == "http://guiche:8080"


async def test_names_are_resolved_before_calling(public_dns):
    public_dns["evo.internal.example"] = ["10.0.0.5"]
    public_dns["evo.mixed.example"] = ["8.8.8.8", "127.0.0.1"]
    public_dns["evo.v6.example"] = ["fe80::1%eth0"]
    public_dns["nowhere.example"] = []
    await check_target("https://evo.example.com")
    for host in ("evo.internal.example", "evo.mixed.example", "evo.v6.example", "nowhere.example"):
        with pytest.raises(TargetNotAllowed):
            await check_target(f"https://{host}")


async def test_a_name_that_does_not_resolve_is_refused(no_private, monkeypatch):
    from guiche_evolution import netpolicy

    def fail(host: str) -> list[str]:
        raise OSError("Name or service not known")

    monkeypatch.setattr(netpolicy, "resolve", fail)
    with pytest.raises(TargetNotAllowed, match="cannot resolve"):
        await check_target("https://evo.example.com")


async def test_this_machines_own_name_is_resolved_for_real_and_refused(no_private):
    host = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        pytest.skip("this machine's name does not resolve here")
    if any(ipaddress.ip_address(a.split("%")[0]).is_global for a in addresses):
        pytest.skip("this machine's name resolves to a public address")
    with pytest.raises(TargetNotAllowed):
        await check_target(f"http://{host}:8080")
