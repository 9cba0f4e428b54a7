"""Writing cards: the V3 object, JSON, and PNG with both chunks as SillyTavern writes them.

A card read from a V2/V3 file is written from its ``raw`` object, so fields and extensions we
do not model survive; the modelled fields are laid over it. Fields read best effort (assets,
dates, the character's note …) are written back only when they differ from what the stored
value reads as, so an odd but harmless stored value is not rewritten.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from bot.prompt.cards import fields as f
from bot.prompt.cards.model import MAX_TEXT_CHUNK, V2_SPECS, CardError, Character
from bot.prompt.cards.png import minimal_png, with_text_chunks

_V1_MIRRORS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")


def card_to_dict(character: Character) -> dict[str, Any]:
    """The card as a V3 object (``spec: chara_card_v3``) with SillyTavern's V1 copies on top."""
    raw = character.raw
    from_envelope = raw.get("spec") in V2_SPECS and isinstance(raw.get("data"), dict)
    # shallow copies: only top-level keys are replaced below; one deep copy at the end
    out: dict[str, Any] = dict(raw) if from_envelope else {}
    data: dict[str, Any] = dict(raw["data"]) if from_envelope else {}
    for key in _V1_MIRRORS:
        out[key] = getattr(character, key)
    out["creatorcomment"] = character.creator_notes
    out["spec"] = "chara_card_v3"
    out["spec_version"] = "3.0"
    out["data"] = data
    _fill_data(data, character)
    return copy.deepcopy(out)


def export_json(character: Character) -> bytes:
    """The card as V3 JSON (UTF-8, compact, as SillyTavern's exporter writes it)."""
    return _dumps(card_to_dict(character))


def export_png(character: Character, image: bytes | None = None) -> bytes:
    """A PNG card: ``image`` (a 1×1 transparent pixel when None) with a ``chara`` (V2) and a
    ``ccv3`` (V3) tEXt chunk before IEND, their JSON identical but for ``spec`` and
    ``spec_version``; any card chunks already in ``image`` are replaced."""
    v3 = card_to_dict(character)
    v2 = {**v3, "spec": "chara_card_v2", "spec_version": "2.0"}  # same key order
    texts = [("chara", _base64(_dumps(v2))), ("ccv3", _base64(_dumps(v3)))]
    return with_text_chunks(minimal_png() if image is None else image, texts, "image")


def _fill_data(data: dict[str, Any], c: Character) -> None:
    for key in (*_V1_MIRRORS, "creator_notes", "system_prompt", "post_history_instructions"):
        data[key] = getattr(c, key)
    data["alternate_greetings"] = list(c.alternate_greetings)
    data["tags"] = list(c.tags)
    data["creator"] = c.creator
    data["character_version"] = c.character_version
    data["extensions"] = _extensions(c)
    if c.character_book is not None:
        data["character_book"] = c.character_book
    elif data.get("character_book") is not None:
        del data["character_book"]
    data["group_only_greetings"] = list(c.group_only_greetings)  # required by V3
    if c.nickname or "nickname" in data:
        data["nickname"] = c.nickname
    _put_loose(data, "assets", f.parse_assets, c.assets, [a.to_dict() for a in c.assets])
    _put_loose(data, "source", f.parse_text_items, c.source, list(c.source))
    _put_loose(data, "creation_date", f.parse_date, c.creation_date, c.creation_date)
    _put_loose(data, "modification_date", f.parse_date, c.modification_date, c.modification_date)
    _put_loose(
        data,
        "creator_notes_multilingual",
        f.parse_multilingual,
        c.creator_notes_multilingual,
        dict(c.creator_notes_multilingual),
    )


def _extensions(c: Character) -> dict[str, Any]:
    out = dict(c.extensions)
    note = c.depth_prompt
    if note is None:
        out.pop("depth_prompt", None)
    else:
        try:
            current, _ = f.parse_depth_prompt(out.get("depth_prompt"), "")
        except CardError:
            current = None
        if current != note:
            out["depth_prompt"] = note.to_dict()
    talk, _ = f.parse_talkativeness(out.get("talkativeness"), "")
    if talk != c.talkativeness:
        out["talkativeness"] = c.talkativeness
    return out


def _put_loose(data: dict[str, Any], key: str, parse: Any, value: Any, written: Any) -> None:
    """Write ``written`` unless the stored value already reads as ``value``."""
    parsed, _ = parse(data.get(key), key)
    if parsed == value:
        return
    if value in (None, (), {}):
        data.pop(key, None)
    else:
        data[key] = written


def _dumps(obj: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:  # YAML dates or NaN in extensions, say
        raise CardError(f"card data cannot be written as JSON: {exc}") from None
    return text.encode("utf-8")


def _base64(payload: bytes) -> bytes:
    text = base64.b64encode(payload)
    if len(text) > MAX_TEXT_CHUNK:
        raise CardError(f"card data is {len(text)} bytes in base64, over the 16 MiB chunk limit")
    return text
