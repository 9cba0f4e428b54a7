"""Character cards: SillyTavern V1/V2/V3 JSON and PNG files with embedded card data.

A PNG card carries base64 JSON in a text chunk named ``chara`` (V2) and/or ``ccv3`` (V3);
``ccv3`` wins when both are present. Every failure is a :class:`CardError` naming the file and
the field or chunk, e.g. ``card.json: data.name: missing``.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

MAX_CARD_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHUNK = 16 * 1024 * 1024  # one metadata chunk, also after inflating zTXt/iTXt

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_CARD_KEYWORDS = ("ccv3", "chara")  # in order of preference
_V2_SPECS = ("chara_card_v2", "chara_card_v3")


class CardError(ConfigError):
    """A character card that cannot be read; the message names the file and the problem."""

    hint = "use a SillyTavern character card (PNG or JSON, V1/V2/V3)"


@dataclass(frozen=True, slots=True)
class Character:
    """One character card. Text fields default to ""; unknown data stays in ``raw``.

    ``extensions`` and ``character_book`` are kept verbatim so nothing a card author or
    SillyTavern stored there is lost. ``spec`` is ``chara_card_v1``/``_v2``/``_v3`` or
    ``pygmalion``.
    """

    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: tuple[str, ...] = ()
    creator_notes: str = ""
    tags: tuple[str, ...] = ()
    nickname: str = ""
    character_book: dict[str, Any] | None = field(default=None, hash=False)
    extensions: dict[str, Any] = field(default_factory=dict, hash=False)
    spec: str = "chara_card_v2"
    raw: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)


def load_card(path: Path) -> Character:
    """Read a card file (PNG or JSON, told apart by content, not by extension)."""
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_CARD_BYTES:
            raise CardError(f"{source}: {size} bytes is over the {_mib(MAX_CARD_BYTES)} limit")
        with path.open("rb") as f:
            data = f.read(MAX_CARD_BYTES + 1)  # bounded even if the file grows meanwhile
    except OSError as exc:
        raise CardError(f"{source}: cannot read the card: {exc.strerror or exc}") from None
    return parse_card(data, source)


def parse_card(data: bytes, source: str) -> Character:
    """Parse card bytes; ``source`` names the file in error messages."""
    if len(data) > MAX_CARD_BYTES:
        raise CardError(f"{source}: {len(data)} bytes is over the {_mib(MAX_CARD_BYTES)} limit")
    if data.startswith(_PNG_SIGNATURE):
        keyword, payload = _png_card_text(data, source)
        where = f"{source}: '{keyword}' chunk"
        obj = _decode_json(_decode_base64(payload, where), where)
    elif data.startswith(b"PK\x03\x04"):
        raise CardError(f"{source}: CHARX (zip) cards are not supported yet; export as PNG")
    else:
        obj = _decode_json(data, source)
    return _character(obj, source)


# -- PNG ---------------------------------------------------------------------------------------
# A small reader instead of Pillow: we only need text chunks, must cap every length before
# touching it (a header may claim gigabytes), and must never decode pixels or inflate
# anything but the card's own chunk.


def _png_card_text(data: bytes, source: str) -> tuple[str, bytes]:
    """The base64 text of the preferred card chunk, and that chunk's keyword."""
    found: dict[str, tuple[bytes, bytes]] = {}  # keyword -> (chunk type, body)
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise CardError(f"{source}: truncated PNG (ends before the IEND chunk)")
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        label = ctype.decode("latin-1")
        start, end = pos + 8, pos + 8 + length
        if ctype in _TEXT_CHUNKS and length > MAX_TEXT_CHUNK:
            raise CardError(
                f"{source}: {label} chunk claims {length} bytes, over the "
                f"{_mib(MAX_TEXT_CHUNK)} limit for card data"
            )
        if end + 4 > len(data):
            raise CardError(
                f"{source}: truncated PNG ({label} chunk claims {length} bytes, "
                f"{max(len(data) - start, 0)} present)"
            )
        if ctype == b"IEND":
            break
        if ctype in _TEXT_CHUNKS:
            keyword, _, rest = data[start:end].partition(b"\0")
            key = keyword.decode("latin-1").lower()
            if key in _CARD_KEYWORDS and key not in found:
                found[key] = (ctype, rest)
        pos = end + 4  # skip the CRC: SillyTavern-written files are read leniently
    for key in _CARD_KEYWORDS:
        if key in found:
            ctype, rest = found[key]
            return key, _chunk_text(ctype, rest, f"{source}: '{key}' chunk")
    raise CardError(f"{source}: no 'chara' or 'ccv3' chunk — is this a character card?")


