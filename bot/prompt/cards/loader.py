"""Reading card files: PNG, CHARX, JSON or YAML, told apart by content, not by file name."""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import yaml

from bot.prompt.cards.charx import ZIP_SIGNATURE, parse_charx
from bot.prompt.cards.fields import decode_text, loads_json, mib
from bot.prompt.cards.model import (
    MAX_CARD_BYTES,
    MAX_CHARX_BYTES,
    MAX_YAML_BYTES,
    CardError,
    Character,
)
from bot.prompt.cards.png import PNG_SIGNATURE, card_text
from bot.prompt.cards.shapes import to_character


def load_card(path: Path) -> Character:
    """Read a card file (PNG, CHARX, JSON or YAML)."""
    source = str(path)
    try:
        with path.open("rb") as f:
            limit = MAX_CHARX_BYTES if f.read(4) == ZIP_SIGNATURE else MAX_CARD_BYTES
            size = path.stat().st_size
            if size > limit:
                raise CardError(f"{source}: {size} bytes is over the {mib(limit)} limit")
            f.seek(0)
            data = f.read(limit + 1)  # bounded even if the file grows meanwhile
    except OSError as exc:
        raise CardError(f"{source}: cannot read the card: {exc.strerror or exc}") from None
    return parse_card(data, source)


def parse_card(data: bytes, source: str) -> Character:
    """Parse card bytes; ``source`` names the file in error messages."""
    limit = MAX_CHARX_BYTES if data.startswith(ZIP_SIGNATURE) else MAX_CARD_BYTES
    if len(data) > limit:
        raise CardError(f"{source}: {len(data)} bytes is over the {mib(limit)} limit")
    if data.startswith(PNG_SIGNATURE):
        keyword, payload = card_text(data, source)
        where = f"{source}: '{keyword}' chunk"
        text = decode_text(_decode_base64(payload, where), where)
        return replace(to_character(loads_json(text, where), where), avatar=data)
    if data.startswith(ZIP_SIGNATURE):
        return parse_charx(data, source)
    text = decode_text(data, source)
    if text.lstrip()[:1] in ("{", "["):
        return to_character(loads_json(text, source), source)
    return to_character(_load_yaml(text, source), source, kind="YAML")


def _decode_base64(text: bytes, where: str) -> bytes:
    compact = text.translate(None, b" \t\r\n")
    compact += b"=" * (-len(compact) % 4)  # like Node's Buffer, accept missing padding
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise CardError(f"{where}: not valid base64") from None


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader without anchors/aliases: a card never needs them, and aliases nested in
    aliases ("billion laughs") make any later walk of the data exponential."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = cast(Any, self).peek_event().start_mark  # untyped in the stubs
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed", mark)
        return super().compose_node(parent, index)


def _load_yaml(text: str, source: str) -> Any:
    if len(text) > MAX_YAML_BYTES:
        raise CardError(f"{source}: a YAML card over {mib(MAX_YAML_BYTES)} is not supported")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise CardError(f"{source}: not valid JSON or YAML ({exc.problem}{at})") from None
    except (yaml.YAMLError, ValueError, RecursionError, OverflowError) as exc:
        raise CardError(f"{source}: not valid JSON or YAML ({exc.__class__.__name__})") from None
