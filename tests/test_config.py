"""Configs: presets, ``--set key=value`` parsing and validation (``conjugate.config``)."""

from __future__ import annotations

import dataclasses

import pytest

from conjugate.config import (
    SYNTHETIC_PRESETS,
    ConfigError,
    SyntheticConfig,
    parse_overrides,
    parse_value,
    resolve_synthetic,
)


@pytest.mark.parametrize("preset", sorted(SYNTHETIC_PRESETS))
def test_every_preset_resolves_and_round_trips(preset):
    cfg = resolve_synthetic(preset)
    for key, value in SYNTHETIC_PRESETS[preset].items():
        assert getattr(cfg, key) == value
    assert SyntheticConfig(**cfg.to_dict()) == cfg
    assert cfg.to_dict() == dataclasses.asdict(cfg)


def test_overrides_apply_on_top_of_the_preset():
    cfg = resolve_synthetic("smoke", {"d": 6, "scales": [1.0, 4.0]})
    assert cfg.d == 6 and cfg.scales == [1.0, 4.0]
    assert cfg.pretrain_steps == SYNTHETIC_PRESETS["smoke"]["pretrain_steps"]


def test_parse_overrides_types_lists_and_bools():
    got = parse_overrides(["d=8", "sigma=0.1", "scales=1, 1.5,2", "distance-spreads=0,1", "compile=true",
                           "amp_bf16=0", "pretrain_lr=1e-3"])
    assert got == {"d": 8, "sigma": 0.1, "scales": [1.0, 1.5, 2.0], "distance_spreads": [0.0, 1.0],
                   "compile": True, "amp_bf16": False, "pretrain_lr": 1e-3}
    assert isinstance(got["d"], int) and all(isinstance(v, float) for v in got["scales"])
    assert parse_overrides([]) == {}
    assert parse_overrides(["scales=1,,2,"]) == {"scales": [1.0, 2.0]}  # empty items are dropped


def test_parse_value_direct():
    assert parse_value("x", "3", int) == 3
    assert parse_value("x", "yes", bool) is True and parse_value("x", "off", bool) is False
    assert parse_value("x", "2,3", list[int]) == [2, 3]
    assert parse_value("x", "2.5", float | None) == 2.5


def test_unknown_preset_names_it_and_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown preset 'nope'") as e:
        resolve_synthetic("nope")
    for name in SYNTHETIC_PRESETS:
        assert name in str(e.value)


def test_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(ConfigError, match="unknown --set key 'widht'") as e:
        parse_overrides(["widht=3"])
    assert "width" in str(e.value)


@pytest.mark.parametrize("pair, fragment", [
    ("d=abc", "--set d=abc: expected int"),
    ("d=1.5", "--set d=1.5: expected int"),
    ("sigma=lots", "--set sigma=lots: expected float"),
    ("compile=maybe", "--set compile=maybe: expected bool"),
    ("scales=1,x", "--set scales=x: expected float"),
    ("scales=", "--set scales: empty list"),
    ("d", "--set expects key=value"),
])
def test_wrong_values_name_key_and_type(pair, fragment):
    with pytest.raises(ConfigError) as e:
        parse_overrides([pair])
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("overrides, fragment", [
    ({"sigma": -1.0}, "sigma must be > 0"),
    ({"sigma": 0.0}, "sigma must be > 0"),
    ({"sigma": float("nan")}, "sigma must be finite"),
    ({"sigma": float("inf")}, "sigma must be finite"),
    ({"pretrain_lr": float("inf")}, "pretrain_lr must be finite"),
    ({"scales": [0.0, 1.0]}, "scales must be a non-empty list of values > 0"),
    ({"scales": [1.0, -2.0]}, "scales must be a non-empty list of values > 0"),
    ({"scales": []}, "scales must be a non-empty list"),
    ({"scales": [2.0, 3.0]}, "scales must include 1.0"),
    ({"d": 0}, "d must be >= 1"),
    ({"n_points": 1}, "n_points must be >= 2"),
    ({"alpha_pretrain": 1.5}, "alpha_pretrain must lie in [0, 1]"),
    ({"alpha_finetune": -0.1}, "alpha_finetune must lie in [0, 1]"),
    ({"pretrain_lr": 0.0}, "pretrain_lr must be > 0"),
    ({"finetune_steps": -1}, "finetune_steps must be >= 0"),
    ({"distance_spreads": [-1.0]}, "distance_spreads must be a non-empty list of values >= 0"),
    ({"width": 30, "heads": 4}, "width (30) must be divisible by heads (4)"),
    ({"weight_decay": -1.0}, "weight_decay and grad_clip must be >= 0"),
])
def test_invalid_values_raise_config_error_naming_the_field(overrides, fragment):
    with pytest.raises(ConfigError) as e:
        resolve_synthetic("smoke", overrides)
    assert fragment in str(e.value)


def test_parsed_bad_values_fail_validation():
    """The CLI path: text → parsed → validated."""
    with pytest.raises(ConfigError, match="sigma must be > 0"):
        resolve_synthetic("smoke", parse_overrides(["sigma=-1"]))
    with pytest.raises(ConfigError, match="scales"):
        resolve_synthetic("smoke", parse_overrides(["scales=0,1"]))


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
