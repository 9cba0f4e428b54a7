"""The prompt side of group chats: what the builder needs to answer as one member of a group.

SillyTavern (``getGroupCharacterCards``, ``getGroupDepthPrompts``, ``getStoppingStrings``,
``getGroupChat`` in 1.12.6) does four things differently in a group, all reproduced here as
pure functions over cards:

- **card fields** — *swap* uses the speaker's own card; *join* puts every member's
  description, personality, scenario and example messages into the one card, each wrapped as
  ``prefix + sep + value + sep + suffix`` (``sep`` = "\\n" when the instruct template wraps,
  prefix/suffix and their ``sep`` only when not empty, ``<FIELDNAME>`` the field's label,
  ``{{char}}`` that member), members joined with "\\n"; muted members are left out unless
  they speak or the mode includes them;
- **Character's Notes** — in join modes one in-chat injection per member
  (``DEPTH_PROMPT_0``…, unmuted members and the speaker) instead of the speaker's own;
- **the group nudge** (chat completion) — "[Write the next reply only as {{char}}.]" after
  the history, never when impersonating;
- **stop strings** (text completion) — every other member's ``"\\nName:"``.

The builder already handles the nudge, the "new group chat" marker and the names stop
strings when ``PromptInputs.group`` lists the members; :class:`GroupPromptParts` carries the
values to feed it. Only ``{{char}}`` (and ``<BOT>``/``<CHAR>``) is replaced here, by the
member the text belongs to; every other macro is left for the builder's one expansion pass,
so nothing is expanded twice.

Beyond SillyTavern: a **narrator** (a character that speaks in the third person) always sees
the joined cards of the unmuted members after its own, so it can describe the others, and
gets its own nudge; new group chats use a card's V3 ``group_only_greetings`` when it has
them.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from bot.errors import ConfigError
from bot.prompt.card import Character
from bot.prompt.injection import Injection, Position, role_of
from bot.prompt.macros import CardMacros, MacroContext, expand
from bot.prompt.model import GenerationType
from bot.types import ChatMessage, Role

__all__ = [
    "DEFAULT_GROUP_NUDGE",
    "NARRATOR_JOIN_PREFIX",
    "NARRATOR_NUDGE",
    "CardMode",
    "GroupGreeting",
    "GroupLike",
    "GroupPromptParts",
    "JoinedFields",
    "group_greetings",
    "group_prompt_parts",
    "joined_fields",
    "member_notes",
]

# SillyTavern's default ``group_nudge_prompt``
DEFAULT_GROUP_NUDGE = "[Write the next reply only as {{char}}.]"
NARRATOR_NUDGE = (
    "[Write the next reply only as {{char}}, the narrator, in the third person: describe the "
    "scene and what happens next. Do not speak or act for {{user}}.]"
)
# labels the cards a narrator sees in swap mode, where the group set no wrapper of its own
NARRATOR_JOIN_PREFIX = "[{{char}}: <FIELDNAME>]"

_CHAR = re.compile(r"\{\{\s*char\s*\}\}|<BOT>|<CHAR>", re.IGNORECASE)
_FIELDNAME = re.compile(r"<FIELDNAME>", re.IGNORECASE)
_FIELDS = (
    ("description", "Description"),
    ("personality", "Personality"),
    ("scenario", "Scenario"),
    ("mes_example", "Example Messages"),
)


class CardMode(enum.StrEnum):
    """SillyTavern's ``generation_mode``: 0 swap, 1 join (muted left out), 2 join all."""

    SWAP = "swap"
    JOIN = "join"
    JOIN_ALL = "join_all"


