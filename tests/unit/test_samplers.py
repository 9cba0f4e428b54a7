"""SillyTavern sampler presets load into the core sampler settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.backends.samplers import load_sampler_preset, sampler_from_st
from bot.config import load_config
from bot.errors import ConfigError

# The shape of SillyTavern's textgen presets (default/content/presets/textgen/*.json)
TEXTGEN = {
    "temp": 0.7,
    "temperature_last": True,
    "top_p": 0.9,
    "top_k": 20,
    "top_a": 0,
    "tfs": 1,
    "epsilon_cutoff": 0,
    "typical_p": 1,
    "min_p": 0.05,
    "rep_pen": 1.15,
    "rep_pen_range": 0,
    "freq_pen": 0,
    "presence_pen": 0,
    "dynatemp": False,
    "min_temp": 0.5,
    "max_temp": 1.5,
    "dry_multiplier": 0.8,
    "dry_sequence_breakers": '["\\n", ":", "\\"", "*"]',
    "mirostat_mode": 0,
    "mirostat_tau": 5,
    "seed": -1,
    "sampler_priority": ["temperature", "min_p"],
    "banned_tokens": "",
    "some_future_setting": {"x": 1},
}
# The shape of SillyTavern's kobold presets (default/content/presets/kobold/*.json)
KOBOLD = {
    "temp": 1.1,
    "rep_pen": 1.07,
    "rep_pen_range": 2048,
    "top_p": 0.9,
    "top_a": 0.02,
    "top_k": 0,
    "typical": 1,
    "tfs": 0.95,
    "rep_pen_slope": 0.2,
    "sampler_order": [6, 0, 1, 3, 4, 2, 5],
    "genamt": 200,
    "max_length": 2048,
}


def test_textgen_preset_maps_to_core_names() -> None:
    s = sampler_from_st(TEXTGEN, "Default.json")
    assert s.temperature == 0.7 and s.top_p == 0.9 and s.top_k == 20 and s.min_p == 0.05
    assert s.repetition_penalty == 1.15 and s.dry_multiplier == 0.8
    assert s.dry_sequence_breakers == ("\n", ":", '"', "*")
    # switched off in the preset: not sent at all
    assert s.dynatemp_low is None and s.mirostat_mode is None and s.mirostat_tau is None
    assert s.seed is None  # -1 means random


def test_kobold_preset_maps_to_core_names() -> None:
    s = sampler_from_st(KOBOLD, "Godlike.json")
    assert s.temperature == 1.1 and s.typical_p == 1 and s.tfs == 0.95
    assert s.repetition_penalty_range == 2048 and s.repetition_penalty_slope == 0.2
    assert s.sampler_order == (6, 0, 1, 3, 4, 2, 5)


def test_config_loads_a_preset_and_explicit_values_win(tmp_path: Path) -> None:
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "kobold.json").write_text(json.dumps(KOBOLD))
    (tmp_path / "config.yaml").write_text(
        "backends:\n  k:\n    provider: koboldcpp\n    sampler_preset: presets/kobold.json\n"
        "    sampler:\n      temperature: 0.5\n"
    )
    config = load_config(tmp_path / "config.yaml")
    sampler = config.backends["k"].sampler
    assert sampler.temperature == 0.5 and sampler.top_a == 0.02


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON preset"),
        ("[1, 2]", "expected a JSON object"),
        ('{"temp": -3}', "temperature"),
        ('{"sampler_order": ["a"]}', "sampler_order"),
    ],
)
def test_bad_presets_name_the_file_and_setting(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_sampler_preset(path)
    assert "bad.json" in str(err.value) and message in str(err.value)


def test_missing_preset_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_sampler_preset(tmp_path / "nope.json")
