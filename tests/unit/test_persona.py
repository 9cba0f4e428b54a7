"""Personas: storage round trip, SillyTavern positions, lookup order, settings import."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import ConfigError
from bot.prompt.persona import (
    DEFAULT_KEY,
    Persona,
    PersonaError,
    PersonaPosition,
    persona_key,
    personas_from_st,
    resolve_persona,
)


def test_round_trip_through_a_dict() -> None:
    persona = Persona(
        "Sam",
        "A tired courier.",
        avatar="https://cdn.invalid/sam.png",
        position=PersonaPosition.AT_DEPTH,
        depth=3,
        role="user",
        lorebook="Sam's past",
    )
    d = persona.to_dict()
    assert d == {
        "name": "Sam",
        "description": "A tired courier.",
        "avatar": "https://cdn.invalid/sam.png",
        "position": 4,
        "depth": 3,
        "role": "user",
        "lorebook": "Sam's past",
    }
    assert Persona.from_dict(d) == persona


def test_defaults_match_sillytavern() -> None:
    persona = Persona.from_dict({"name": "Sam"})
    assert (persona.position, persona.depth, persona.role) == (
        PersonaPosition.IN_PROMPT,
        2,
        "system",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, PersonaPosition.IN_PROMPT),
        (1, PersonaPosition.IN_PROMPT),  # the deprecated AFTER_CHAR
        (2, PersonaPosition.TOP_AN),
        (3, PersonaPosition.BOTTOM_AN),
        ("4", PersonaPosition.AT_DEPTH),
        ("at_depth", PersonaPosition.AT_DEPTH),
        (9, PersonaPosition.NONE),
    ],
)
def test_positions(value: Any, expected: PersonaPosition) -> None:
    assert Persona.from_dict({"name": "Sam", "position": value}).position is expected


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"description": "x"}, "p.json: name: missing"),
        ({"name": 5}, "p.json: name: expected text"),
        ({"name": "Sam", "position": 5}, "p.json: position: 5 is not one of 0 (in prompt)"),
        ({"name": "Sam", "depth": -1}, "p.json: depth: expected a whole number from 0 to 10000"),
        ({"name": "Sam", "role": "narrator"}, "p.json: role: expected system, user or assistant"),
        ({"name": "Sam", "role": True}, "p.json: role: expected system, user or assistant"),
    ],
)
def test_bad_fields_name_the_field(d: dict[str, Any], message: str) -> None:
    with pytest.raises(PersonaError) as info:
        Persona.from_dict(d, "p.json")
    assert info.value.message.startswith(message)
    assert isinstance(info.value, ConfigError)


def test_resolution_order() -> None:
    default, user, server = Persona("Traveller"), Persona("Sam"), Persona("Sam the Bard")
    stored = {
        DEFAULT_KEY: default,
        persona_key("42"): user,
        persona_key("42", "guild7"): server,
    }
    assert resolve_persona("42", "guild7", stored) is server
    assert resolve_persona("42", "guild8", stored) is user
    assert resolve_persona("42", "", stored) is user
    assert resolve_persona("43", "guild7", stored) is default
    assert resolve_persona("43", "guild7", {persona_key("42"): user}) is None
    # a persona for another user in this server is never picked
    assert resolve_persona("43", "guild7", {persona_key("42", "guild7"): server}) is None


def test_keys() -> None:
    assert (persona_key(), persona_key("42"), persona_key("42", "g")) == ("*", "u:42", "u:42:s:g")


def test_import_from_sillytavern_settings() -> None:
    power_user = {
        "personas": {"user-default.png": "Alex", "bard.png": "Lute"},
        "persona_descriptions": {
            "bard.png": {"description": "Sings.", "position": 4, "depth": 1, "role": 2}
        },
        "persona_description": "A wanderer.",
        "persona_description_position": 0,
        "default_persona": "bard.png",
    }
    personas, default = personas_from_st(power_user, "settings.json")
    assert default == "bard.png"
    assert personas["bard.png"] == Persona(
        "Lute", "Sings.", "bard.png", PersonaPosition.AT_DEPTH, 1, "assistant"
    )
    assert personas["user-default.png"] == Persona("Alex", "A wanderer.", "user-default.png")
    assert personas_from_st({}, "s.json") == ({}, "")
    with pytest.raises(PersonaError, match=r"^s\.json: personas\.a\.png: role"):
        personas_from_st(
            {"personas": {"a.png": "A"}, "persona_descriptions": {"a.png": {"role": 7}}}, "s.json"
        )


_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats()
_VALUES = (
    _SCALARS | st.lists(_SCALARS, max_size=2) | st.dictionaries(st.text(max_size=3), _SCALARS)
)


@settings(max_examples=200, deadline=timedelta(seconds=1))
@given(st.dictionaries(st.sampled_from(["name", "position", "depth", "role", "avatar"]), _VALUES))
def test_arbitrary_dicts_raise_only_persona_error(d: dict[str, Any]) -> None:
    try:
        persona = Persona.from_dict(d)
    except PersonaError:
        return
    assert Persona.from_dict(persona.to_dict()) == persona
