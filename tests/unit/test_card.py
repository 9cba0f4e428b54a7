"""Character cards: every supported shape loads; every broken file is a CardError that names
the file and the problem."""

from __future__ import annotations

import base64
import json
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import ConfigError
from bot.prompt.card import MAX_CARD_BYTES, CardError, Character, load_card, parse_card
from bot.prompt.greeting import greeting_swipes

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sillytavern"
SERAPHINA = FIXTURES / "cards" / "default_Seraphina.png"
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(ctype: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(ctype + body).to_bytes(4, "big")
    return len(body).to_bytes(4, "big") + ctype + body + crc


def b64(obj: Any) -> bytes:
    return base64.b64encode(json.dumps(obj).encode())


def png(*chunks: bytes, end: bool = True) -> bytes:
    ihdr = chunk(b"IHDR", (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0]))
    idat = chunk(b"IDAT", zlib.compress(b"\0\0"))
    return SIGNATURE + ihdr + b"".join(chunks) + idat + (chunk(b"IEND", b"") if end else b"")


def v2(name: str = "Mira", **data: Any) -> dict[str, Any]:
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": name, **data}}


def card_error(data: bytes, source: str = "card.png") -> str:
    with pytest.raises(CardError) as info:
        parse_card(data, source)
    assert source in info.value.message
    return info.value.message


# -- loading --------------------------------------------------------------------------------------


def test_seraphina_png_loads_with_its_lorebook() -> None:
    card = load_card(SERAPHINA)
    assert card.name == "Seraphina"
    assert card.spec == "chara_card_v2"
    assert card.first_mes.startswith("*You wake with a start")
    assert card.character_book is not None
    assert len(card.character_book["entries"]) == 4
    assert card.extensions["world"] == "Eldoria"
    assert card.creator_notes == "ST Default Bot contest winner: roleplay bots category"
    assert card.raw["data"]["creator"] == "OtisAlejandro"  # fields we do not model survive


def test_v1_json_flat_fields() -> None:
    obj = {
        "name": "Mira",
        "description": "A lighthouse keeper.",
        "personality": "calm",
        "scenario": "A storm.",
        "first_mes": "Hello.",
        "mes_example": "<START>\n{{user}}: Hi\n{{char}}: Hey",
        "creatorcomment": "old-style note",
        "talkativeness": "0.5",
    }
    card = parse_card(json.dumps(obj).encode(), "mira.json")
    assert card == Character(
        name="Mira",
        description="A lighthouse keeper.",
        personality="calm",
        scenario="A storm.",
        first_mes="Hello.",
        mes_example="<START>\n{{user}}: Hi\n{{char}}: Hey",
        creator_notes="old-style note",
        spec="chara_card_v1",
        raw=obj,
    )


def test_v2_json_keeps_unknown_fields_and_extensions() -> None:
    obj = v2(
        description="desc",
        system_prompt="Be {{char}}. {{original}}",
        post_history_instructions="Stay in character.",
        alternate_greetings=["Hi again.", "Welcome."],
        tags=["fantasy", "calm"],
        creator_notes="notes",
        character_book=None,
        extensions={"depth_prompt": {"prompt": "x", "depth": 4}, "my_tool": {"keep": [1, 2]}},
        some_future_field=True,
    )
    obj["top_level_extra"] = {"a": 1}
    card = parse_card(json.dumps(obj).encode("utf-8"), "mira.json")
    assert card.name == "Mira"
    assert card.spec == "chara_card_v2"
    assert card.system_prompt == "Be {{char}}. {{original}}"
    assert card.post_history_instructions == "Stay in character."
    assert card.alternate_greetings == ("Hi again.", "Welcome.")
    assert card.tags == ("fantasy", "calm")
    assert card.character_book is None
    assert card.extensions == {
        "depth_prompt": {"prompt": "x", "depth": 4},
        "my_tool": {"keep": [1, 2]},
    }
    assert card.raw["data"]["some_future_field"] is True
    assert card.raw["top_level_extra"] == {"a": 1}


def test_v2_falls_back_to_the_duplicated_top_level_fields() -> None:
    obj = {
        "spec": "chara_card_v2",
        "name": "Mira",
        "description": "top",
        "data": {"scenario": "s"},
    }
    card = parse_card(json.dumps(obj).encode(), "mira.json")
    assert (card.name, card.description, card.scenario) == ("Mira", "top", "s")


