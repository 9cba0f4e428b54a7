"""Group chats in the engine: the ``group`` commands, and turns answered by several members.

A user's message in a group channel starts a *batch*: :func:`choose_speakers` picks who
answers, in order, and each one's reply is streamed as its own message under its name and
stored (``name`` = the member, ``extra["batch"]`` = the id of the message the batch answers),
so each later speaker of the batch sees the earlier replies. A stop ends the whole batch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from bot.engine.cast import Cast, Casting, dump_group, load_group
from bot.engine.groups import Group, GroupError, Strategy
from bot.engine.reply import Replier
from bot.engine.speakers import Trigger, choose_speakers, last_batch
from bot.errors import BotError, LockLost, UserFacingError
from bot.prompt.group_prompt import CardMode, group_greetings
from bot.state import store as ops
from bot.state.store import Op, TurnState
from bot.types import ChatKey, ChatMessage

_E = TypeVar("_E", Strategy, CardMode)
Notice = Callable[[ChatKey, str], Awaitable[None]]
Deliver = Callable[[ChatKey, str], Awaitable[list[str]]]

USAGE = (
    "group commands: add NAME, remove NAME, mute NAME, unmute NAME, "
    "strategy natural|list|manual|pooled, mode swap|join|join_all, narrator NAME|off, off"
)


def speaker_label(name: str) -> str:
    """What goes before a group member's message, so users see who speaks."""
    return f"{name}: "


