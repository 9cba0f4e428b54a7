"""The turns that make a reply: a user's message, regenerate, swipes, continue,
impersonate, greetings and the prompt preview — in a one-on-one chat or, through
:class:`~bot.engine.group_turns.GroupTurns`, a group chat. Each returns its turn's writes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from bot.engine.cast import Cast, Casting
from bot.engine.group_turns import GroupTurns, speaker_label
from bot.engine.output import SUGGESTION, script_macros
from bot.engine.reply import Replier
from bot.engine.speakers import Trigger
from bot.errors import UserFacingError
from bot.prompt.greeting import greeting_swipes
from bot.state import store as ops
from bot.state.store import ChatStore, Op, TurnState
from bot.types import ChatKey, ChatMessage

Notice = Callable[[ChatKey, str], Awaitable[None]]
Deliver = Callable[[ChatKey, str], Awaitable[list[str]]]
UserName = Callable[[TurnState], str]


class ReplyTurns:
    def __init__(
        self,
        store: ChatStore,
        replier: Replier,
        casting: Casting,
        groups: GroupTurns,
        notice: Notice,
        deliver: Deliver,
        user_name: UserName,
    ) -> None:
        self._store = store
        self._replier = replier
        self._casting = casting
        self._groups = groups
        self._notice = notice
        self._deliver = deliver
        self._user_name = user_name

    async def message(self, state: TurnState) -> list[Op]:
        cast = self._casting.of(state.settings)
        history = self._scripted_input(state, cast)
        user = self._user_name(state)
        writes: list[Op] = []
        if len(history) == 1:  # the first message of a chat: the greetings come first
            await self._store.register_channel(state.key)  # idempotent; for server usage
            greetings = self._greetings(cast, user)
            writes.extend(ops.prepend(g) for g in reversed(greetings))
            history = [*greetings, *history]
        if cast.group is not None:
            text = history[-1].text
            return writes + await self._groups.batch(
                state, history, user, cast, "user", trigger_text=text
            )
        made = await self._replier.generate(state, history, user, cast)
        if made.message is not None:
            writes.append(ops.append(made.message))
        return writes

    async def regenerate(self, state: TurnState) -> list[Op]:
        last = state.history[-1] if state.history else None
        cast = self._casting.of(state.settings)
        if cast.group is not None:
            return await self._groups.regenerate(state, self._user_name(state), cast)
        if last is None:
            raise UserFacingError("There is nothing to regenerate yet.")
        if last.role != "assistant":
            made = await self._replier.generate(
                state, state.history, self._user_name(state), cast, kind="regenerate"
            )
            return [ops.append(made.message)] if made.message else []
        return await self._new_swipe(state, self._last_reply(state))

    async def swipe_right(self, state: TurnState) -> list[Op]:
        last = self._last_reply(state)
        if last.swipe_id + 1 < len(last.swipes):
            return await self._show_swipe(state, last, last.swipe_id + 1)
        return await self._new_swipe(state, last)

    async def swipe_left(self, state: TurnState) -> list[Op]:
        last = self._last_reply(state)
        if last.swipe_id == 0:
            raise UserFacingError("This is the first version of the reply.")
        return await self._show_swipe(state, last, last.swipe_id - 1)

    async def continue_(self, state: TurnState) -> list[Op]:
        last = self._last_reply(state)
        cast, label = self._speaker(state, "continue")
        made = await self._replier.generate(
            state, state.history, self._user_name(state), cast, continue_from=last, label=label
        )
        reply = made.message
        if reply is None:
            return []
        old = last.swipe_meta[last.swipe_id]
        last.text = last.swipes[last.swipe_id] = reply.text
        if "reasoning" in old and "reasoning" not in reply.meta:  # the first part's thoughts
            reply.meta["reasoning"] = old["reasoning"]
        last.swipe_meta[last.swipe_id] = reply.meta
        return [ops.replace(last)]

    async def impersonate(self, state: TurnState) -> list[Op]:
        """A suggested next message for the user, written by the model; never stored."""
        cast, _ = self._speaker(state, "impersonate")
        await self._replier.generate(
            state,
            state.history,
            self._user_name(state),
            cast,
            kind="impersonate",
            label=SUGGESTION,
        )
        return []  # token usage and lore timers are in state.pending

    async def prompt(self, state: TurnState) -> list[Op]:
        cast = self._casting.of(state.settings)
        preview = await self._replier.preview(state, self._user_name(state), cast)
        await self._notice(state.key, preview)
        return []

    async def greet_once(self, state: TurnState) -> list[Op]:
        return [] if state.history else await self.greet(state)

    def _last_reply(self, state: TurnState) -> ChatMessage:
        if not state.history or state.history[-1].role != "assistant":
            raise UserFacingError("The last message is not a reply from the character.")
        last = state.history[-1].copy()  # history entries are shared, decoded once
        if not last.swipes:
            last.swipes, last.swipe_meta, last.swipe_id = [last.text], [{}], 0
        while len(last.swipe_meta) < len(last.swipes):
            last.swipe_meta.append({})
        return last

    async def _show_swipe(self, state: TurnState, last: ChatMessage, index: int) -> list[Op]:
        last.swipe_id = index
        last.text = last.swipes[index]
        cast = self._casting.of(state.settings)
        label = speaker_label(last.name) if cast.group is not None else ""
        if cast.group is not None and last.name in cast.cards:
            cast = cast.speaking(last.name)
        macros = script_macros(self._user_name(state), cast.name)
        shown = self._replier.scripts(cast).shown(last.text, macros)
        await self._deliver(state.key, f"{label}({index + 1}/{len(last.swipes)}) {shown}")
        return [ops.replace(last)]

    async def _new_swipe(self, state: TurnState, last: ChatMessage) -> list[Op]:
        cast, label = self._speaker(state, "swipe")
        made = await self._replier.generate(
            state, state.history[:-1], self._user_name(state), cast, kind="swipe", label=label
        )
        reply = made.message
        if reply is None:
            return []
        last.swipes.append(reply.text)
        last.swipe_meta.append(reply.meta)
        last.swipe_id = len(last.swipes) - 1
        last.text = reply.text
        last.platform_ids = reply.platform_ids
        return [ops.replace(last)]

    def _speaker(self, state: TurnState, trigger: Trigger) -> tuple[Cast, str]:
        """Who a swipe, continue or impersonation is written by, and its label."""
        cast = self._casting.of(state.settings)
        if cast.group is None:
            return cast, ""
        cast = self._groups.speaker(state, cast, trigger)
        return cast, speaker_label(cast.name)

    def _scripted_input(self, state: TurnState, cast: Cast) -> list[ChatMessage]:
        """The history with user-input regex scripts run on the new message; the change is
        stored with this turn (in ``pending``, so a failed reply does not undo it)."""
        history = state.history
        scripts = self._replier.scripts(cast, everyone=True)
        if not scripts.stored or not history or history[-1].role != "user":
            return history
        message = history[-1]
        text = scripts.user_input(message.text, script_macros(message.name, cast.name))
        if text == message.text:
            return history
        changed = message.copy()  # history entries are shared, decoded once
        changed.text = text
        state.pending.append(ops.replace(changed))
        return [*history[:-1], changed]

    async def greet(self, state: TurnState) -> list[Op]:
        """Deliver and store the greeting(s) of a new chat."""
        cast = self._casting.of(state.settings)
        if cast.group is not None:
            return await self._groups.greet(state, cast, self._user_name(state))
        writes = []
        user = self._user_name(state)
        for greeting in self._greetings(cast, user):
            shown = self._replier.scripts(cast).shown(
                greeting.text, script_macros(user, cast.name)
            )
            greeting.platform_ids = await self._deliver(state.key, shown)
            writes.append(ops.append(greeting))
        return writes

    def _greetings(self, cast: Cast, user_name: str) -> list[ChatMessage]:
        if cast.group is not None:
            return self._groups.greetings(cast, user_name)
        swipes = greeting_swipes(cast.card, user_name)
        if not swipes or not swipes[0]:
            return []
        meta = [{"greeting": True} for _ in swipes]
        return [
            ChatMessage(
                0,
                "assistant",
                cast.name,
                swipes[0],
                swipes=swipes,
                swipe_meta=meta,
                created=time.time(),
            )
        ]
