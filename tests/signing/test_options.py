"""The PAdES level names and the signature options: defaults, parsing, and what is refused."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.signing.options import PadesLevel, SigningOptions


@pytest.mark.parametrize(
    ("value", "tsa", "expected"),
    [
        (None, False, PadesLevel.B_B),
        (None, True, PadesLevel.B_T),
        ("b-lta", True, PadesLevel.B_LTA),
        ("B_LT", True, PadesLevel.B_LT),
        ("B-B", True, PadesLevel.B_B),
    ],
)
def test_level_parse(value, tsa: bool, expected: PadesLevel) -> None:
    assert PadesLevel.parse(value, has_timestamper=tsa) is expected


def test_unknown_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="B-B, B-T, B-LT or B-LTA"):
        PadesLevel.parse("B-XL", has_timestamper=True)


@pytest.mark.parametrize(
    "kwargs",
    [{"bytes_reserved": 1000}, {"bytes_reserved": 16385}, {"md_algorithm": "md55"}, {"field_name": "a.b"}],
)
def test_invalid_options_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SigningOptions(**kwargs)


def test_levels_are_their_names_as_strings() -> None:
    """Level values reach notes, sidecars and logs as ``B-T`` etc., also through ``str``/f-strings."""
    assert [str(level) for level in PadesLevel] == ["B-B", "B-T", "B-LT", "B-LTA"]
    assert f"{PadesLevel.B_LTA}" == "B-LTA" and PadesLevel.B_LT == "B-LT"
    assert [level.needs_timestamper for level in PadesLevel] == [False, True, True, True]
    assert [level.needs_validation_data for level in PadesLevel] == [False, False, True, True]
