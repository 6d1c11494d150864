"""Settings: TOML file, EWARN_* overrides, errors naming the key; workspace init."""

from __future__ import annotations

import pytest

from ewarn.config import Workspace, init_workspace, load_settings, secret
from ewarn.errors import ConfigError, WorkspaceError


def test_defaults_without_file(tmp_path):
    s = load_settings(tmp_path / "absent.toml", environ={})
    assert s.alerts.gateway == "file"
    assert s.routing.mode == "motorbike"


def test_file_values_and_env_override(tmp_path):
    p = tmp_path / "ewarn.toml"
    p.write_text('[alerts]\ngateway = "console"\nmin_level = 2\n[routing]\nmode = "walk"\n')
    s = load_settings(p, environ={"EWARN_ALERTS__MIN_LEVEL": "3", "EWARN_ROUTING__MODE": "car"})
    assert s.alerts.gateway == "console"
    assert s.alerts.min_level == 3  # env wins, coerced to int
    assert s.routing.mode == "car"


def test_wrong_type_names_key_and_type(tmp_path):
    p = tmp_path / "ewarn.toml"
    p.write_text('[alerts]\nmin_level = "high"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(p, environ={})
    msg = str(e.value)
    assert str(p) in msg
    assert "alerts.min_level" in msg
    assert "integer" in msg


def test_unknown_key_is_refused_with_spelling_hint(tmp_path):
    p = tmp_path / "ewarn.toml"
    p.write_text('[alerts]\ngatway = "file"\n')
    with pytest.raises(ConfigError, match=r"alerts\.gatway.*not a known setting"):
        load_settings(p, environ={})


def test_bad_env_value_is_attributed_to_environment(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_settings(None, environ={"EWARN_ROUTING__MODE": "helicopter"})
    assert "environment variable EWARN_ROUTING__MODE" in str(e.value)
    assert "'walk', 'motorbike' or 'car'" in str(e.value)


def test_not_toml(tmp_path):
    p = tmp_path / "ewarn.toml"
    p.write_text("[alerts\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(p, environ={})


def test_secret_only_from_environment():
    assert secret("TWILIO_AUTH_TOKEN", environ={"TWILIO_AUTH_TOKEN": "abc"}) == "abc"
    assert secret("TWILIO_AUTH_TOKEN", required=False, environ={}) is None
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN is not set"):
        secret("TWILIO_AUTH_TOKEN", environ={})


def test_init_workspace_is_idempotent_and_keeps_settings(tmp_path):
    root = tmp_path / "ws"
    ws = init_workspace(root)
    for name in ("forecasts", "assessments", "plans", "reports"):
        assert (root / name).is_dir()
    assert (root / "ewarn.db").exists()
    (root / "ewarn.toml").write_text('[alerts]\ngateway = "console"\n')
    ws2 = init_workspace(root)
    assert ws2.settings.alerts.gateway == "console"
    assert ws.database_url == ws2.database_url


def test_open_uninitialised_workspace_says_how(tmp_path):
    with pytest.raises(WorkspaceError, match="ewarn init"):
        Workspace.open(tmp_path / "nothing")


def test_workspace_from_environment(tmp_path, monkeypatch):
    root = tmp_path / "from-env"
    init_workspace(root)
    monkeypatch.setenv("EWARN_WORKSPACE", str(root))
    assert Workspace.open(None).root == root.resolve()