class GroupLike(Protocol):
    """What the prompt side reads of a group (:class:`bot.engine.groups.Group` has it)."""

    @property
    def members(self) -> tuple[str, ...]: ...
    @property
    def muted(self) -> frozenset[str]: ...
    @property
    def generation_mode(self) -> CardMode: ...
    @property
    def join_prefix(self) -> str: ...
    @property
    def join_suffix(self) -> str: ...
    @property
    def narrator(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class JoinedFields:
    description: str = ""
    personality: str = ""
    scenario: str = ""
    mes_example: str = ""


@dataclass(frozen=True, slots=True)
class GroupPromptParts:
    """What one group member's prompt is built from.

    Feed it to the builder as ``PromptInputs(character=card, group=members,
    injections=(*injections, …), chat=replace(preset, group_nudge_prompt=nudge), …)`` and
    the muted set to the macros (``{{groupNotMuted}}``, ``{{notChar}}``). ``card`` is the
    speaker's card with the joined fields in join modes (and no Character's Note of its
    own: ``injections`` carries every member's). ``others`` are everyone else who speaks in
    the group (members, muted ones included, and the narrator), for the clean-up's
    ``other_names``; ``stop`` their ``"\\nName:"`` stop strings. ``nudge`` is a template
    (macros unexpanded), "" when impersonating.
    """

    speaker: str
    card: Character
    members: tuple[str, ...]
    muted: frozenset[str]
    others: tuple[str, ...]
    injections: tuple[Injection, ...] = ()
    nudge: str = DEFAULT_GROUP_NUDGE
    joined: bool = False

    @property
    def stop(self) -> tuple[str, ...]:
        return tuple(f"\n{name}:" for name in self.others)


def group_prompt_parts(
    group: GroupLike,
    speaker: str,
    cards: Mapping[str, Character],
    *,
    generation: GenerationType = "normal",
    wrap: bool = True,
    nudge: str = DEFAULT_GROUP_NUDGE,
    scenario_override: str = "",
) -> GroupPromptParts:
    """The parts for ``speaker``'s reply. ``cards`` maps names to cards (a member without one
    is left out, as SillyTavern skips deleted characters; the speaker's is required).
    ``wrap`` is the instruct template's ``wrap`` (SillyTavern reads it in chat mode too);
    ``nudge`` the preset's group nudge; ``scenario_override`` the chat's scenario, which
    replaces every card's."""
    card = _card(cards, speaker)
    narrating = speaker == group.narrator
    joined = _joined_names(group, speaker) is not None
    if joined:
        fields = joined_fields(group, speaker, cards, wrap=wrap)
        ext = {k: v for k, v in card.extensions.items() if k != "depth_prompt"}
        card = replace(
            card,
            description=fields.description,
            personality=fields.personality,
            scenario=fields.scenario,
            mes_example=fields.mes_example,
            depth_prompt=None,
            extensions=ext,
        )
    if scenario_override.strip():
        card = replace(card, scenario=scenario_override.strip())
    if generation == "impersonate":
        nudge = ""
    elif narrating:
        nudge = NARRATOR_NUDGE
    everyone = [*group.members]
    if group.narrator and group.narrator not in everyone:
        everyone.append(group.narrator)
    return GroupPromptParts(
        speaker=speaker,
        card=card,
        members=tuple(group.members),
        muted=frozenset(group.muted),
        others=tuple(n for n in everyone if n != speaker),
        injections=member_notes(group, speaker, cards) if joined else (),
        nudge=nudge,
        joined=joined,
    )


def _card(cards: Mapping[str, Character], name: str) -> Character:
    card = cards.get(name)
    if card is None:
        raise ConfigError(f"group member {name!r} has no character card")
    return card


def _joined_names(group: GroupLike, speaker: str) -> list[str] | None:
    """Whose cards are joined for ``speaker``'s reply, in order; None in swap mode."""
    mode = group.generation_mode
    narrating = speaker == group.narrator
    if mode is CardMode.SWAP and not narrating:
        return None
    names = [
        m
        for m in dict.fromkeys(group.members)
        if m not in group.muted or m == speaker or mode is CardMode.JOIN_ALL
    ]
    if narrating and speaker not in names:
        names.insert(0, speaker)
    return names


def joined_fields(
    group: GroupLike, speaker: str, cards: Mapping[str, Character], *, wrap: bool = True
) -> JoinedFields:
    """The four joined card fields (``getGroupCharacterCards``). In swap mode — unless the
    narrator speaks — the speaker's own fields, unwrapped."""
    names = _joined_names(group, speaker)
    if names is None:
        card = _card(cards, speaker)
        return JoinedFields(*(getattr(card, attr).strip() for attr, _ in _FIELDS))
    prefix, suffix = group.join_prefix, group.join_suffix
    if group.generation_mode is CardMode.SWAP and not prefix.strip() and not suffix.strip():
        prefix = NARRATOR_JOIN_PREFIX  # the narrator must tell the cards apart
    sep = "\n" if wrap else ""
    out: list[str] = []
    for attr, label in _FIELDS:
        parts = []
        for name in names:
            member = cards.get(name)
            if member is None:
                continue
            value = getattr(member, attr).strip()
            if not value:
                continue
            pre = _member_text(prefix, label, name)
            post = _member_text(suffix, label, name)
            body = _member_text(value, label, name)
            parts.append(
                (pre + sep if pre else "") + body + (sep + post if post else ""),
            )
        out.append("\n".join(p for p in parts if p))
    return JoinedFields(*out)


def _member_text(text: str, label: str, member: str) -> str:
    """``<FIELDNAME>`` first, then ``{{char}}`` as the member; trimmed, carriage returns out
    (SillyTavern's ``customBaseChatReplace``). Other macros wait for the builder."""
    if not text:
        return ""
    return _as_member(_FIELDNAME.sub(lambda _: label, text).strip(), member)


def _as_member(text: str, member: str) -> str:
    return _CHAR.sub(lambda _: member, text).replace("\r", "")


def member_notes(
    group: GroupLike, speaker: str, cards: Mapping[str, Character]
) -> tuple[Injection, ...]:
    """Every member's Character's Note as an in-chat injection (``getGroupDepthPrompts``):
    keys ``DEPTH_PROMPT_<n>`` numbered over the notes found, in member order; muted members
    are left out unless they speak (SillyTavern does so in both join modes)."""
    names = _joined_names(group, speaker)
    if names is None:
        return ()
    out: list[Injection] = []
    for name in names:
        card = cards.get(name)
        if card is None or (name in group.muted and name != speaker):
            continue
        note = _note(card)
        if note is None:
            continue
        text, depth, role = note
        text = _as_member(text.strip(), name)
        if text:
            out.append(Injection(f"DEPTH_PROMPT_{len(out)}", text, Position.IN_CHAT, depth, role))
    return tuple(out)


def _note(card: Character) -> tuple[str, int, Role] | None:
    """The card's Character's Note: the parsed one, else ``extensions.depth_prompt`` read as
    the builder reads it for a one-on-one chat."""
    if card.depth_prompt is not None:
        dp = card.depth_prompt
        return dp.prompt, dp.depth, dp.role
    raw = card.extensions.get("depth_prompt")
    if not isinstance(raw, dict) or not isinstance(raw.get("prompt"), str):
        return None
    depth = raw.get("depth", 4)
    depth = depth if isinstance(depth, int) and not isinstance(depth, bool) else 4
    return raw["prompt"], depth, role_of(raw.get("role", "system"))


# --- greetings -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupGreeting:
    """One member's greeting in a new group chat: every candidate as a swipe, ``chosen`` the
    one shown."""

    speaker: str
    swipes: tuple[str, ...]
    chosen: int = 0
    meta: Mapping[str, object] = field(default_factory=lambda: {"greeting": True})

    @property
    def text(self) -> str:
        return self.swipes[self.chosen]

    def message(self, created: float = 0.0) -> ChatMessage:
        """The history entry to store (id 0: the store numbers it)."""
        return ChatMessage(
            0,
            "assistant",
            self.speaker,
            self.text,
            swipes=list(self.swipes),
            swipe_id=self.chosen,
            swipe_meta=[dict(self.meta) for _ in self.swipes],
            created=created,
        )


def group_greetings(
    group: GroupLike,
    cards: Mapping[str, Character],
    *,
    user_name: str,
    rng: random.Random,
) -> list[GroupGreeting]:
    """The greetings of a new group chat (``getGroupChat``): the narrator's first (when it is
    not a member), then every member's in list order — muted ones too, as SillyTavern does.

    A card's ``group_only_greetings`` replace its ``first_mes`` and ``alternate_greetings``
    when it has any (the V3 spec's intent; 1.12.6 ignores them). One candidate is chosen at
    random; the others stay as swipes. Macros are expanded once, with ``{{char}}`` = that
    member and the group's names; members without a card or a greeting post nothing.
    """
    order: list[str] = []
    if group.narrator and group.narrator not in group.members:
        order.append(group.narrator)
    order.extend(dict.fromkeys(group.members))
    out: list[GroupGreeting] = []
    for name in order:
        card = cards.get(name)
        if card is None:
            continue
        texts: Sequence[str] = [t for t in card.group_only_greetings if t.strip()] or [
            card.first_mes,
            *card.alternate_greetings,
        ]
        ctx = MacroContext(
            user=user_name,
            char=name,
            group=tuple(group.members),
            muted=frozenset(group.muted),
            card=CardMacros.from_card(card),
            rng=rng,
        )
        swipes = tuple(
            s for t in texts if t.strip() and (s := expand(t, ctx).replace("\r", "").strip())
        )
        if swipes:
            out.append(GroupGreeting(name, swipes, rng.randrange(len(swipes))))
    return out
