from dataclasses import dataclass

import pytest

from services.search.settings import SearchSettings
from shared.settings import CommonSettings, SettingsError, describe, load, redacted, setting


@dataclass(frozen=True)
class Example:
    count: int = setting("EXAMPLE_COUNT", 3, "How many.")
    ratio: float = setting("EXAMPLE_RATIO", 0.5, "How much.")
    enabled: bool = setting("EXAMPLE_ENABLED", False, "Whether.")
    names: tuple[str, ...] = setting("EXAMPLE_NAMES", ("a",), "Which.")
    token: str = setting("EXAMPLE_TOKEN", "", "A secret.", secret=True)


def test_defaults_apply_when_the_environment_is_empty() -> None:
    assert load(Example, {}) == Example(count=3, ratio=0.5, enabled=False, names=("a",), token="")


def test_values_are_read_as_their_types() -> None:
    settings = load(
        Example,
        {
            "EXAMPLE_COUNT": "7",
            "EXAMPLE_RATIO": "0.25",
            "EXAMPLE_ENABLED": "yes",
            "EXAMPLE_NAMES": "x, y,,z",
        },
    )
    assert settings.count == 7
    assert settings.ratio == 0.25
    assert settings.enabled is True
    assert settings.names == ("x", "y", "z")


@pytest.mark.parametrize(
    ("name", "value"),
    [("EXAMPLE_COUNT", "many"), ("EXAMPLE_RATIO", "half"), ("EXAMPLE_ENABLED", "maybe")],
)
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load(Example, {name: value})


def test_secrets_are_redacted_for_logs() -> None:
    settings = load(Example, {"EXAMPLE_TOKEN": "hunter2"})
    assert redacted(settings)["token"] == "***"
    assert "hunter2" not in repr(redacted(settings))
    assert redacted(load(CommonSettings, {}))["database_url"] == "***"


def test_service_settings_extend_the_common_ones() -> None:
    settings = load(SearchSettings, {"CHORUS_SEARCH_PORT": "9000", "CHORUS_TOPIC_PREFIX": "p."})
    assert settings.port == 9000
    assert settings.topic_prefix == "p."
    assert (
        "CHORUS_SEARCH_PORT",
        "8080",
        "Port of the search service's HTTP server.",
        False,
    ) in describe(SearchSettings)


def test_a_value_outside_the_choices_names_the_variable_and_the_allowed_values() -> None:
    from shared.embedding.settings import EmbeddingSettings

    with pytest.raises(SettingsError) as raised:
        load(EmbeddingSettings, {"CHORUS_EMBEDDING_PROVIDER": "bogus"})
    assert str(raised.value) == "CHORUS_EMBEDDING_PROVIDER='bogus' is not valid: expected one of local, openai, hash"
    assert load(EmbeddingSettings, {"CHORUS_EMBEDDING_PROVIDER": "hash"}).embedding_provider == "hash"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("CHORUS_TOPIC_PARTITIONS", "0", "at least 1"),
        ("CHORUS_TOPIC_RETENTION_HOURS", "inf", "finite"),
        ("CHORUS_LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_bad_common_values_are_refused_at_load(name: str, value: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        load(CommonSettings, {name: value})


def test_a_service_with_a_bad_setting_stops_at_start_with_one_sentence() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "CHORUS_EMBEDDING_PROVIDER": "bogus"}
    done = subprocess.run(
        [sys.executable, "-m", "services.embed"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "chorus: CHORUS_EMBEDDING_PROVIDER='bogus' is not valid: expected one of local, openai, hash"
    )
