"""PNG text chunks: reading a card's ``chara``/``ccv3`` chunk and writing new ones.

A small reader instead of Pillow: we only need text chunks, must cap every length before
touching it (a header may claim gigabytes), must never decode pixels, and must write the
image back byte for byte apart from the card chunks (as SillyTavern's chunk-level writer does).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from bot.prompt.cards.fields import mib
from bot.prompt.cards.model import MAX_TEXT_CHUNK, CardError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CARD_KEYWORDS = ("ccv3", "chara")  # in order of preference
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def _chunks(data: bytes, source: str) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of each chunk up to and including IEND."""
    if not data.startswith(PNG_SIGNATURE):
        raise CardError(f"{source}: not a PNG image")
    pos = len(PNG_SIGNATURE)
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
                f"{mib(MAX_TEXT_CHUNK)} limit for card data"
            )
        if end + 4 > len(data):
            raise CardError(
                f"{source}: truncated PNG ({label} chunk claims {length} bytes, "
                f"{max(len(data) - start, 0)} present)"
            )
        yield ctype, start, end
        if ctype == b"IEND":
            return
        pos = end + 4  # skip the CRC: SillyTavern-written files are read leniently


def _card_keyword(ctype: bytes, body: bytes) -> tuple[str, bytes] | None:
    """The card keyword of a text chunk (lower case) and the rest of its body, if it is one."""
    if ctype not in _TEXT_CHUNKS:
        return None
    keyword, _, rest = body.partition(b"\0")
    key = keyword.decode("latin-1").lower()
    return (key, rest) if key in CARD_KEYWORDS else None


def card_text(data: bytes, source: str) -> tuple[str, bytes]:
    """The base64 text of the preferred card chunk, and that chunk's keyword."""
    found: dict[str, tuple[bytes, bytes]] = {}  # keyword -> (chunk type, body after keyword)
    for ctype, start, end in _chunks(data, source):
        hit = _card_keyword(ctype, data[start:end])
        if hit is not None and hit[0] not in found:
            found[hit[0]] = (ctype, hit[1])
    for key in CARD_KEYWORDS:
        if key in found:
            ctype, rest = found[key]
            return key, _chunk_text(ctype, rest, f"{source}: '{key}' chunk")
    raise CardError(f"{source}: no 'chara' or 'ccv3' chunk — is this a character card?")


def with_text_chunks(image: bytes, texts: list[tuple[str, bytes]], source: str) -> bytes:
    """``image`` without its card chunks, and with ``texts`` as tEXt chunks before IEND.

    Every other chunk is copied byte for byte, CRC included.
    """
    out = [PNG_SIGNATURE]
    for ctype, start, end in _chunks(image, source):
        if _card_keyword(ctype, image[start:end]) is not None:
            continue
        if ctype == b"IEND":
            out.extend(chunk(b"tEXt", key.encode("latin-1") + b"\0" + text) for key, text in texts)
        out.append(image[start - 8 : end + 4])
    return b"".join(out)


def minimal_png() -> bytes:
    """A valid 1×1 transparent RGBA image, for cards exported without a picture."""
    ihdr = (1).to_bytes(4, "big") * 2 + bytes([8, 6, 0, 0, 0])  # 8-bit RGBA, no interlace
    pixels = zlib.compress(b"\0" + bytes(4))  # filter byte, then one transparent pixel
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def chunk(ctype: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(ctype + body).to_bytes(4, "big")
    return len(body).to_bytes(4, "big") + ctype + body + crc


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
        raise CardError(f"{where}: inflates to over {mib(MAX_TEXT_CHUNK)}")
    return out
