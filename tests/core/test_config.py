"""Settings come from the environment; every bad value is one line naming its variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices

from guiche.foundation.config import ConfigError, Settings, env_names, load_settings

ROOT = Path(__file__).resolve().parents[2]


ENV_NAMES = env_names(Settings)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Guichê variable from the machine running the tests leaks into these."""
    for field, info in Settings.model_fields.items():
        monkeypatch.delenv(f"GUICHE_{field.upper()}", raising=False)
        if isinstance(info.validation_alias, AliasChoices):
            for name in info.validation_alias.choices:
                monkeypatch.delenv(str(name), raising=False)
    return monkeypatch


BAD_VALUES = {
    "GUICHE_PORT": "eighty",
    "REDIS_URL": "http://127.0.0.1:6379",
    "DATABASE_URL": "mysql://root@localhost/guiche",
    "GUICHE_LOG_LEVEL": "LOUD",
    "GUICHE_ACCESS_TOKEN_TTL_SECONDS": "5",
    "GUICHE_LOG_JSON": "maybe",
    "GUICHE_DEFAULT_REGION": "BRA",
    "GUICHE_PUBLIC_URL": "chat.example.com",
}


@pytest.mark.parametrize("variable", sorted(BAD_VALUES))
def test_each_bad_value_is_one_line_naming_the_variable(
    clean_env: pytest.MonkeyPatch, variable: str
) -> None:
    clean_env.setenv(variable, BAD_VALUES[variable])
    with pytest.raises(ConfigError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{variable}: ")


def test_all_bad_values_are_reported_together(clean_env: pytest.MonkeyPatch) -> None:
    for variable, value in BAD_VALUES.items():
        clean_env.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert sorted(line.split(":", 1)[0] for line in lines) == sorted(BAD_VALUES)


def test_lists_come_from_comma_separated_values(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("GUICHE_CORS_ORIGINS", " https://a.example ,https://b.example,, ")
    clean_env.setenv("GUICHE_PLUGINS_BLOCKED", "evolution")
    clean_env.setenv("GUICHE_ENCRYPTION_KEYS", "new-key,old-key")
    settings = load_settings()
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.plugins_blocked == ["evolution"]
    assert settings.encryption_keys == ["new-key", "old-key"]


def test_defaults_and_blank_urls(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "  ")
    clean_env.setenv("GUICHE_LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.log_level == "DEBUG"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.data_dir == Path(".guiche")
    assert settings.task_queue == "guiche:tasks"
    assert settings.log_json is None  # unset: chosen by whether stderr is a terminal
    clean_env.setenv("GUICHE_LOG_JSON", " ")
    assert load_settings().log_json is None
    clean_env.setenv("GUICHE_LOG_JSON", "true")
    assert load_settings().log_json is True


def plugin_env_names() -> list[str]:
    """The operator settings every installed plugin declares (`PluginInfo.operator_settings`)."""
    from guiche.plugin_host.manager import build_plugin_manager

    names = []
    for info in build_plugin_manager(blocked=[]).hook.guiche_plugin_info():
        if info.operator_settings is not None:
            names.extend(env_names(info.operator_settings))
    return names


def test_public_url_defaults_to_where_guiche_listens(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings().base_url == "http://127.0.0.1:8080"
    clean_env.setenv("GUICHE_PUBLIC_URL", "https://chat.example.com/guiche/")
    assert load_settings().base_url == "https://chat.example.com/guiche"


def test_env_example_lists_every_setting_once() -> None:
    """Core's Settings and every installed plugin's operator settings appear in .env.example
    under their environment names, each once, and nothing else does."""
    text = (ROOT / ".env.example").read_text()
    found = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE)
    expected = ENV_NAMES + plugin_env_names()
    assert {"GUICHE_PUBLIC_URL", "GUICHE_META_APP_SECRET"} <= set(expected)
    missing = [name for name in expected if name not in found]
    assert not missing, f".env.example lacks {missing}"
    unknown = sorted(set(found) - set(expected))
    assert not unknown, f".env.example names variables nothing reads: {unknown}"
    repeated = sorted({name for name in found if found.count(name) > 1})
    assert not repeated, f".env.example lists these more than once: {repeated}"


def test_docker_compose_wires_the_scale_out_mode() -> None:
    """docker-compose.yml parses and runs migrate once, then 2×web, a worker, one scheduler."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["db"]["image"].startswith("timescale/timescaledb")
    assert services["redis"]["image"].startswith("redis:7")
    commands = {name: spec.get("command") for name, spec in services.items()}
    assert commands["migrate"] == ["migrate"]
    assert [name for name, command in commands.items() if command == ["web"]] == ["web1", "web2"]
    assert [name for name, command in commands.items() if command == ["scheduler"]] == ["scheduler"]
    assert commands["worker"] == ["worker"]
    for name in ("web1", "web2", "worker", "scheduler"):
        spec = services[name]
        assert spec["env_file"] == ".env"
        assert spec["environment"]["DATABASE_URL"].startswith("postgresql://")
        assert spec["environment"]["REDIS_URL"].startswith("redis://")
        assert spec["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (ROOT / "Dockerfile").exists()
