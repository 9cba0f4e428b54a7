"""Character cards (kept importable here; the code lives in :mod:`bot.prompt.cards`)."""

from bot.prompt.cards import (
    MAX_CARD_BYTES,
    MAX_TEXT_CHUNK,
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

__all__ = [
    "MAX_CARD_BYTES",
    "MAX_TEXT_CHUNK",
    "Asset",
    "CardError",
    "Character",
    "DepthPrompt",
    "card_to_dict",
    "export_json",
    "export_png",
    "load_card",
    "parse_card",
]
