"""Champion and challenger: a version replaces the champion only by beating it on the same split."""

from __future__ import annotations

import mlflow
import pytest
from typer.testing import CliRunner

from ser_cli.app import app
from ser_tasks.serve import registry

NAME = "ser-emotion"


@pytest.fixture
def client(mlflow_uri, tmp_path):
    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_registry_uri(mlflow_uri)
    c = mlflow.MlflowClient()
    c.create_registered_model(NAME)
    (tmp_path / "model").mkdir()
    return c


def add_version(client, tmp_path, ua: float, fingerprint: str) -> int:
    """A registered version tagged as the training flow tags it (no model files needed for aliases)."""
    version = int(client.create_model_version(NAME, str(tmp_path / "model")).version)
    for key, value in registry.version_tags({"ua": ua, "wa": ua, "macro_f1": ua}, fingerprint, "extract-abc",
                                            "deadbeef").items():
        client.set_model_version_tag(NAME, str(version), key, value)
    return version


def aliases(client) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(NAME).aliases.items()}


def test_first_version_is_champion_then_only_a_better_one_on_the_same_split_replaces_it(client, tmp_path):
    v1 = add_version(client, tmp_path, 0.50, "split-a")
    first = registry.promote_if_better(NAME, v1, client)
    assert first.alias == "champion" and "first champion" in first.reason
    v2 = add_version(client, tmp_path, 0.45, "split-a")
    worse = registry.promote_if_better(NAME, v2, client)
    assert worse.alias == "challenger" and "does not beat champion v1's 0.5000" in worse.reason
    assert aliases(client) == {"champion": "1", "challenger": "2"}
    v3 = add_version(client, tmp_path, 0.61, "split-a")
    better = registry.promote_if_better(NAME, v3, client)
    assert better.alias == "champion" and "beats champion v1's 0.5000" in better.reason
    assert aliases(client) == {"champion": "3", "challenger": "2"}
    tags = client.get_model_version(NAME, "3").tags
    assert tags["promotion"] == better.reason and tags["test_ua"] == "0.610000"
    assert {"test_wa", "test_macro_f1", "manifest_fingerprint", "store_group", "git_commit"} <= set(tags)


def test_a_higher_ua_on_another_split_does_not_replace_the_champion(client, tmp_path):
    registry.promote_if_better(NAME, add_version(client, tmp_path, 0.50, "split-a"), client)
    other = registry.promote_if_better(NAME, add_version(client, tmp_path, 0.90, "split-b"), client)
    assert other.alias == "challenger" and "another split" in other.reason and "ser promote 2" in other.reason
    assert aliases(client)["champion"] == "1"


def test_ser_promote_moves_the_champion_by_hand(client, tmp_path, mlflow_uri):
    registry.promote_if_better(NAME, add_version(client, tmp_path, 0.50, "split-a"), client)
    registry.promote_if_better(NAME, add_version(client, tmp_path, 0.40, "split-a"), client)
    result = CliRunner().invoke(app, ["promote", "2", "--mlflow-uri", mlflow_uri])
    assert result.exit_code == 0, result.output
    assert "v2 promoted by hand, replacing v1" in result.output
    assert aliases(client) == {"champion": "2"}  # no longer also the challenger
    missing = CliRunner().invoke(app, ["promote", "9", "--mlflow-uri", mlflow_uri])
    assert missing.exit_code == 2 and "no version 9" in missing.output


def test_registrations_that_race_end_with_the_champion_the_rule_picks(client, tmp_path, monkeypatch):
    """v3 read the champion (v1) before v2 replaced it, so v3 sets the alias last though v2 scored higher:
    the settling step gives the alias back to v2 and tells v3 why it is the challenger."""
    v1 = add_version(client, tmp_path, 0.50, "split-a")
    registry.promote_if_better(NAME, v1, client)
    v2, v3 = add_version(client, tmp_path, 0.70, "split-a"), add_version(client, tmp_path, 0.60, "split-a")
    stale = client.get_model_version(NAME, str(v1))
    assert registry.promote_if_better(NAME, v2, client).alias == "champion"
    real = registry.champion
    reads = []

    def first_read_is_stale(name, c=None):
        reads.append(name)
        return stale if len(reads) == 1 else real(name, c)

    monkeypatch.setattr(registry, "champion", first_read_is_stale)
    late = registry.promote_if_better(NAME, v3, client)
    assert late.alias == "challenger" and "does not beat v2's 0.7000" in late.reason and "same time" in late.reason
    assert aliases(client) == {"champion": "2", "challenger": "3"}
    # a hand-made choice is left alone
    monkeypatch.setattr(registry, "champion", real)
    registry.promote(NAME, v1, client)
    registry.promote_if_better(NAME, add_version(client, tmp_path, 0.40, "split-a"), client)
    assert aliases(client)["champion"] == "1"
