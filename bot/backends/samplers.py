"""SillyTavern sampler presets (textgen and kobold) read into the core :class:`Sampler`.

SillyTavern keeps samplers under its own names (``temp``, ``rep_pen``, ``typical``,
``min_temp`` …). Unknown keys — newer SillyTavern fields, or settings no backend here uses —
are skipped with a debug log, so a preset from any SillyTavern version loads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.config import Sampler
from bot.errors import ConfigError

_log = logging.getLogger(__name__)

# SillyTavern key -> core key. Several spellings map to one core key; the first seen wins.
ST_NAMES: Mapping[str, str] = {
    "temp": "temperature",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "top_a": "top_a",
    "typical_p": "typical_p",
    "typical": "typical_p",
    "tfs": "tfs",
    "rep_pen": "repetition_penalty",
    "repetition_penalty": "repetition_penalty",
    "rep_pen_range": "repetition_penalty_range",
    "repetition_penalty_range": "repetition_penalty_range",
    "rep_pen_slope": "repetition_penalty_slope",
    "presence_pen": "presence_penalty",
    "presence_penalty": "presence_penalty",
    "freq_pen": "frequency_penalty",
    "frequency_penalty": "frequency_penalty",
    "mirostat_mode": "mirostat_mode",
    "mirostat": "mirostat_mode",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
    "dry_multiplier": "dry_multiplier",
    "dry_base": "dry_base",
    "dry_allowed_length": "dry_allowed_length",
    "dry_penalty_last_n": "dry_penalty_last_n",
    "dry_sequence_breakers": "dry_sequence_breakers",
    "xtc_threshold": "xtc_threshold",
    "xtc_probability": "xtc_probability",
    "min_temp": "dynatemp_low",
    "max_temp": "dynatemp_high",
    "dynatemp_exponent": "dynatemp_exponent",
    "smoothing_factor": "smoothing_factor",
    "seed": "seed",
    "sampler_seed": "seed",
    "ban_eos_token": "ban_eos_token",
    "grammar_string": "grammar",
    "grammar": "grammar",
    "json_schema": "json_schema",
    "sampler_order": "sampler_order",
    "banned_strings": "banned_strings",
}


def _breakers(value: Any) -> tuple[str, ...]:
    # SillyTavern stores the DRY breakers as a JSON-ish string: "[\"\\n\", \":\"]"
    if isinstance(value, str):
        value = json.loads(value) if value.strip().startswith("[") else [value]
    return tuple(str(v) for v in value)


_CONVERT: Mapping[str, Callable[[Any], Any]] = {
    "dry_sequence_breakers": _breakers,
    "sampler_order": lambda v: tuple(int(x) for x in v),
    "banned_strings": lambda v: tuple(str(x) for x in v),
}


def sampler_from_st(data: Mapping[str, Any], source: str) -> Sampler:
    """Map a SillyTavern textgen/kobold preset dict to a :class:`Sampler`."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        core = ST_NAMES.get(key)
        if core is None or core in values or value is None or value == "":
            if core is None:
                _log.debug("%s: skipping %r (no backend setting of that name)", source, key)
            continue
        try:
            values[core] = _CONVERT.get(core, lambda v: v)(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {key}: cannot read {value!r} ({exc})") from None
    if values.get("dynatemp_low") is not None and not data.get("dynatemp", True):
        values.pop("dynatemp_low", None)  # dynamic temperature switched off in the preset
        values.pop("dynatemp_high", None)
    if values.get("mirostat_mode") == 0:
        for k in ("mirostat_mode", "mirostat_tau", "mirostat_eta"):
            values.pop(k, None)
    if values.get("seed") == -1:
        values.pop("seed")
    try:
        return Sampler.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


def load_sampler_preset(path: Path) -> Sampler:
    """Read a SillyTavern textgen or kobold preset file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"sampler preset not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a JSON preset ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object of sampler settings")
    return sampler_from_st(raw, str(path))