def test_v3_json_with_nickname_and_assets() -> None:
    assets = [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}]
    obj = {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {"name": "Mira", "nickname": "Miri", "assets": assets, "group_only_greetings": []},
    }
    card = parse_card(b"\xef\xbb\xbf" + json.dumps(obj).encode(), "mira.json")  # with a BOM
    assert (card.name, card.nickname, card.spec) == ("Mira", "Miri", "chara_card_v3")
    assert card.raw["data"]["assets"] == assets


def test_pygmalion_export() -> None:
    obj = {"char_name": "Mira", "char_persona": "p", "char_greeting": "g", "world_scenario": "w"}
    card = parse_card(json.dumps(obj).encode(), "old.json")
    assert (card.name, card.description, card.first_mes, card.scenario) == ("Mira", "p", "g", "w")
    assert card.spec == "pygmalion"


@pytest.mark.parametrize("first", ["ccv3", "chara"])
def test_png_ccv3_wins_over_chara_in_any_order(first: str) -> None:
    chunks = {
        "chara": chunk(b"tEXt", b"chara\0" + b64(v2("Old Name"))),
        "ccv3": chunk(b"tEXt", b"ccv3\0" + b64({**v2("New Name"), "spec": "chara_card_v3"})),
    }
    other = "chara" if first == "ccv3" else "ccv3"
    card = parse_card(png(chunks[first], chunks[other]), "two.png")
    assert card.name == "New Name"
    assert card.spec == "chara_card_v3"


def test_png_ztxt_and_compressed_itxt_chunks() -> None:
    ztxt = chunk(b"zTXt", b"chara\0\0" + zlib.compress(b64(v2("Zed"))))
    assert parse_card(png(ztxt), "z.png").name == "Zed"
    itxt = chunk(b"iTXt", b"Chara\0\x01\x00en\0\0" + zlib.compress(b64(v2("Ida"))))
    assert parse_card(png(itxt), "i.png").name == "Ida"


def test_load_card_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "mira.card"  # content decides the format, not the extension
    path.write_bytes(png(chunk(b"tEXt", b"chara\0" + b64(v2("Mira")))))
    assert load_card(path).name == "Mira"


# -- failures -------------------------------------------------------------------------------------


def test_png_without_card_chunks() -> None:
    message = card_error(png(chunk(b"tEXt", b"Software\0paint")), "seraphina.png")
    assert message == "seraphina.png: no 'chara' or 'ccv3' chunk — is this a character card?"


def test_truncated_png() -> None:
    data = SERAPHINA.read_bytes()[:100_000]
    assert "truncated PNG (IDAT chunk claims 511505 bytes" in card_error(data, "cut.png")
    no_end = png(chunk(b"tEXt", b"chara\0" + b64(v2())), end=False)
    assert "truncated PNG (ends before the IEND chunk)" in card_error(no_end)


def test_invalid_base64() -> None:
    data = png(chunk(b"tEXt", b"chara\0!!not*base64!!"))
    assert card_error(data) == "card.png: 'chara' chunk: not valid base64"


def test_invalid_json_in_chunk() -> None:
    data = png(chunk(b"tEXt", b"chara\0" + base64.b64encode(b'{"spec": ')))
    assert card_error(data).startswith("card.png: 'chara' chunk: not valid JSON (Expecting value")


def test_missing_name() -> None:
    no_name = {"spec": "chara_card_v2", "data": {"description": "nameless"}}
    assert card_error(json.dumps(no_name).encode(), "card.json") == "card.json: data.name: missing"
    blank = {"name": "  ", "description": "x"}
    assert card_error(json.dumps(blank).encode(), "v1.json") == "v1.json: name: missing"


def test_chunk_header_claiming_50_mib_is_refused_without_reading() -> None:
    claim = (50 * 1024 * 1024).to_bytes(4, "big") + b"tEXt" + b"chara\0abc"
    message = card_error(png(claim, end=False), "huge.png")
    assert message == (
        "huge.png: tEXt chunk claims 52428800 bytes, over the 16 MiB limit for card data"
    )


