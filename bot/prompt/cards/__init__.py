"""Character cards: SillyTavern V1/V2/V3 from JSON, YAML, PNG (``chara``/``ccv3`` text
chunks; ``ccv3`` wins) and CHARX, plus the Pygmalion, ooba and Agnai shapes; export to V3 JSON
and to PNG with both chunks.

Every failure is a :class:`CardError` naming the file and the field or chunk, e.g.
``card.json: data.name: missing``.
"""

from bot.prompt.cards.charx import parse_charx, read_charx_assets
from bot.prompt.cards.export import card_to_dict, export_json, export_png
from bot.prompt.cards.loader import load_card, parse_card
from bot.prompt.cards.model import (
    MAX_ASSET_BYTES,
    MAX_CARD_BYTES,
    MAX_CHARX_BYTES,
    MAX_CHARX_ENTRIES,
    MAX_CHARX_UNCOMPRESSED,
    MAX_TEXT_CHUNK,
    MAX_YAML_BYTES,
    Asset,
    CardError,
    Character,
    DepthPrompt,
)

__all__ = [
    "MAX_ASSET_BYTES",
    "MAX_CARD_BYTES",
    "MAX_CHARX_BYTES",
    "MAX_CHARX_ENTRIES",
    "MAX_CHARX_UNCOMPRESSED",
    "MAX_TEXT_CHUNK",
    "MAX_YAML_BYTES",
    "Asset",
    "CardError",
    "Character",
    "DepthPrompt",
    "card_to_dict",
    "export_json",
    "export_png",
    "load_card",
    "parse_card",
    "parse_charx",
    "read_charx_assets",
]