class GroupTurns:
    def __init__(
        self,
        replier: Replier,
        casting: Casting,
        notice: Notice,
        deliver: Deliver,
        rng: random.Random | None = None,
    ) -> None:
        self._replier = replier
        self._casting = casting
        self._notice = notice
        self._deliver = deliver
        self._rng = rng or random.Random()

    # --- turns ----------------------------------------------------------------------------

    async def batch(
        self,
        state: TurnState,
        history: Sequence[ChatMessage],
        user_name: str,
        cast: Cast,
        trigger: Trigger,
        *,
        trigger_text: str = "",
        forced: str | None = None,
    ) -> list[Op]:
        """Replies by the members the group's strategy picks; their append ops."""
        assert cast.group is not None
        speakers = choose_speakers(
            cast.group,
            trigger_text=trigger_text,
            history=history,
            trigger=trigger,
            forced=forced,
            rng=self._rng,
            talkativeness=cast.talkativeness(),
        )
        batch = history[-1].id if history else 0
        seen = list(history)
        writes: list[Op] = []
        for name in speakers:
            if name not in cast.cards:  # its card was removed from the config: skip it
                continue
            try:
                made = await self._replier.generate(
                    state, seen, user_name, cast.speaking(name), label=speaker_label(name)
                )
            except LockLost:
                raise
            except BotError as exc:  # keep the replies made so far; say why the rest is not
                await self._notice(state.key, exc.user_message())
                break
            message = made.message
            if message is not None:
                message.extra["batch"] = batch
                writes.append(ops.append(message))
                seen.append(message)
            if message is None or made.stopped:
                break  # stopped, or failed (the user saw why; the next one would fail alike)
        return writes

    async def regenerate(self, state: TurnState, user_name: str, cast: Cast) -> list[Op]:
        """Delete the last batch of replies, then let the strategy choose again."""
        by_id = {m.id: m for m in state.history}
        # greetings open the chat; a regenerate never takes them away
        doomed = {i for i in last_batch(state.history) if not by_id[i].meta.get("greeting")}
        if not doomed and (not state.history or state.history[-1].role != "user"):
            raise UserFacingError("There is nothing to regenerate yet.")
        kept = [m for m in state.history if m.id not in doomed]
        writes = [ops.delete(i) for i in sorted(doomed)]
        trigger: Trigger = "regenerate" if doomed else "user"
        text = kept[-1].text if kept and kept[-1].role == "user" else ""
        return writes + await self.batch(
            state, kept, user_name, cast, trigger, trigger_text="" if doomed else text
        )

    async def talk(self, state: TurnState, user_name: str, cast: Cast, text: str) -> list[Op]:
        """``talk NAME``: that speaker replies now (even when muted); ``talk`` alone lets the
        strategy pick one, as an empty send does in SillyTavern."""
        assert cast.group is not None
        if not text.strip():
            return await self.batch(state, state.history, user_name, cast, "auto")
        name = cast.group.find(text) or _by_card_name(cast.group, self._casting, text)
        if name is None or name not in cast.cards:
            raise UserFacingError(
                f"Nobody called {text.strip()!r} is in the group; "
                f"members: {', '.join(cast.group.speakers)}."
            )
        return await self.batch(state, state.history, user_name, cast, "force", forced=name)

    def speaker(self, state: TurnState, cast: Cast, trigger: Trigger) -> Cast:
        """The member a swipe, continue or impersonation goes to."""
        assert cast.group is not None
        chosen = choose_speakers(cast.group, history=state.history, trigger=trigger, rng=self._rng)
        if not chosen and trigger == "impersonate":
            raise UserFacingError("Every member of the group is muted; unmute one first.")
        if not chosen or chosen[0] not in cast.cards:
            author = state.history[-1].name if state.history else "That character"
            raise UserFacingError(
                f"{author} is muted or no longer in the group (`group unmute {author}`)."
            )
        return cast.speaking(chosen[0])

    def greetings(self, cast: Cast, user_name: str) -> list[ChatMessage]:
        """The greetings of a new group chat, in order (not yet delivered)."""
        assert cast.group is not None
        found = group_greetings(cast.group, cast.cards, user_name=user_name, rng=self._rng)
        now = time.time()
        return [g.message(now) for g in found]

    async def greet(self, state: TurnState, cast: Cast, user_name: str) -> list[Op]:
        """Deliver and store the greetings of a new group chat, each under its speaker."""
        writes: list[Op] = []
        for greeting in self.greetings(cast, user_name):
            label = speaker_label(greeting.name)
            greeting.platform_ids = await self._deliver(state.key, label + greeting.text)
            writes.append(ops.append(greeting))
        return writes

    # --- the group command ----------------------------------------------------------------

    async def command(self, state: TurnState, text: str) -> list[Op]:
        """``group …``: change the channel's group; the change is one setting write."""
        verb, _, arg = text.strip().partition(" ")
        verb, arg = verb.lower(), arg.strip()
        group = load_group(state.settings)
        if verb in ("", "show"):
            await self._notice(state.key, describe(group))
            return []
        if verb == "off":
            await self._notice(state.key, "Group chat off: the channel's character talks alone.")
            return [ops.set_setting("group", "")]
        if verb == "add":
            group = self._add(state, group, _need(arg, "add NAME"))
        elif group is None:
            raise UserFacingError("This channel has no group yet; `group add NAME` starts one.")
        elif verb == "remove":
            name = _member(group, self._casting, arg)
            members = tuple(m for m in group.members if m != name)
            if not members:
                await self._notice(state.key, f"Removed {name}; the group is empty, so it is off.")
                return [ops.set_setting("group", "")]
            narrator = None if group.narrator == name else group.narrator
            group = replace(group, members=members, muted=group.muted - {name}, narrator=narrator)
        elif verb in ("mute", "unmute"):
            group = group.with_muted(_member(group, self._casting, arg), verb == "mute")
        elif verb == "strategy":
            group = replace(group, strategy=_choice(Strategy, arg, "strategy"))
        elif verb == "mode":
            group = replace(group, generation_mode=_choice(CardMode, arg, "mode"))
        elif verb == "narrator":
            narrator = None if arg.lower() in ("", "off") else self._casting.card_name(arg)
            group = replace(group, narrator=narrator)
        else:
            raise UserFacingError(USAGE)
        await self._notice(state.key, describe(group))
        return [ops.set_setting("group", dump_group(group))]

    def _add(self, state: TurnState, group: Group | None, typed: str) -> Group:
        name = self._casting.card_name(typed)
        if group is None:  # the channel's own character is the first member
            first = self._casting.one(state.settings).name
            return Group("Group", tuple(dict.fromkeys((first, name))))
        if name in group.members:
            raise UserFacingError(f"{name} is already in the group.")
        return replace(group, members=(*group.members, name))


def describe(group: Group | None) -> str:
    if group is None:
        return "No group in this channel: `group add NAME` adds a character to talk with."
    members = ", ".join(f"{m} (muted)" if m in group.muted else m for m in group.members)
    line = (
        f"Group: {members} · turn order {group.strategy.value} · "
        f"cards {group.generation_mode.value}"
    )
    return line + (f" · narrator {group.narrator}" if group.narrator else "")


def _need(arg: str, usage: str) -> str:
    if not arg:
        raise UserFacingError(f"Say whom: `group {usage}`.")
    return arg


def _member(group: Group, casting: Casting, typed: str) -> str:
    name = group.find(_need(typed, "remove|mute|unmute NAME"))
    name = name or _by_card_name(group, casting, typed)
    if name is None or name not in group.members:
        raise GroupError(f"{typed} is not a member of the group ({', '.join(group.members)}).")
    return name


def _by_card_name(group: Group, casting: Casting, typed: str) -> str | None:
    """A speaker typed by library key (``seraphina`` for "Seraphina")."""
    try:
        name = casting.card_name(typed)
    except BotError:
        return None
    return name if name in group.speakers else None


def _choice(kind: type[_E], typed: str, label: str) -> _E:
    try:
        return kind(typed.strip().lower())
    except ValueError:
        choices = "|".join(m.value for m in kind)
        raise UserFacingError(f"`group {label} {choices}`") from None