def test_compressed_chunk_that_inflates_past_the_cap() -> None:
    packer = zlib.compressobj()
    blob = b"".join(packer.compress(bytes(1024 * 1024)) for _ in range(17)) + packer.flush()
    message = card_error(png(chunk(b"zTXt", b"chara\0\0" + blob)), "bomb.png")
    assert message == "bomb.png: 'chara' chunk: inflates to over 16 MiB"


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    with path.open("wb") as f:
        f.truncate(MAX_CARD_BYTES + 1)  # sparse: no 20 MB on disk or in memory
    with pytest.raises(CardError, match=r"big\.png: 20971521 bytes is over the 20 MiB limit"):
        load_card(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CardError, match=r"nope\.json: cannot read the card: No such file"):
        load_card(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ([1, 2], "x.json: expected a JSON object, got a list"),
        (
            {"spec": "lorebook_v3", "data": {}},
            "x.json: spec: 'lorebook_v3' is not a character card",
        ),
        ({"spec": "chara_card_v2", "data": "Mira"}, "x.json: data: expected an object, got text"),
        (v2(description=5), "x.json: data.description: expected text, got a number"),
        (v2(alternate_greetings="hi"), "x.json: data.alternate_greetings: expected a list, got"),
        (
            v2(alternate_greetings=["a", None]),
            "x.json: data.alternate_greetings[1]: expected text",
        ),
        (v2(extensions=[]), "x.json: data.extensions: expected an object, got a list"),
        (v2(character_book="book"), "x.json: data.character_book: expected an object"),
    ],
)
def test_wrong_field_types_name_the_field(obj: Any, expected: str) -> None:
    assert card_error(json.dumps(obj).encode(), "x.json").startswith(expected)


def test_not_utf8_and_broken_zip() -> None:
    assert "not UTF-8 text" in card_error(b'{"name": "\xff"}', "x.json")
    message = card_error(b"PK\x03\x04rest", "x.charx")
    assert message == "x.charx: not a readable CHARX (zip) archive (no end record)"


def test_card_error_is_a_config_error() -> None:
    assert issubclass(CardError, ConfigError)


# -- robustness -----------------------------------------------------------------------------------

_PNG_BODY = st.lists(
    st.tuples(
        st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IDAT", b"IEND", b"abcd"]),
        st.binary(max_size=64),
        st.integers(min_value=0, max_value=2**32 - 1) | st.none(),  # a lying length, or none
    ),
    max_size=6,
)


def _forge(parts: list[tuple[bytes, bytes, int | None]]) -> bytes:
    out = SIGNATURE
    for ctype, body, claimed in parts:
        length = len(body) if claimed is None else claimed
        out += length.to_bytes(4, "big") + ctype + body + b"\0\0\0\0"
    return out


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(st.binary(max_size=512) | st.builds(_forge, _PNG_BODY))
def test_arbitrary_bytes_raise_only_card_error(data: bytes) -> None:
    try:
        card = parse_card(data, "fuzz")
    except CardError as exc:
        assert exc.message.startswith("fuzz")
    else:
        assert card.name.strip()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_FIELDS = ["name", "description", "alternate_greetings", "tags", "extensions", "character_book"]


@settings(max_examples=200, deadline=timedelta(seconds=2))
@given(_JSON | st.dictionaries(st.sampled_from(_FIELDS), _JSON))
def test_arbitrary_json_in_a_png_raises_only_card_error(value: Any) -> None:
    data = png(chunk(b"tEXt", b"chara\0" + b64({"spec": "chara_card_v2", "data": value})))
    try:
        parse_card(data, "fuzz.png")
    except CardError as exc:
        assert exc.message.startswith("fuzz.png")


def test_deeply_nested_json_is_a_card_error() -> None:
    assert "not valid JSON" in card_error(b"[" * 100_000, "deep.json")


# -- greetings ------------------------------------------------------------------------------------


def test_greeting_swipes_expand_and_skip_empty() -> None:
    card = Character(
        name="Mira",
        first_mes="Welcome, {{user}}.\r\nI am {{char}}.",
        alternate_greetings=("  ", "Back so soon, <USER>?"),
    )
    assert greeting_swipes(card, "Sam") == ["Welcome, Sam.\nI am Mira.", "Back so soon, Sam?"]
    assert greeting_swipes(Character(name="Mira"), "Sam") == []
