"""What an activation returns, and the placement step that routes entries to positions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.prompt.injection import Injection, Position
from bot.prompt.lore.model import DEFAULT_DEPTH, LoreEntry, LorePosition
from bot.prompt.lore.state import LoreState
from bot.types import Role

ScanText = str
"""One chat message as SillyTavern scans it: ``"Name: text"`` (or the bare text when
``include_names`` is off). :func:`bot.prompt.lore.scan_texts` makes them from history."""


@dataclass(frozen=True, slots=True)
class LoreResult:
    """The activated lore, routed to its prompt positions.

    ``before``/``after`` are wiBefore/wiAfter (entries joined with a newline, ascending
    ``order``). ``an_top``/``an_bottom`` go around the author's note — only when it is
    inserted this turn (:meth:`authors_note` does SillyTavern's join). ``em_top``/
    ``em_bottom`` are raw example-message texts (each may hold several ``<START>`` blocks) in
    the order they land around the card's examples. ``depth`` holds one in-chat
    :class:`Injection` per (depth, role), keyed like ST's ``customDepthWI-<depth>-<role>``.
    ``outlets`` maps outlet names to their joined text for ``{{outlet::name}}`` (highest
    ``order`` first, as ST builds it).
    ``activated`` lists (book, uid) in activation order; ``trace`` says why each entry was or
    was not used (for the ``prompt`` debug command); ``state`` is the new timer state to store.
    """

    before: str = ""
    after: str = ""
    an_top: tuple[str, ...] = ()
    an_bottom: tuple[str, ...] = ()
    em_top: tuple[str, ...] = ()
    em_bottom: tuple[str, ...] = ()
    depth: tuple[Injection, ...] = ()
    outlets: Mapping[str, str] = field(default_factory=dict)
    activated: tuple[tuple[str, int | str], ...] = ()
    automation_ids: tuple[str, ...] = ()  # of activated entries, first occurrence each
    trace: tuple[str, ...] = ()
    state: LoreState = field(default_factory=LoreState)
    budget: int = 0  # tokens the lore could use
    used_tokens: int = 0  # tokens of the activated lore as the budget check counted them
    overflowed: bool = False  # the budget stopped further entries

    def authors_note(self, note: str) -> str:
        """The author's note with ANTop/ANBottom lore around it, joined as ST does."""
        if not self.an_top and not self.an_bottom:
            return note
        text = "\n".join(self.an_top) + "\n" + note + "\n" + "\n".join(self.an_bottom)
        # ST then removes one newline at each end (not more: its pattern has no m flag)
        if text.startswith("\n"):
            text = text[1:]
        if text.endswith("\n"):
            text = text[:-1]
        return text


Transform = Callable[[LoreEntry, str], str]


@dataclass(frozen=True, slots=True)
class Placement:
    """The positional part of a :class:`LoreResult`."""

    before: str
    after: str
    an_top: tuple[str, ...]
    an_bottom: tuple[str, ...]
    em_top: tuple[str, ...]
    em_bottom: tuple[str, ...]
    depth: tuple[Injection, ...]
    outlets: Mapping[str, str]


def place(
    activated: Sequence[LoreEntry],
    contents: Mapping[tuple[str, int | str], str],
    transform: Transform | None,
    trace: list[str],
) -> Placement:
    """Route activated entries to their positions, as ST's "BUILDING PROMPT" step does.

    Entries are visited by ``order`` descending (stable) and prepended to each bucket, so each
    bucket reads in ascending ``order`` and equal orders come out in reverse activation order.
    """
    before: list[str] = []
    after: list[str] = []
    an_top: list[str] = []
    an_bottom: list[str] = []
    em: list[tuple[bool, str]] = []  # (is_top, text), ascending order
    depth_groups: list[tuple[int, int, list[str], list[float]]] = []
    outlets: dict[str, list[str]] = {}
    for entry in sorted(activated, key=lambda e: -e.order):
        text = contents[entry.ident]
        if transform is not None:
            text = transform(entry, text)
        if not text:
            trace.append(f"{entry.label}: empty content, not placed")
            continue
        pos = entry.position
        if pos == LorePosition.BEFORE:
            before.insert(0, text)
        elif pos == LorePosition.AFTER:
            after.insert(0, text)
        elif pos == LorePosition.EM_TOP:
            em.insert(0, (True, text))
        elif pos == LorePosition.EM_BOTTOM:
            em.insert(0, (False, text))
        elif pos == LorePosition.AN_TOP:
            an_top.insert(0, text)
        elif pos == LorePosition.AN_BOTTOM:
            an_bottom.insert(0, text)
        elif pos == LorePosition.AT_DEPTH:
            _add_depth(depth_groups, entry, text)
        elif pos == LorePosition.OUTLET:
            if not entry.outlet_name:
                trace.append(f"{entry.label}: outlet position without an outlet name, skipped")
                continue
            # ST appends here (its one bucket in descending order) and keys by the name as
            # written: {{outlet::name}} trims its argument, so a padded name never matches
            outlets.setdefault(entry.outlet_name, []).append(text)
        else:
            trace.append(f"{entry.label}: unknown position {pos}, not placed")
    # ST walks its example list in ascending order, unshifting "top" blocks (so the last
    # unshifted, the highest order, ends up first) and pushing "bottom" ones
    em_top = tuple(reversed([t for top, t in em if top]))
    em_bottom = tuple(t for top, t in em if not top)
    injections = tuple(
        Injection(
            key=f"customDepthWI-{depth}-{role}",
            text="\n".join(texts),
            position=Position.IN_CHAT,
            depth=depth,
            role=_role(role),
            order=int(max(orders)),
        )
        for depth, role, texts, orders in depth_groups
    )
    return Placement(
        before="\n".join(before),
        after="\n".join(after),
        an_top=tuple(an_top),
        an_bottom=tuple(an_bottom),
        em_top=em_top,
        em_bottom=em_bottom,
        depth=injections,
        outlets={k: "\n".join(v) for k, v in outlets.items()},
    )


def _add_depth(
    groups: list[tuple[int, int, list[str], list[float]]], entry: LoreEntry, text: str
) -> None:
    depth = entry.depth if entry.depth >= 0 else DEFAULT_DEPTH
    for d, r, texts, orders in groups:
        if d == depth and r == entry.role:
            texts.insert(0, text)
            orders.append(entry.order)
            return
    groups.append((depth, entry.role, [text], [entry.order]))


def _role(role: int) -> Role:
    """ST's extension-prompt role number (0 system, 1 user, 2 assistant); others: system."""
    if role == 1:
        return "user"
    if role == 2:
        return "assistant"
    return "system"
