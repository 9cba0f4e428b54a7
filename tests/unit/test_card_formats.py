"""Card shapes beyond V1/V2: V3 fields, the character's note, talkativeness, YAML (ooba,
Pygmalion, V2-in-YAML) and Agnai exports — each loads to the fields SillyTavern would use."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.prompt.card import Asset, CardError, DepthPrompt, parse_card


def v3(**data: Any) -> bytes:
    obj = {"spec": "chara_card_v3", "spec_version": "3.0", "data": {"name": "Mira", **data}}
    return json.dumps(obj).encode()


def error(data: bytes, source: str = "x.json") -> str:
    with pytest.raises(CardError) as info:
        parse_card(data, source)
    return info.value.message


# -- V3 -------------------------------------------------------------------------------------------


def test_v3_fields() -> None:
    card = parse_card(
        v3(
            nickname="Miri",
            group_only_greetings=["*waves at everyone*"],
            creation_date=1_700_000_000,
            modification_date=1_700_000_500.0,
            source=["https://example.invalid/mira", 7],
            creator="Sam",
            character_version=1.2,
            creator_notes_multilingual={"en": "hello", "fr": "bonjour"},
            assets=[
                {"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"},
                {
                    "type": "emotion",
                    "uri": "embeded://assets/joy.png",
                    "name": "joy",
                    "ext": "png",
                },
            ],
        ),
        "mira.json",
    )
    assert (card.nickname, card.display_name) == ("Miri", "Miri")
    assert card.group_only_greetings == ("*waves at everyone*",)
    assert (card.creation_date, card.modification_date) == (1_700_000_000, 1_700_000_500)
    assert card.source == ("https://example.invalid/mira",)  # the number is dropped
    assert (card.creator, card.character_version) == ("Sam", "1.2")
    assert card.creator_notes_multilingual == {"en": "hello", "fr": "bonjour"}
    assert card.assets == (
        Asset("icon", "ccdefault:", "main", "png"),
        Asset("emotion", "embeded://assets/joy.png", "joy", "png"),
    )
    assert parse_card(v3(), "m.json").display_name == "Mira"


def test_bad_v3_metadata_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    card = parse_card(
        v3(creation_date="yesterday", assets=[{"uri": 5}, "x"], source="one"), "mira.json"
    )
    assert (card.creation_date, card.assets, card.source) == (None, (), ())
    warnings = [r.getMessage() for r in caplog.records]
    assert "card mira.json: data.creation_date: expected unix seconds, got text; ignored" in (
        warnings
    )
    assert "card mira.json: data.assets[1]: expected an object with a text 'uri'; ignored" in (
        warnings
    )
    assert "card mira.json: data.source: expected a list, got text; ignored" in warnings


def test_group_only_greetings_must_be_text() -> None:
    message = error(v3(group_only_greetings=[1]))
    assert message == "x.json: data.group_only_greetings[0]: expected text, got a number"


# -- the character's note (depth_prompt) ----------------------------------------------------------


def test_depth_prompt_is_exposed() -> None:
    note = {"prompt": "{{char}} hides a key.", "depth": 2, "role": "assistant"}
    card = parse_card(v3(extensions={"depth_prompt": note, "other": [1]}), "m.json")
    assert card.depth_prompt == DepthPrompt("{{char}} hides a key.", 2, "assistant")
    assert card.extensions["depth_prompt"] is not None  # still kept verbatim
    assert parse_card(v3(), "m.json").depth_prompt is None


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        ({"prompt": "p"}, DepthPrompt("p", 4, "system")),  # SillyTavern's defaults
        ({"prompt": "p", "depth": "6", "role": "user"}, DepthPrompt("p", 6, "user")),
        ({"prompt": "p", "depth": 3.0, "role": 2}, DepthPrompt("p", 3, "assistant")),
        ({"prompt": None, "depth": 4, "role": "system"}, DepthPrompt("", 4, "system")),
    ],
)
def test_depth_prompt_forms(note: dict[str, Any], expected: DepthPrompt) -> None:
    assert parse_card(v3(extensions={"depth_prompt": note}), "m.json").depth_prompt == expected


def test_odd_depth_and_role_fall_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    note = {"prompt": "p", "depth": -1, "role": "narrator"}
    card = parse_card(v3(extensions={"depth_prompt": note}), "m.json")
    assert card.depth_prompt == DepthPrompt("p", 4, "system")
    warnings = [r.getMessage() for r in caplog.records]
    assert (
        "card m.json: data.extensions.depth_prompt.depth: expected a whole number ≥ 0; using 4"
        in warnings
    )
    assert (
        "card m.json: data.extensions.depth_prompt.role: 'narrator' is not a role; using system"
        in warnings
    )


def test_depth_prompt_text_is_strict() -> None:
    bad_text = v3(extensions={"depth_prompt": {"prompt": ["x"]}})
    assert (
        error(bad_text) == "x.json: data.extensions.depth_prompt.prompt: expected text, got a list"
    )
    not_object = v3(extensions={"depth_prompt": "x"})
    assert (
        error(not_object) == "x.json: data.extensions.depth_prompt: expected an object, got text"
    )


# -- talkativeness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("0.8", 0.8), (0.25, 0.25), (7, 1.0), ("loud", 0.5), (None, 0.5)]
)
def test_talkativeness(value: Any, expected: float) -> None:
    card = parse_card(v3(extensions={"talkativeness": value}), "m.json")
    assert card.talkativeness == expected


def test_v1_talkativeness_on_top() -> None:
    obj = {"name": "Mira", "description": "d", "talkativeness": "0.9"}
    assert parse_card(json.dumps(obj).encode(), "v1.json").talkativeness == 0.9


# -- YAML and the other shapes --------------------------------------------------------------------

OOBA_YAML = """\
name: Mira
greeting: |-
  *Mira looks up from her book.* Oh! Hello, {{user}}.
