"""A decoded card object (from JSON, YAML, a PNG chunk or a CHARX ``card.json``) to a
:class:`Character`, for every shape SillyTavern imports:

- V2/V3: ``{spec, spec_version, data: {...}}`` (``data.*`` wins over the V1 copy on top);
- V1: the flat fields at the top level;
- Pygmalion/Gradio: ``char_name``, ``char_persona``, ``char_greeting``, ``world_scenario``,
  ``example_dialogue``;
- ooba (text-generation-webui) YAML: ``name``/``bot``, ``context``, ``greeting``;
- Agnai: ``name``, ``persona: {kind, attributes}``, ``greeting``, ``scenario``, ``sampleChat``.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.prompt.cards import fields as f
from bot.prompt.cards.fields import Fields, json_type
from bot.prompt.cards.model import V2_SPECS, CardError, Character

log = logging.getLogger(__name__)

_V1_TEXT_KEYS = ("description", "personality", "first_mes", "mes_example", "scenario")


def to_character(obj: Any, source: str, *, kind: str = "JSON") -> Character:
    """The character in ``obj``; ``kind`` names the container in the "expected" error."""
    if not isinstance(obj, dict):
        raise CardError(f"{source}: expected a {kind} object, got {json_type(obj)}")
    spec = obj.get("spec")
    if spec is not None:
        if spec not in V2_SPECS:
            raise CardError(
                f"{source}: spec: {repr(spec)[:60]} is not a character card "
                "(expected chara_card_v2 or chara_card_v3)"
            )
        data = obj.get("data")
        if not isinstance(data, dict):
            raise CardError(f"{source}: data: expected an object, got {json_type(data)}")
        return _from_fields(Fields(data, obj, source, "data."), str(spec), obj)
    if "char_name" in obj and "name" not in obj:
        return _pygmalion(obj, source)
    persona = obj.get("persona")
    if isinstance(persona, dict) and "attributes" in persona:
        return _agnai(obj, source)
    if not any(k in obj for k in _V1_TEXT_KEYS) and any(
        k in obj for k in ("context", "greeting", "bot")
    ):
        return _ooba(obj, source)
    return _from_fields(Fields(obj, {}, source, ""), "chara_card_v1", obj)


def _from_fields(fields: Fields, spec: str, raw: dict[str, Any]) -> Character:
    book = fields.get("character_book")
    if book is not None and not isinstance(book, dict):
        raise CardError(f"{fields.path('character_book')}: expected an object")
    extensions = fields.mapping("extensions")
    problems: list[str] = []

    def loose(parse: Any, key: str, value: Any) -> Any:
        parsed, found = parse(value, fields.path(key))
        problems.extend(found)
        return parsed

    depth_prompt, found = f.parse_depth_prompt(
        extensions.get("depth_prompt"), fields.path("extensions") + ".depth_prompt"
    )
    problems.extend(found)
    # SillyTavern keeps talkativeness in extensions; V1 files have it on top
    talk_key = "extensions.talkativeness" if "talkativeness" in extensions else "talkativeness"
    talk_value = extensions.get("talkativeness", raw.get("talkativeness"))
    character = Character(
        name=fields.name(),
        description=fields.text("description"),
        personality=fields.text("personality"),
        scenario=fields.text("scenario"),
        first_mes=fields.text("first_mes"),
        mes_example=fields.text("mes_example"),
        system_prompt=fields.text("system_prompt"),
        post_history_instructions=fields.text("post_history_instructions"),
        alternate_greetings=fields.text_list("alternate_greetings"),
        creator_notes=fields.text("creator_notes") or fields.text("creatorcomment"),
        tags=fields.tags(),
        nickname=fields.text("nickname"),
        character_book=book,
        extensions=extensions,
        spec=spec,
        raw=raw,
        creator=fields.loose_text("creator"),
        character_version=fields.loose_text("character_version"),
        group_only_greetings=fields.text_list("group_only_greetings"),
        creator_notes_multilingual=loose(
            f.parse_multilingual,
            "creator_notes_multilingual",
            fields.get("creator_notes_multilingual"),
        ),
        source=loose(f.parse_text_items, "source", fields.get("source")),
        creation_date=loose(f.parse_date, "creation_date", fields.get("creation_date")),
        modification_date=loose(
            f.parse_date, "modification_date", fields.get("modification_date")
        ),
        assets=loose(f.parse_assets, "assets", fields.get("assets")),
        depth_prompt=depth_prompt,
        talkativeness=loose(f.parse_talkativeness, talk_key, talk_value),
    )
    for problem in problems:
        log.warning("card %s", problem)
    return character


def _pygmalion(obj: dict[str, Any], source: str) -> Character:
    """The old Pygmalion/Gradio export, which SillyTavern still imports."""
    fields = Fields(obj, {}, source, "")
    talk, problems = f.parse_talkativeness(obj.get("talkativeness"), f"{source}: talkativeness")
    for problem in problems:
        log.warning("card %s", problem)
    return Character(
        name=fields.name("char_name"),
        description=fields.text("char_persona"),
        scenario=fields.text("world_scenario"),
        first_mes=fields.text("char_greeting"),
        mes_example=fields.text("example_dialogue"),
        creator_notes=fields.text("creatorcomment") or fields.text("creator_notes"),
        tags=fields.tags(),
        creator=fields.loose_text("creator"),
        talkativeness=talk,
        spec="pygmalion",
        raw=obj,
    )


def _ooba(obj: dict[str, Any], source: str) -> Character:
    """text-generation-webui's character YAML (SillyTavern's YAML import reads the same keys:
    ``context`` is the description, ``greeting`` the first message)."""
    fields = Fields(obj, {}, source, "")
    return Character(
        name=fields.name("bot" if "bot" in obj and "name" not in obj else "name"),
        description=fields.text("context"),
        first_mes=fields.text("greeting"),
        mes_example=fields.text("example_dialogue"),
        spec="ooba",
        raw=obj,
    )


def _agnai(obj: dict[str, Any], source: str) -> Character:
    """Agnai's own character export; its persona is rendered to text the way Agnai renders it
    when it exports a Tavern card (W++, SBF, Boostyle or plain text)."""
    fields = Fields(obj, {}, source, "")
    name = fields.name()
    book = obj.get("characterBook")
    if book is not None:
        log.warning("card %s: characterBook (Agnai memory book) is not imported", source)
    return Character(
        name=name,
        description=_agnai_persona(obj["persona"], name, f"{source}: persona"),
        scenario=fields.text("scenario"),
        first_mes=fields.text("greeting"),
        mes_example=fields.text("sampleChat"),
        creator_notes=fields.text("description"),
        system_prompt=fields.text("systemPrompt"),
        post_history_instructions=fields.text("postHistoryInstructions"),
        alternate_greetings=fields.text_list("alternateGreetings"),
        tags=fields.tags(),
        creator=fields.loose_text("creator"),
        character_version=fields.loose_text("characterVersion"),
        extensions=fields.mapping("extensions"),
        spec="agnai",
        raw=obj,
    )


def _agnai_persona(persona: dict[str, Any], name: str, where: str) -> str:
    attributes = persona.get("attributes")
    if not isinstance(attributes, dict):
        raise CardError(f"{where}.attributes: expected an object, got {json_type(attributes)}")
    values: dict[str, list[str]] = {}
    for key, items in attributes.items():
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise CardError(f"{where}.attributes.{key}: expected a list of text")
        values[str(key)] = items
    kind = persona.get("kind", "text")
    if kind == "text":
        return values.get("text", [""])[0] if values.get("text") else ""
    if kind == "wpp":
        lines = [f"{k}({' + '.join(_quote(v) for v in vs)})" for k, vs in values.items()]
        return "\n".join([f'[character("{name}") {{', *lines, "}]"])
    if kind == "sbf":
        parts = [f"{k}: {', '.join(_quote(v) for v in vs)}" for k, vs in values.items()]
        return f'[ character: "{name}"; {"; ".join(parts)} ]'
    if kind == "boostyle":
        return " + ".join([name, *(v for vs in values.values() for v in vs)])
    if kind == "attributes":  # newer Agnai: one "key: values" line per attribute
        return "\n".join(f"{k}: {', '.join(vs)}" for k, vs in values.items())
    raise CardError(f"{where}.kind: {str(kind)[:30]!r} is not a persona format Agnai writes")


def _quote(text: str) -> str:
    return f'"{text}"'
