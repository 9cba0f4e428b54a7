"""A new chat's greeting: the card's first message and its alternates, as swipes."""

from __future__ import annotations

from bot.prompt.card import Character
from bot.prompt.macros import MacroContext, expand


def greeting_swipes(character: Character, user_name: str) -> list[str]:
    """``first_mes`` then ``alternate_greetings``, macro-expanded, empty ones dropped.

    The engine stores them as the chat's first assistant message (swipe 0 selected). They are
    expanded once, here, with the name of the user who opened the chat: in a channel many
    people share, re-expanding on every turn would rename the greeting's addressee each time.
    An empty list means the card has no greeting.
    """
    ctx = MacroContext(user=user_name, char=character.name)
    texts = (character.first_mes, *character.alternate_greetings)
    # carriage returns dropped, as SillyTavern does for all card text
    return [text for t in texts if (text := expand(t, ctx).replace("\r", "").strip())]