context: |-
  Mira is a lighthouse keeper.
  She talks to gulls.
example_dialogue: "{{user}}: Hi\\n{{char}}: Hello"
your_name: Sam
"""


def test_ooba_yaml() -> None:
    card = parse_card(OOBA_YAML.encode(), "Mira.yaml")
    assert card.spec == "ooba"
    assert card.name == "Mira"
    assert card.description == "Mira is a lighthouse keeper.\nShe talks to gulls."
    assert card.first_mes == "*Mira looks up from her book.* Oh! Hello, {{user}}."
    assert card.mes_example == "{{user}}: Hi\n{{char}}: Hello"
    assert card.raw["your_name"] == "Sam"


def test_ooba_bot_key_and_json_form() -> None:
    assert parse_card(b"bot: Mira\ncontext: calm\n", "m.yml").name == "Mira"
    card = parse_card(json.dumps({"name": "Mira", "context": "calm"}).encode(), "m.json")
    assert (card.spec, card.description) == ("ooba", "calm")
    assert error(b"context: no name here\n", "m.yml") == "m.yml: name: missing"


def test_pygmalion_in_yaml_and_json_with_extras() -> None:
    yml = "char_name: Mira\nchar_persona: p\nchar_greeting: g\nworld_scenario: w\n"
    card = parse_card(yml.encode(), "old.yaml")
    assert (card.spec, card.name, card.description, card.first_mes) == (
        "pygmalion",
        "Mira",
        "p",
        "g",
    )
    obj = {"char_name": "Mira", "creatorcomment": "note", "talkativeness": "0.2", "tags": "a, b"}
    card = parse_card(json.dumps(obj).encode(), "old.json")
    assert (card.creator_notes, card.talkativeness, card.tags) == ("note", 0.2, ("a", "b"))


def test_v2_card_written_as_yaml() -> None:
    yml = "spec: chara_card_v2\nspec_version: '2.0'\ndata:\n  name: Mira\n  tags: [x]\n"
    card = parse_card(yml.encode(), "m.yaml")
    assert (card.spec, card.name, card.tags) == ("chara_card_v2", "Mira", ("x",))


AGNAI_ATTRIBUTES = {"species": ["human"], "mind": ["calm", "kind"]}


@pytest.mark.parametrize(
    ("kind", "attributes", "expected"),
    [
        ("text", {"text": ["Mira keeps the lighthouse."]}, "Mira keeps the lighthouse."),
        (
            "wpp",
            AGNAI_ATTRIBUTES,
            '[character("Mira") {\nspecies("human")\nmind("calm" + "kind")\n}]',
        ),
        ("sbf", AGNAI_ATTRIBUTES, '[ character: "Mira"; species: "human"; mind: "calm", "kind" ]'),
        ("boostyle", AGNAI_ATTRIBUTES, "Mira + human + calm + kind"),
        ("attributes", AGNAI_ATTRIBUTES, "species: human\nmind: calm, kind"),
    ],
)
def test_agnai_persona_formats(kind: str, attributes: dict[str, Any], expected: str) -> None:
    obj = {
        "kind": "character",
        "name": "Mira",
        "persona": {"kind": kind, "attributes": attributes},
        "greeting": "Hello!",
        "scenario": "A storm.",
        "sampleChat": "{{user}}: Hi",
        "description": "A calm character.",
        "alternateGreetings": ["Hi again."],
        "systemPrompt": "Be Mira.",
        "characterVersion": "2",
    }
    card = parse_card(json.dumps(obj).encode(), "agnai.json")
    assert card.spec == "agnai"
    assert card.description == expected
    assert (card.first_mes, card.scenario, card.mes_example) == (
        "Hello!",
        "A storm.",
        "{{user}}: Hi",
    )
    assert (card.creator_notes, card.system_prompt) == ("A calm character.", "Be Mira.")
    assert (card.alternate_greetings, card.character_version) == (("Hi again.",), "2")


def test_agnai_errors_name_the_field() -> None:
    bad_kind = {"name": "M", "persona": {"kind": "xml", "attributes": {}}}
    assert error(json.dumps(bad_kind).encode()) == (
        "x.json: persona.kind: 'xml' is not a persona format Agnai writes"
    )
    bad_values = {"name": "M", "persona": {"kind": "wpp", "attributes": {"mind": "calm"}}}
    assert error(json.dumps(bad_values).encode()) == (
        "x.json: persona.attributes.mind: expected a list of text"
    )


# -- YAML failures --------------------------------------------------------------------------------


def test_invalid_yaml_names_line_and_column() -> None:
    message = error(b"name: Mira\ncontext: [unclosed\n", "m.yaml")
    assert message.startswith("m.yaml: not valid JSON or YAML (")
    assert "line 3 column 1" in message


def test_yaml_aliases_are_refused() -> None:
    bomb = b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\nname: Mira\n"
    assert error(bomb, "m.yaml") == (
        "m.yaml: not valid JSON or YAML (aliases are not allowed at line 2 column 8)"
    )


def test_yaml_that_is_not_a_mapping_and_unsafe_tags() -> None:
    assert error(b"- a\n- b\n", "m.yaml") == "m.yaml: expected a YAML object, got a list"
    assert error(b"plain words", "m.txt") == "m.txt: expected a YAML object, got text"
    unsafe = b"name: !!python/object/apply:os.system ['true']\n"
    assert error(unsafe, "m.yaml").startswith("m.yaml: not valid JSON or YAML (")


def test_yaml_over_the_limit() -> None:
    big = b"name: Mira\ncontext: " + b"x" * (1024 * 1024) + b"\n"
    assert error(big, "m.yaml") == "m.yaml: a YAML card over 1 MiB is not supported"


def test_yaml_values_of_the_wrong_type_name_the_field() -> None:
    assert error(b"name: Mira\ngreeting: 2024-01-01\n", "m.yaml") == (
        "m.yaml: greeting: expected text, got a date value"
    )


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(st.text(max_size=300) | st.from_regex(r"(\w+: [^\n]{0,20}\n){1,6}", fullmatch=True))
def test_arbitrary_text_raises_only_card_error(text: str) -> None:
    try:
        card = parse_card(text.encode(), "fuzz")
    except CardError as exc:
        assert exc.message.startswith("fuzz")
    else:
        assert card.name.strip()
