"""CHARX cards: a zip with ``card.json`` (a V3 card) at its root and the files its
``data.assets`` name as ``embeded://path``.

Nothing is extracted to disk, and the zip is treated as hostile: the entry count is checked
from the end record before the directory is parsed, declared sizes are summed and capped,
every read is capped while inflating (declared sizes can lie), and names that climb out of the
archive (``..``, absolute paths) are ignored, so they can never be addressed.
"""

from __future__ import annotations

import io
import posixpath
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from bot.prompt.cards.fields import decode_json, mib
from bot.prompt.cards.model import (
    MAX_ASSET_BYTES,
    MAX_CHARX_ENTRIES,
    MAX_CHARX_UNCOMPRESSED,
    MAX_TEXT_CHUNK,
    CardError,
    Character,
)
from bot.prompt.cards.shapes import to_character

ZIP_SIGNATURE = b"PK\x03\x04"
_EOCD = b"PK\x05\x06"
_EMBEDDED_SCHEMES = ("embeded://", "embedded://")  # the spec's spelling, and the usual one
# Anything a malformed archive can make zipfile raise, mapped to one CardError.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    OverflowError,
    struct.error,
    IndexError,
    KeyError,
)


def parse_charx(data: bytes, source: str) -> Character:
    """The card in ``card.json``, with its main icon (if embedded) as the avatar."""
    where = f"{source}: card.json"
    with _open(data, source) as (archive, entries):
        card_entry = _find_card_json(entries)
        if card_entry is None:
            raise CardError(f"{source}: no card.json in the CHARX archive")
        blob = _read(archive, entries[card_entry], MAX_TEXT_CHUNK, where)
    obj = decode_json(blob, where)
    if isinstance(obj, dict) and obj.get("spec") is None:
        raise CardError(f"{where}: spec: missing (a CHARX holds a V2 or V3 card)")
    character = to_character(obj, where)
    icons = sorted(
        (a for a in character.assets if a.type == "icon"), key=lambda a: a.name != "main"
    )
    with _open(data, source) as (archive, entries):
        for asset in icons:
            name = _resolve(asset.uri, entries)
            if name is not None:
                avatar = _read(archive, entries[name], MAX_ASSET_BYTES, f"{source}: {name}")
                return replace(character, avatar=avatar)
    return character


def read_charx_assets(data: bytes, source: str, character: Character) -> dict[str, bytes]:
    """The embedded files that ``character.assets`` name, by their ``uri``; bounded per file
    and in total. URIs that point outside the archive or at nothing are left out."""
    found: dict[str, bytes] = {}
    total = 0
    with _open(data, source) as (archive, entries):
        for asset in character.assets:
            name = _resolve(asset.uri, entries)
            if name is None or asset.uri in found:
                continue
            blob = _read(archive, entries[name], MAX_ASSET_BYTES, f"{source}: {name}")
            total += len(blob)
            if total > MAX_CHARX_UNCOMPRESSED:
                raise CardError(f"{source}: assets add up to over {mib(MAX_CHARX_UNCOMPRESSED)}")
            found[asset.uri] = blob
    return found


@contextmanager
def _open(
    data: bytes, source: str
) -> Iterator[tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]]:
    """The archive and its addressable entries; zip failures inside become one CardError."""
    try:
        with zipfile.ZipFile(io.BytesIO(_checked(data, source))) as archive:
            yield archive, _entries(archive, source)
    except _ZIP_ERRORS as exc:
        raise CardError(f"{source}: not a readable CHARX (zip) archive ({_why(exc)})") from None


def _checked(data: bytes, source: str) -> bytes:
    """``data``, after checking the entry count in the end record (before zipfile parses a
    directory that could hold millions of entries)."""
    at = data.rfind(_EOCD, max(0, len(data) - 65_557))  # 22-byte record + 64 KiB comment
    if at < 0 or at + 22 > len(data):
        raise CardError(f"{source}: not a readable CHARX (zip) archive (no end record)")
    count = int.from_bytes(data[at + 10 : at + 12], "little")
    if count > MAX_CHARX_ENTRIES:
        raise CardError(
            f"{source}: {count} files in the archive, over the limit of {MAX_CHARX_ENTRIES}"
        )
    return data


def _entries(archive: zipfile.ZipFile, source: str) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()  # zip64 end records can claim a count the check above missed
    if len(infos) > MAX_CHARX_ENTRIES:
        raise CardError(
            f"{source}: {len(infos)} files in the archive, over the limit of {MAX_CHARX_ENTRIES}"
        )
    declared = sum(i.file_size for i in infos)
    if declared > MAX_CHARX_UNCOMPRESSED:
        raise CardError(
            f"{source}: the archive unpacks to {declared} bytes, over the "
            f"{mib(MAX_CHARX_UNCOMPRESSED)} limit"
        )
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = _safe_name(info.filename)
        if name is not None and not info.is_dir() and name not in entries:
            entries[name] = info
    return entries


def _safe_name(name: str) -> str | None:
    """The archive-relative path, or None for names that climb out or are tool litter."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = name.split("/")
    if ".." in parts or parts[0] == "__MACOSX":
        return None
    return posixpath.normpath(name)


def _find_card_json(entries: dict[str, zipfile.ZipInfo]) -> str | None:
    if "card.json" in entries:
        return "card.json"
    # like SillyTavern, accept an archive that was zipped with its folder
    return next((n for n in entries if n.endswith("/card.json")), None)


def _resolve(uri: str, entries: dict[str, zipfile.ZipInfo]) -> str | None:
    scheme = next((s for s in _EMBEDDED_SCHEMES if uri.startswith(s)), None)
    if scheme is None:
        return None
    name = _safe_name(uri[len(scheme) :])
    if name is None:
        return None
    if name in entries:
        return name
    # SillyTavern finds the file by its base name wherever it sits
    base = posixpath.basename(name)
    return next((n for n in entries if posixpath.basename(n) == base), None) if base else None


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, where: str) -> bytes:
    if info.file_size > limit:
        raise CardError(f"{where}: {info.file_size} bytes, over the {mib(limit)} limit")
    with archive.open(info) as stream:
        blob = stream.read(limit + 1)  # counted while inflating: the header may lie
    if len(blob) > limit:
        raise CardError(f"{where}: inflates to over {mib(limit)}")
    return blob


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return text[:80] if text else exc.__class__.__name__
