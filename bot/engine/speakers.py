"""Who of a group answers a turn: SillyTavern's reply-order rules, pure, randomness injected
(see :mod:`bot.engine.groups` for the rules in words)."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Literal

from bot.engine.groups import DEFAULT_TALKATIVENESS, Group, Strategy, words
from bot.types import ChatMessage

Trigger = Literal[
    "user", "auto", "regenerate", "swipe", "continue", "impersonate", "quiet", "force"
]


def choose_speakers(
    group: Group,
    *,
    trigger_text: str = "",
    history: Sequence[ChatMessage] = (),
    trigger: Trigger = "user",
    forced: str | None = None,
    rng: random.Random,
    talkativeness: Mapping[str, float] | None = None,
) -> list[str]:
    """Who replies to this turn, in reply order (each name once; may be empty).

    ``trigger``: ``user`` — a user's message ``trigger_text`` (empty text counts as an empty
    send, like SillyTavern); ``auto`` — auto-mode or an empty send ("next"); ``regenerate`` —
    after the last batch was deleted (SillyTavern re-runs the strategy as a normal turn
    without input); ``swipe``/``continue`` — the last message's author; ``impersonate`` — a
    random member (whose card writes the user's line); ``quiet`` — the last speaker, else the
    first member; ``force`` — ``forced``, even when muted (the narrator too).

    For non-user triggers the activation text is ``trigger_text`` or, when empty, the last
    message's text. ``history`` is oldest first; whether it already holds the new user
    message makes no difference. ``talkativeness`` maps names to 0..1 (default 0.5).
    Names in the result are always :attr:`Group.speakers`; muted members only when forced.
    """
    last = history[-1] if history else None
    if trigger == "force":
        return [forced] if forced is not None and forced in group.speakers else []
    if trigger in ("swipe", "continue"):
        if not history:
            return []
        author = _last_author(history)
        if author is None:  # no character has spoken yet
            return [rng.choice(group._pool)] if group._pool else []
        return [author] if _may_speak(group, author) else []
    pool = group._pool
    if not pool and trigger != "quiet":
        return []
    if trigger == "impersonate":
        return [rng.choice(pool)]
    if trigger == "quiet":
        author = _last_author(history)
        if author is not None and _may_speak(group, author):
            return [author]
        return list(pool[:1])
    user_input = trigger == "user" and bool(trigger_text)
    text = trigger_text
    if not user_input and not text and last is not None and not _is_system(last):
        text = last.text
    strategy = group.strategy
    if strategy is Strategy.LIST:
        return list(pool)
    if strategy is Strategy.MANUAL:
        return [] if user_input else [rng.choice(pool)]
    if strategy is Strategy.POOLED:
        return [_pooled(pool, history, user_input, rng)]
    banned = None
    if not user_input and last is not None and last.role != "user":
        banned = None if group.allow_self_responses else last.name
    return _natural(pool, text, banned, rng, talkativeness or {})


def _natural(
    pool: tuple[str, ...],
    text: str,
    banned: str | None,
    rng: random.Random,
    talkativeness: Mapping[str, float],
) -> list[str]:
    chosen: list[str] = []
    candidates = [m for m in pool if m != banned]
    if text:
        name_words = {m: set(words(m)) for m in candidates}
        for word in words(text):
            # each word activates at most one member: the first in list order
            hit = next((m for m in candidates if word in name_words[m]), None)
            if hit is not None:
                chosen.append(hit)
    chatty: list[str] = []
    shuffled = list(pool)
    rng.shuffle(shuffled)
    for member in shuffled:
        if member == banned:
            continue
        roll = rng.random()
        value = talkativeness.get(member, DEFAULT_TALKATIVENESS)
        if math.isnan(value):
            value = DEFAULT_TALKATIVENESS
        if value >= roll:
            chosen.append(member)
        if value > 0:
            chatty.append(member)
    if not chosen:
        # SillyTavern falls back to every member (the banned one too) when nobody is chatty
        chosen.append(rng.choice(chatty or pool))
    return list(dict.fromkeys(chosen))


def _pooled(
    pool: tuple[str, ...], history: Sequence[ChatMessage], user_input: bool, rng: random.Random
) -> str:
    spoken: set[str] = set()
    if not user_input:
        for message in reversed(history):
            if message.role == "user":
                break
            if not _is_system(message):
                spoken.add(message.name)
    waiting = [m for m in pool if m not in spoken]
    if waiting:
        return rng.choice(waiting)
    last = history[-1] if history else None
    if len(pool) > 1 and last is not None and last.role != "user":
        return rng.choice([m for m in pool if m != last.name] or pool)
    return rng.choice(pool)


def _last_author(history: Sequence[ChatMessage]) -> str | None:
    """SillyTavern's ``activateSwipe``: the last message's author, or past user and system
    messages the latest character's; None when no character has spoken."""
    for message in reversed(history):
        if message.role != "user" and not _is_system(message):
            return message.name
    return None


def last_batch(history: Sequence[ChatMessage]) -> list[int]:
    """Ids of the last batch of replies, which a group regenerate deletes before choosing
    again (SillyTavern's ``regenerateGroup``): the trailing messages that share the last
    one's ``extra["batch"]`` when the engine marks batches, else every trailing message up
    to the last user or system one."""
    if not history or history[-1].role == "user" or _is_system(history[-1]):
        return []
    batch = history[-1].extra.get("batch")
    out: list[int] = []
    for message in reversed(history):
        if message.role == "user" or _is_system(message):
            break
        if batch is not None and message.extra.get("batch") != batch:
            break
        out.append(message.id)
    return out[::-1]


def _may_speak(group: Group, name: str) -> bool:
    return name in group.speakers and name not in group.muted


def _is_system(message: ChatMessage) -> bool:
    """SillyTavern's ``is_system``: system notes and hidden messages."""
    return message.role == "system" or bool(message.extra.get("hidden"))
