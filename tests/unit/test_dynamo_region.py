"""The DynamoDB models' default region is the one botocore resolves, read without a botocore session when the
environment names it (adapters.dynamo.region_default)."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.session import Session

from traderai.adapters import dynamo

CONFIG = "[default]\nregion = eu-west-3\n[profile other]\nregion = ap-south-1\n"


@pytest.mark.parametrize("env", [
    {"AWS_DEFAULT_REGION": "eu-central-1"},
    {"AWS_DEFAULT_REGION": "eu-central-1", "AWS_REGION": "us-west-2"},
    {"AWS_DEFAULT_REGION": ""},  # set but empty: botocore takes it as it is, and so do we
    {"AWS_REGION": "us-west-2"},  # not botocore's variable: the config file decides
    {},
], ids=repr)
@pytest.mark.parametrize("config_file", [True, False], ids=["config file", "no config file"])
def test_the_default_region_is_botocores(env: dict[str, str], config_file: bool, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _the_same_region(env, config_file, tmp_path, monkeypatch)


@pytest.mark.parametrize("env", [{"AWS_PROFILE": "other"}, {"AWS_PROFILE": "other", "AWS_DEFAULT_REGION": "sa-east-1"}],
                         ids=repr)
def test_a_named_profile_gives_botocores_region(env: dict[str, str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _the_same_region(env, True, tmp_path, monkeypatch)


def _the_same_region(env: dict[str, str], config_file: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config"
    if config_file:
        config.write_text(CONFIG)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert dynamo.region_default() == Session().get_config_variable("region")


def test_a_region_in_the_environment_builds_no_botocore_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setattr(dynamo, "get_session", lambda: pytest.fail("a botocore session was built"))

    assert dynamo.region_default() == "eu-central-1"
