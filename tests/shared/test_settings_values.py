"""How each kind of setting reads its text: empty optionals, spellings of true and false, bounds."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared.settings import SettingsError, load, setting


@dataclass(frozen=True)
class Kinds:
    label: str | None = setting("KINDS_LABEL", "default", "An optional text.")
    limit: int | None = setting("KINDS_LIMIT", 5, "An optional number.", minimum=1)
    ratio: float = setting("KINDS_RATIO", 0.5, "A bounded ratio.", minimum=0.0)
    flag: bool = setting("KINDS_FLAG", False, "A switch.")


def test_an_empty_optional_means_none_and_an_absent_one_its_default() -> None:
    assert load(Kinds, {"KINDS_LABEL": "", "KINDS_LIMIT": ""}) == Kinds(label=None, limit=None)
    assert load(Kinds, {}) == Kinds()
    assert load(Kinds, {"KINDS_LIMIT": "9"}).limit == 9


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", True), ("TRUE", True), (" yes ", True), ("on", True), ("0", False), ("False", False), ("no", False),
     ("off", False)],
)  # fmt: skip
def test_switches_read_the_usual_spellings(text: str, value: bool) -> None:
    assert load(Kinds, {"KINDS_FLAG": text}).flag is value


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KINDS_LIMIT": "0"}, "KINDS_LIMIT='0' is not valid: expected a number of at least 1"),
        ({"KINDS_LIMIT": "2.5"}, "KINDS_LIMIT='2.5' is not valid: expected a whole number"),
        ({"KINDS_RATIO": "-0.1"}, "KINDS_RATIO='-0.1' is not valid: expected a number of at least 0"),
        ({"KINDS_RATIO": "nan"}, "KINDS_RATIO='nan' is not valid: expected a finite number"),
        ({"KINDS_FLAG": "2"}, "KINDS_FLAG='2' is not valid: expected true or false"),
    ],
)
def test_a_bad_value_is_one_sentence_naming_the_variable_and_what_it_takes(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load(Kinds, environ)
    assert str(raised.value) == message


def test_variables_of_no_setting_are_ignored() -> None:
    assert load(Kinds, {"KINDS_UNKNOWN": "x", "PATH": "/bin"}) == Kinds()
