"""Where injections go: the one placement function both prompt builders use.

In-chat injections (author's note, Character's Note, persona at depth, lore at depth,
prompt-manager prompts with a depth, ``/inject``) are merged per depth and per role into one
pseudo-message each and spliced into the history the way SillyTavern does it
(``doChatInject`` / ``populationInjectionPrompts``): depth 0 is after the last message, depth N
before the N-th last; while continuing, depth 0 moves to depth 1 so the continued message
stays last; at one depth the messages read assistant, user, system (system nearest the end);
an injection deeper than the chat goes before its first message.

Anchors (before / after the story string) join their prompts in key order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from bot.prompt.injection import Injection, Position
from bot.types import Role

T = TypeVar("T")

MAX_INJECTION_DEPTH = 1000
# Spliced into the newest-first list in this order, so system ends up nearest the end.
_SPLICE_ROLES: tuple[Role, ...] = ("system", "user", "assistant")


def _sorted(injections: Iterable[Injection]) -> list[Injection]:
    # prompt-manager prompts first (in their order), then extension prompts by key, as
    # SillyTavern sorts the keys of its extension-prompt map
    return sorted(injections, key=lambda i: (0, i.order, "") if i.manager else (1, 0, i.key))


def joined(injections: Iterable[Injection]) -> str:
    """The text SillyTavern sends for prompts at one place: manager prompts joined, then the
    extension prompts each trimmed, joined by newlines."""
    ordered = _sorted(i for i in injections if i.text)
    manager = "\n".join(i.text for i in ordered if i.manager).strip()
    extension = "\n".join(i.text.strip() for i in ordered if not i.manager).strip()
    return "\n".join(t for t in (manager, extension) if t)


def anchor(injections: Iterable[Injection], position: Position) -> str:
    """The before/after-story-string anchor text: ``"\\n…\\n"`` around the joined prompts
    (``getExtensionPrompt``'s wrap); the caller trims the before-anchor's start as ST does."""
    text = "\n".join(
        i.text.strip() for i in _sorted(injections) if i.position == position and i.text
    )
    if not text:
        return ""
    if not text.startswith("\n"):
        text = "\n" + text
    if not text.endswith("\n"):
        text += "\n"
    return text


def place_in_chat(
    items: Sequence[T],
    injections: Iterable[Injection],
    *,
    continuing: bool,
    make: Callable[[Role, str, tuple[Injection, ...]], T],
) -> tuple[list[T], list[int]]:
    """Splice in-chat ``injections`` into ``items`` (oldest first).

    ``make(role, text, sources)`` builds the pseudo-message for one role at one depth.
    Returns the merged list (oldest first) and the injected positions counted from the newest
    (0 = last) as SillyTavern records them: a position past the chat's start is kept as
    computed, so callers must bound-check it, like ST.
    """
    by_depth: dict[int, list[Injection]] = {}
    for inj in injections:
        if inj.position == Position.IN_CHAT and inj.text and 0 <= inj.depth <= MAX_INJECTION_DEPTH:
            by_depth.setdefault(inj.depth, []).append(inj)
    if not by_depth:
        return list(items), []
    newest_first = list(reversed(items))
    injected: list[int] = []
    inserted = 0
    for depth in sorted(by_depth):
        group = by_depth[depth]
        pseudo: list[T] = []
        for role in _SPLICE_ROLES:
            sources = tuple(i for i in group if i.role == role)
            text = joined(sources)
            if text:
                pseudo.append(make(role, text, sources))
        if not pseudo:
            continue
        at = (1 if continuing and depth == 0 else depth) + inserted
        newest_first[at:at] = pseudo  # past the end it lands at the end (the oldest side)
        injected.extend(range(at, at + len(pseudo)))
        inserted += len(pseudo)
    newest_first.reverse()
    return newest_first, injected
