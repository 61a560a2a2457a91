"""Settings: defaults < TOML file < environment < overrides, read at call time."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings, get_settings
from core.errors import ConfigError


def test_defaults_follow_ned_policy():
    settings = get_settings()
    assert settings == Settings()
    assert settings.request_interval == 1.0
    assert settings.data_dir == Path("data")
    assert settings.ned_base_url.startswith("https://") and settings.ned_base_url.endswith("/")
    assert settings.image_origin == settings.ned_base_url.rstrip("/")


def test_toml_then_environment_then_overrides(tmp_path, monkeypatch):
    config = tmp_path / "gm.toml"
    config.write_text('ned_base_url = "http://127.0.0.1:9/"\nrequest_interval = 0.25\nimage_size = 32\n')
    monkeypatch.setenv("GALAXY_MORPH_CONFIG", str(config))
    assert get_settings().request_interval == 0.25
    monkeypatch.setenv("GALAXY_MORPH_REQUEST_INTERVAL", "0.5")
    settings = get_settings(image_size=48)
    assert (settings.ned_base_url, settings.request_interval, settings.image_size) == ("http://127.0.0.1:9/", 0.5, 48)
    assert settings.image_origin == "http://127.0.0.1:9"


def test_settings_are_read_when_called_not_at_import(monkeypatch):
    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", "/tmp/elsewhere")
    assert get_settings().data_dir == Path("/tmp/elsewhere")
    monkeypatch.delenv("GALAXY_MORPH_DATA_DIR")
    assert get_settings().data_dir == Path("data")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("request_interval = 'soon'\n", "request_interval must be float"),
        ("colour = 'red'\n", "unknown setting 'colour'"),
        ("request_interval = -1\n", "must be >= 0"),
        ("not toml at all [\n", "not valid TOML"),
    ],
)
def test_bad_settings_name_the_setting_and_the_fix(tmp_path, monkeypatch, text, message):
    config = tmp_path / "gm.toml"
    config.write_text(text)
    monkeypatch.setenv("GALAXY_MORPH_CONFIG", str(config))
    with pytest.raises(ConfigError, match=message):
        get_settings()


def test_missing_explicit_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        get_settings(config_file=tmp_path / "absent.toml")


def test_workers_zero_means_one_per_core():
    assert get_settings(workers=0).n_workers >= 1
    assert get_settings(workers=3).n_workers == 3
