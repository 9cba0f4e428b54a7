"""CHARX cards: the card and its icon load from the zip; hostile archives (bombs, lying
headers, too many entries, paths that climb out) are CardErrors or ignored, never a hang."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.prompt.card import CardError, load_card, parse_card
from bot.prompt.cards import MAX_CHARX_BYTES, read_charx_assets

ICON = b"\x89PNG\r\n\x1a\n-icon-bytes"
JOY = b"joy-sprite"


def card_json(**data: Any) -> bytes:
    assets = [
        {
            "type": "icon",
            "uri": "embeded://assets/icon/images/main.png",
            "name": "main",
            "ext": "png",
        },
        {
            "type": "emotion",
            "uri": "embeded://assets/emotion/joy.png",
            "name": "joy",
            "ext": "png",
        },
    ]
    obj = {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {"name": "Mira", "description": "d", "assets": assets, **data},
    }
    return json.dumps(obj).encode()


def charx(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, blob in files.items():
            archive.writestr(name, blob)
    return buffer.getvalue()


GOOD = {
    "card.json": card_json(),
    "assets/icon/images/main.png": ICON,
    "assets/emotion/joy.png": JOY,
}


def error(data: bytes, source: str = "mira.charx") -> str:
    with pytest.raises(CardError) as info:
        parse_card(data, source)
    assert info.value.message.startswith(source)
    return info.value.message


def test_charx_loads_card_and_icon() -> None:
    card = parse_card(charx(GOOD), "mira.charx")
    assert (card.name, card.spec, card.description) == ("Mira", "chara_card_v3", "d")
    assert card.avatar == ICON
    assert [a.name for a in card.assets] == ["main", "joy"]


def test_charx_assets_by_uri(tmp_path: Path) -> None:
    data = charx(GOOD)
    path = tmp_path / "mira.charx"
    path.write_bytes(data)
    card = load_card(path)
    assert read_charx_assets(data, str(path), card) == {
        "embeded://assets/icon/images/main.png": ICON,
        "embeded://assets/emotion/joy.png": JOY,
    }


def test_card_json_inside_a_folder_and_icon_found_by_base_name() -> None:
    files = {"Mira/card.json": card_json(), "Mira/pics/main.png": ICON}
    assert parse_card(charx(files), "x.charx").avatar == ICON


def test_no_icon_means_no_avatar() -> None:
    assert parse_card(charx({"card.json": card_json()}), "x.charx").avatar is None


def test_missing_or_bad_card_json() -> None:
    assert error(charx({"readme.txt": b"hi"})) == "mira.charx: no card.json in the CHARX archive"
    assert error(charx({"card.json": b"{"})).startswith("mira.charx: card.json: not valid JSON")
    v1 = json.dumps({"name": "Mira"}).encode()
    assert error(charx({"card.json": v1})) == (
        "mira.charx: card.json: spec: missing (a CHARX holds a V2 or V3 card)"
    )
    nameless = json.dumps({"spec": "chara_card_v3", "data": {}}).encode()
    assert error(charx({"card.json": nameless})) == "mira.charx: card.json: data.name: missing"


def test_paths_that_climb_out_are_ignored() -> None:
    uris = [
        {"type": "icon", "uri": "embeded://../evil.png", "name": "main"},
        {"type": "icon", "uri": "embeded:///etc/passwd", "name": "x"},
    ]
    files = {
        "card.json": card_json(assets=uris),
        "../evil.png": b"evil",
        "/etc/passwd": b"root",
    }
    data = charx(files)
    card = parse_card(data, "x.charx")
    assert card.avatar is None
    assert read_charx_assets(data, "x.charx", card) == {}
    only_outside = charx({"../card.json": card_json()})
    assert error(only_outside) == "mira.charx: no card.json in the CHARX archive"


def test_too_many_entries() -> None:
    files = {f"f{i}.txt": b"" for i in range(2001)}
    files["card.json"] = card_json()
    assert error(charx(files, zipfile.ZIP_STORED)) == (
        "mira.charx: 2002 files in the archive, over the limit of 2000"
    )


def test_an_asset_that_inflates_past_the_cap() -> None:
    files = {**GOOD, "assets/icon/images/main.png": bytes(17 * 1024 * 1024)}
    data = charx(files)
    assert len(data) < 100_000  # a small file that unpacks to 17 MiB
    assert error(data) == (
        "mira.charx: assets/icon/images/main.png: 17825792 bytes, over the 16 MiB limit"
    )


def _set_sizes(data: bytes, name: bytes, size: int) -> bytes:
    """Rewrite the uncompressed size of ``name`` in its local and central headers."""
    out = bytearray(data)
    local = out.find(b"PK\x03\x04")
    while local != -1:
        name_len = struct.unpack_from("<H", out, local + 26)[0]
        if out[local + 30 : local + 30 + name_len] == name:
            struct.pack_into("<I", out, local + 22, size)
        local = out.find(b"PK\x03\x04", local + 4)
    central = out.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", out, central + 28)[0]
        if out[central + 46 : central + 46 + name_len] == name:
            struct.pack_into("<I", out, central + 24, size)
        central = out.find(b"PK\x01\x02", central + 4)
    return bytes(out)


def test_declared_sizes_over_the_total_cap() -> None:
    data = _set_sizes(charx(GOOD), b"assets/emotion/joy.png", 300 * 1024 * 1024)
    declared = 300 * 1024 * 1024 + len(GOOD["card.json"]) + len(ICON)
    assert error(data) == (
        f"mira.charx: the archive unpacks to {declared} bytes, over the 256 MiB limit"
    )


def test_a_header_that_understates_the_size_is_caught() -> None:
    files = {**GOOD, "assets/icon/images/main.png": bytes(2 * 1024 * 1024)}
    data = _set_sizes(charx(files), b"assets/icon/images/main.png", 10)
    assert error(data) == (
        "mira.charx: not a readable CHARX (zip) archive "
        "(Bad CRC-32 for file 'assets/icon/images/main.png')"
    )


def test_oversized_charx_file(tmp_path: Path) -> None:
    path = tmp_path / "big.charx"
    with path.open("wb") as f:
        f.write(b"PK\x03\x04")
        f.truncate(MAX_CHARX_BYTES + 1)  # sparse
    with pytest.raises(CardError, match=r"big\.charx: 67108865 bytes is over the 64 MiB limit"):
        load_card(path)


def test_encrypted_or_unknown_compression() -> None:
    data = bytearray(charx({"card.json": card_json()}))
    struct.pack_into("<H", data, 8, 99)  # local header: compression method 99 (AES)
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, central + 10, 99)
    assert error(bytes(data)).startswith("mira.charx: not a readable CHARX (zip) archive (")


_VALID = charx(GOOD)


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(
    st.lists(
        st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8
    )
    | st.binary(max_size=400).map(lambda b: b"PK\x03\x04" + b)
)
def test_damaged_archives_raise_only_card_error(change: list[tuple[int, int]] | bytes) -> None:
    if isinstance(change, bytes):
        data = change
    else:
        buffer = bytearray(_VALID)
        for at, value in change:
            buffer[at] = value
        data = bytes(buffer)
    try:
        card = parse_card(data, "fuzz.charx")
    except CardError as exc:
        assert exc.message.startswith("fuzz.charx")
    else:
        assert card.name.strip()
