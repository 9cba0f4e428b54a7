"""Card export: PNG with both chunks as SillyTavern writes them, V3 JSON, and round trips
(export → parse gives the same character)."""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.prompt.card import (
    Asset,
    CardError,
    Character,
    DepthPrompt,
    card_to_dict,
    export_json,
    export_png,
    load_card,
    parse_card,
)

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sillytavern"
SERAPHINA = FIXTURES / "cards" / "default_Seraphina.png"
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk; asserts each CRC, as a strict PNG reader would."""
    assert png.startswith(SIGNATURE)
    out, pos = [], len(SIGNATURE)
    while pos < len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        ctype, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        crc = png[pos + 8 + length : pos + 12 + length]
        assert crc == zlib.crc32(ctype + body).to_bytes(4, "big"), ctype
        out.append((ctype, body))
        pos += 12 + length
    return out


def card_chunks(png: bytes) -> dict[str, Any]:
    found = {}
    for ctype, body in chunks(png):
        if ctype == b"tEXt":
            key, _, text = body.partition(b"\0")
            found[key.decode()] = json.loads(base64.b64decode(text))
    return found


def modelled(card: Character) -> dict[str, Any]:
    """Every field but the source object, the shape and the picture. ``depth_prompt`` and
    ``talkativeness`` are compared as fields; in ``extensions`` they are where they are kept."""
    out = {f.name: getattr(card, f.name) for f in fields(card)}
    for name in ("raw", "spec", "avatar"):
        del out[name]
    out["extensions"] = {
        k: v for k, v in card.extensions.items() if k not in ("depth_prompt", "talkativeness")
    }
    return out


def test_seraphina_round_trip() -> None:
    card = load_card(SERAPHINA)
    assert card.avatar is not None
    png = export_png(card, card.avatar)
    types = [c for c, _ in chunks(png)]
    assert types[-3:] == [b"tEXt", b"tEXt", b"IEND"]
    # the picture is untouched: every non-card chunk is copied byte for byte
    assert [c for c in chunks(png) if c[0] != b"tEXt"] == [
        c for c in chunks(card.avatar) if c[0] != b"tEXt"
    ]
    payloads = card_chunks(png)
    assert list(payloads) == ["chara", "ccv3"]
    v2, v3 = payloads["chara"], payloads["ccv3"]
    assert (v2["spec"], v2["spec_version"], v3["spec"], v3["spec_version"]) == (
        "chara_card_v2",
        "2.0",
        "chara_card_v3",
        "3.0",
    )
    assert {**v2, "spec": "", "spec_version": ""} == {**v3, "spec": "", "spec_version": ""}
    assert list(v2) == list(v3)  # same key order, like SillyTavern's in-place rewrite
    again = parse_card(png, "again.png")
    assert again.spec == "chara_card_v3"  # ccv3 wins
    assert modelled(again) == modelled(card)
    assert again.raw["data"]["creator"] == "OtisAlejandro"
    assert again.raw["chat"] == card.raw["chat"]  # SillyTavern's top-level extras survive
    assert export_png(again, again.avatar) == png  # a fixed point


def test_v3_card_with_every_field_round_trips_exactly() -> None:
    book = {"name": "b", "entries": [{"keys": ["x"], "content": "c", "extensions": {}}]}
    obj = {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "top_extra": {"kept": True},
        "data": {
            "name": "Mira",
            "description": "d ✓",
            "personality": "p",
            "scenario": "s",
            "first_mes": "f",
            "mes_example": "m",
            "creator_notes": "n",
            "system_prompt": "sp {{original}}",
            "post_history_instructions": "phi",
            "alternate_greetings": ["a1", "a2"],
            "group_only_greetings": ["g1"],
            "tags": ["t"],
            "creator": "c",
            "character_version": "1",
            "nickname": "Miri",
            "creation_date": 1,
            "modification_date": 2,
            "source": ["src"],
            "creator_notes_multilingual": {"de": "hallo"},
            "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
            "character_book": book,
            "extensions": {
                "depth_prompt": {"prompt": "note", "depth": 2, "role": "user"},
                "talkativeness": 0.7,
                "regex_scripts": [{"scriptName": "x"}],
                "vendor": {"deep": [1, {"a": None}]},
            },
            "future_field": [1, 2, 3],
        },
    }
    card = parse_card(json.dumps(obj).encode(), "mira.json")
    for exported in (export_png(card), export_json(card)):
        again = parse_card(exported, "again")
        assert again == replace(card, raw=again.raw)
        assert again.raw["data"]["future_field"] == [1, 2, 3]
        assert again.raw["top_extra"] == {"kept": True}
        assert again.raw["data"]["extensions"] == obj["data"]["extensions"]


def test_export_without_image_writes_a_valid_png() -> None:
    png = export_png(Character(name="Mira", first_mes="Hi"))
    types = [c for c, _ in chunks(png)]
    assert types == [b"IHDR", b"IDAT", b"tEXt", b"tEXt", b"IEND"]
    ihdr = dict(chunks(png))[b"IHDR"]
    assert ihdr[:8] == (1).to_bytes(4, "big") * 2
    assert zlib.decompress(dict(chunks(png))[b"IDAT"]) == bytes(5)
    card = parse_card(png, "new.png")
    assert (card.name, card.first_mes, card.spec) == ("Mira", "Hi", "chara_card_v3")


def test_export_replaces_old_card_chunks_and_keeps_others() -> None:
    def raw_chunk(ctype: bytes, body: bytes) -> bytes:
        return (
            len(body).to_bytes(4, "big")
            + ctype
            + body
            + zlib.crc32(ctype + body).to_bytes(4, "big")
        )

    old = base64.b64encode(json.dumps({"name": "Old"}).encode())
    image = (
        SIGNATURE
        + raw_chunk(b"IHDR", (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0]))
        + raw_chunk(b"tEXt", b"Software\0paint")
        + raw_chunk(b"tEXt", b"Chara\0" + old)
        + raw_chunk(b"zTXt", b"ccv3\0\0" + zlib.compress(old))
        + raw_chunk(b"IDAT", zlib.compress(b"\0\0"))
        + raw_chunk(b"IEND", b"")
    )
    png = export_png(Character(name="New"), image)
    texts = [body.partition(b"\0")[0] for c, body in chunks(png) if c in (b"tEXt", b"zTXt")]
    assert texts == [b"Software", b"chara", b"ccv3"]
    assert parse_card(png, "x.png").name == "New"


def test_export_rejects_an_image_that_is_not_png() -> None:
    with pytest.raises(CardError, match=r"^image: not a PNG image$"):
        export_png(Character(name="Mira"), b"\xff\xd8\xff\xe0 a jpeg")
    with pytest.raises(CardError, match=r"^image: truncated PNG"):
        export_png(Character(name="Mira"), SIGNATURE + b"\0\0")


def test_edits_are_written_and_odd_stored_values_are_left_alone() -> None:
    obj = {
        "spec": "chara_card_v2",
        "data": {
            "name": "Mira",
            "creation_date": "not a date",  # read as None; left as stored
            "extensions": {"talkativeness": "0.5"},  # a string, as SillyTavern stores it
        },
    }
    card = parse_card(json.dumps(obj).encode(), "m.json")
    unchanged = card_to_dict(card)["data"]
    assert unchanged["creation_date"] == "not a date"
    assert unchanged["extensions"] == {"talkativeness": "0.5"}
    edited = replace(
        card,
        description="new",
        depth_prompt=DepthPrompt("whisper", 1, "assistant"),
        talkativeness=0.9,
        assets=(Asset("icon", "ccdefault:"),),
        creation_date=5,
    )
    data = card_to_dict(edited)["data"]
    assert data["description"] == "new"
    assert data["extensions"]["depth_prompt"] == {
        "prompt": "whisper",
        "depth": 1,
        "role": "assistant",
    }
    assert data["extensions"]["talkativeness"] == 0.9
    assert data["assets"] == [{"type": "icon", "uri": "ccdefault:", "name": "", "ext": ""}]
    assert data["creation_date"] == 5
    assert (
        "depth_prompt"
        not in card_to_dict(replace(edited, depth_prompt=None))["data"]["extensions"]
    )


def test_card_to_dict_does_not_share_mutable_parts() -> None:
    card = parse_card(
        json.dumps(
            {"spec": "chara_card_v2", "data": {"name": "M", "extensions": {"a": [1]}}}
        ).encode(),
        "m",
    )
    out = card_to_dict(card)
    out["data"]["extensions"]["a"].append(2)
    assert card.extensions == {"a": [1]}


_TEXT = st.text(max_size=20)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
_CHARACTERS = st.builds(
    Character,
    name=st.text(min_size=1, max_size=20).filter(str.strip),
    description=_TEXT,
    personality=_TEXT,
    scenario=_TEXT,
    first_mes=_TEXT,
    mes_example=_TEXT,
    system_prompt=_TEXT,
    post_history_instructions=_TEXT,
    alternate_greetings=st.lists(_TEXT, max_size=3).map(tuple),
    creator_notes=_TEXT,
    tags=st.lists(_TEXT, max_size=3).map(tuple),
    nickname=_TEXT,
    character_book=st.none() | st.dictionaries(_TEXT, _JSON, max_size=3),
    extensions=st.dictionaries(
        _TEXT.filter(lambda k: k not in ("depth_prompt", "talkativeness")), _JSON, max_size=3
    ),
    creator=_TEXT,
    character_version=_TEXT,
    group_only_greetings=st.lists(_TEXT, max_size=2).map(tuple),
    source=st.lists(_TEXT, max_size=2).map(tuple),
    creation_date=st.none() | st.integers(0, 2**40),
    modification_date=st.none() | st.integers(0, 2**40),
    assets=st.lists(st.builds(Asset, _TEXT, _TEXT, _TEXT, _TEXT), max_size=2).map(tuple),
    depth_prompt=st.none()
    | st.builds(
        DepthPrompt, _TEXT, st.integers(0, 100), st.sampled_from(["system", "user", "assistant"])
    ),
    talkativeness=st.floats(0, 1),
    creator_notes_multilingual=st.dictionaries(_TEXT, _TEXT, max_size=2),
)


@settings(max_examples=150, deadline=timedelta(seconds=2))
@given(_CHARACTERS)
def test_any_character_round_trips_through_png(card: Character) -> None:
    again = parse_card(export_png(card), "rt.png")
    assert modelled(again) == modelled(card)
    assert again.spec == "chara_card_v3"