def _chunk_text(ctype: bytes, rest: bytes, where: str) -> bytes:
    """The text of a tEXt/zTXt/iTXt chunk body (after its keyword)."""
    if ctype == b"tEXt":
        return rest
    if ctype == b"zTXt":
        if rest[:1] != b"\0":
            raise CardError(f"{where}: unknown zTXt compression method")
        return _inflate(rest[1:], where)
    # iTXt: compression flag, method, language tag\0, translated keyword\0, text
    if len(rest) < 2:
        raise CardError(f"{where}: malformed iTXt chunk")
    compressed, method = rest[0], rest[1]
    parts = rest[2:].split(b"\0", 2)
    if len(parts) != 3:
        raise CardError(f"{where}: malformed iTXt chunk")
    if not compressed:
        return parts[2]
    if method != 0:
        raise CardError(f"{where}: unknown iTXt compression method")
    return _inflate(parts[2], where)


def _inflate(blob: bytes, where: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(blob, MAX_TEXT_CHUNK + 1)  # capped: no zip bombs
    except zlib.error:
        raise CardError(f"{where}: compressed text is corrupt") from None
    if len(out) > MAX_TEXT_CHUNK:
        raise CardError(f"{where}: inflates to over {_mib(MAX_TEXT_CHUNK)}")
    return out


def _decode_base64(text: bytes, where: str) -> bytes:
    compact = text.translate(None, b" \t\r\n")
    compact += b"=" * (-len(compact) % 4)  # like Node's Buffer, accept missing padding
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise CardError(f"{where}: not valid base64") from None


# -- JSON --------------------------------------------------------------------------------------


def _decode_json(data: bytes, where: str) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CardError(f"{where}: not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardError(
            f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:  # huge integers, absurd nesting
        raise CardError(f"{where}: not valid JSON ({exc.__class__.__name__})") from None


def _character(obj: Any, source: str) -> Character:
    if not isinstance(obj, dict):
        raise CardError(f"{source}: expected a JSON object, got {_json_type(obj)}")
    spec = obj.get("spec")
    if spec is None and "name" not in obj and "char_name" in obj:
        return _pygmalion(obj, source)
    if spec is None:
        fields = _Fields(obj, {}, source, "")
        spec_name = "chara_card_v1"
    elif spec in _V2_SPECS:
        data = obj.get("data")
        if not isinstance(data, dict):
            raise CardError(f"{source}: data: expected an object, got {_json_type(data)}")
        fields = _Fields(data, obj, source, "data.")
        spec_name = str(spec)
    else:
        raise CardError(
            f"{source}: spec: {repr(spec)[:60]} is not a character card "
            "(expected chara_card_v2 or chara_card_v3)"
        )
    book = fields.get("character_book")
    if book is not None and not isinstance(book, dict):
        raise CardError(f"{fields.path('character_book')}: expected an object")
    return Character(
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
        extensions=fields.mapping("extensions"),
        spec=spec_name,
        raw=obj,
    )


def _pygmalion(obj: dict[str, Any], source: str) -> Character:
    """The old Pygmalion/Gradio export, which SillyTavern still imports."""
    f = _Fields(obj, {}, source, "")
    return Character(
        name=f.name("char_name"),
        description=f.text("char_persona"),
        scenario=f.text("world_scenario"),
        first_mes=f.text("char_greeting"),
        mes_example=f.text("example_dialogue"),
        spec="pygmalion",
        raw=obj,
    )


class _Fields:
    """Typed reads from a card's field mapping; ``fallback`` is V2's duplicated top level."""

    def __init__(
        self, data: Mapping[str, Any], fallback: Mapping[str, Any], source: str, prefix: str
    ) -> None:
        self._data = data
        self._fallback = fallback
        self._source = source
        self._prefix = prefix

    def path(self, key: str) -> str:
        prefix = self._prefix if key in self._data else ""
        return f"{self._source}: {prefix}{key}"

    def get(self, key: str) -> Any:
        # SillyTavern reads data.* first and falls back to the V1 copy at the top level
        return self._data[key] if key in self._data else self._fallback.get(key)

    def text(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise CardError(f"{self.path(key)}: expected text, got {_json_type(value)}")
        return value

    def name(self, key: str = "name") -> str:
        value = self.text(key)
        if not value.strip():
            raise CardError(f"{self._source}: {self._prefix}{key}: missing")
        return value

    def text_list(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise CardError(f"{self.path(key)}: expected a list, got {_json_type(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise CardError(f"{self.path(key)}[{i}]: expected text, got {_json_type(item)}")
        return tuple(value)

    def tags(self) -> tuple[str, ...]:
        value = self.get("tags")
        if isinstance(value, str):  # some old exports store "a, b"
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return self.text_list("tags")

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise CardError(f"{self.path(key)}: expected an object, got {_json_type(value)}")
        return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _mib(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB"
