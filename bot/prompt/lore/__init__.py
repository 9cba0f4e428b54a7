"""World info (lorebooks): SillyTavern's activation engine, pure and I/O-free.

Typical use by the prompt builder::

    book = load_world(path.read_bytes(), source=str(path))          # or from_character_book
    settings = LoreSettings.from_st(st_settings["world_info_settings"])
    scan = scan_texts(history, settings)                              # newest first
    result = activate(
        LoreBooks(character=(book,)), scan, settings,
        max_context=context_size - response_tokens,                   # ST's "max context"
        counter=counter, state=LoreState.from_json(stored), chat_length=len(history),
        rng=random.Random(), names=(user_name, char_name),
    )
    stored = result.state.to_json()
    # result.before / result.after -> around the character definitions (wiBefore / wiAfter)
    # result.depth -> in-chat Injections; result.authors_note(an_text) -> AN with lore around it

Everything SillyTavern 1.12.6 does in ``checkWorldInfo`` is reproduced in its order (see
:mod:`bot.prompt.lore.activation`), plus the newer fields (ignoreBudget, outlets, triggers,
additional matching sources) and the CCv3 ``@@decorators``.
"""

from bot.prompt.lore.activation import LoreBooks, LoreContext, activate, scan_texts
from bot.prompt.lore.loading import from_character_book, load_world
from bot.prompt.lore.model import (
    Decorator,
    Lorebook,
    LoreEntry,
    LoreError,
    LorePosition,
    LoreSettings,
    SelectiveLogic,
    Strategy,
)
from bot.prompt.lore.result import LoreResult, ScanText
from bot.prompt.lore.scanning import MatchSources
from bot.prompt.lore.state import LoreState, TimedEffect

__all__ = [
    "Decorator",
    "LoreBooks",
    "LoreContext",
    "LoreEntry",
    "LoreError",
    "LorePosition",
    "LoreResult",
    "LoreSettings",
    "LoreState",
    "Lorebook",
    "MatchSources",
    "ScanText",
    "SelectiveLogic",
    "Strategy",
    "TimedEffect",
    "activate",
    "from_character_book",
    "load_world",
    "scan_texts",
]
