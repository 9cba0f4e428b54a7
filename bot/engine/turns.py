"""Turns: the engine that serves every channel.

For each inbound event the engine queues it in the channel's Redis inbox; the one caller that
gets the channel lock processes items in order until the inbox is empty (any process can be
that caller, so nothing depends on which process received the event).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from bot.backends.pool import BackendPool
from bot.config import Defaults
from bot.delivery.pacer import Pacer
from bot.delivery.ports import SurfaceFactory
from bot.delivery.stream import Delivery
from bot.engine.characters import CharacterLibrary
from bot.engine.generate import Generation
from bot.engine.prompting import PromptSetup
from bot.engine.reply import Replier
from bot.errors import BotError, LockLost, StateError, UserFacingError
from bot.prompt.greeting import greeting_swipes
from bot.prompt.tokens import TokenCounter
from bot.state import store as ops
from bot.state.store import ChatStore, Item, Op, QueuedAction, TurnState
from bot.types import Action, ChatKey, ChatMessage, Inbound

_log = logging.getLogger(__name__)

Handler = Callable[[TurnState], Awaitable[list[Op]]]


@dataclass(frozen=True, slots=True)
class Limits:
    max_input_chars: int = 16_000


class Engine:
    def __init__(
        self,
        store: ChatStore,
        backends: BackendPool,
        characters: CharacterLibrary,
        surfaces: Mapping[str, SurfaceFactory],
        pacer: Pacer,
        defaults: Defaults,
        counter: TokenCounter,
        limits: Limits = Limits(),
        setup: PromptSetup | None = None,
    ) -> None:
        self.store = store
        self.backends = backends
        self.characters = characters
        self._surfaces = surfaces
        self._pacer = pacer
        self._defaults = defaults
        self._counter = counter
        self._limits = limits
        self._running: dict[ChatKey, Generation] = {}
        setup = setup or PromptSetup(system_prompt=defaults.system_prompt)
        self._replier = Replier(
            store, backends, characters, surfaces, pacer, defaults, counter, self._running, setup
        )
        self._tasks: set[asyncio.Task[None]] = set()  # turns being served
        self._watchers: set[asyncio.Task[None]] = set()  # items queued behind another holder
        self._handlers: dict[Action, Handler] = {
            Action.MESSAGE: self._on_message,
            Action.REGENERATE: self._on_regenerate,
            Action.SWIPE_LEFT: self._on_swipe_left,
            Action.SWIPE_RIGHT: self._on_swipe_right,
            Action.CONTINUE: self._on_continue,
            Action.RESET: self._on_reset,
            Action.RESUME: self._on_resume,
            Action.DELETE_LAST: self._on_delete_last,
            Action.GREET: self._on_greet,
            Action.PROMPT: self._on_prompt,
        }

    # --- entry points ---------------------------------------------------------------------

    async def handle(self, inbound: Inbound) -> None:
        """Submit one event and wait until the turns it started (if any) are done."""
        task = await self.submit(inbound)
        if task is not None:
            await task

    async def submit(self, inbound: Inbound) -> asyncio.Task[None] | None:
        """Queue one event in the channel's inbox, in arrival order, and return at once.

        If this call got the channel, the queue is served by a tracked background task,
        which is returned; otherwise the current holder (in any process) will answer it.
        """
        key = inbound.key
        if inbound.action is Action.STOP:
            await self.stop(key)
            return None
        try:
            state = await self.store.enqueue(key, self._item(inbound))
        except BotError as exc:
            await self.notice(key, exc.user_message())
            return None
        if state is None:
            # Queued behind a holder. If that holder dies (or its last commit was lost to a
            # Redis outage) the lock expires with our item still queued: look again then.
            self._track(self._watch(key), self._watchers)
            return None
        return self._track(self._drain(state), self._tasks)

    @staticmethod
    def _track(
        work: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]
    ) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def _watch(self, key: ChatKey, tries: int = 3) -> None:
        for _ in range(tries):
            await asyncio.sleep(self.store.lock_ttl)
            try:
                state = await self.store.acquire(key)
            except StateError:
                continue
            if state is not None:
                await self._track(self._drain(state), self._tasks)
                return
            if not await self.store.queued(key):
                return

    async def idle(self) -> None:
        """Wait for every turn this process is serving."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop what is generating (partial replies are kept) and wait for the turns."""
        for watcher in list(self._watchers):
            watcher.cancel()
        for generation in list(self._running.values()):
            generation.stop()
        await self.idle()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    def busy(self, key: ChatKey) -> bool:
        """Whether this process is generating a reply in ``key`` right now."""
        return key in self._running

    async def stop(self, key: ChatKey) -> None:
        """Stop the reply being generated in ``key``, in this process or another."""
        running = self._running.get(key)
        if running is not None:
            running.stop()
        try:
            await self.store.request_stop(key)
        except StateError as exc:
            _log.warning("could not signal stop for %s: %s", key, exc)

    async def notice(self, key: ChatKey, text: str) -> None:
        """A message to the channel (errors, hints, reports), split to fit; never raises."""
        try:
            await self._deliver(key, text)
        except Exception:
            _log.exception("could not deliver a notice to %s", key)

    # --- the queue ------------------------------------------------------------------------

    def _item(self, inbound: Inbound) -> Item:
        if inbound.action is not Action.MESSAGE:
            return QueuedAction(inbound.action, inbound.author, inbound.text)
        text = inbound.text.strip()
        if not text:
            raise UserFacingError("That message is empty; type something for the character.")
        if len(text) > self._limits.max_input_chars:
            raise UserFacingError(
                f"That message is {len(text):,} characters; the limit is "
                f"{self._limits.max_input_chars:,}. Split it or shorten it."
            )
        return ChatMessage(
            0,
            "user",
            inbound.author.name,
            text,
            user_id=inbound.author.user_id,
            created=time.time(),
            platform_ids=[inbound.platform_message_id] if inbound.platform_message_id else [],
        )

    async def _drain(self, state: TurnState | None) -> None:
        while state is not None:
            state = await self._process(state)

    async def _process(self, state: TurnState) -> TurnState | None:
        key = state.key
        action = state.item.action if isinstance(state.item, QueuedAction) else Action.MESSAGE
        written: list[Op] = []
        try:
            written = await self._handlers[action](state)
        except LockLost as exc:
            await self.notice(key, exc.user_message())
            return None
        except BotError as exc:
            await self.notice(key, exc.user_message())
        except Exception:
            _log.exception("turn failed in %s", key)
            await self.notice(key, "Something went wrong with that turn; it has been logged.")
        try:
            return await self.store.commit(
                key,
                state.token,
                [*written, *state.pending],
                chat_id=state.chat_id,
                resume_id=_resume_id(state),
            )
        except BotError as exc:
            await self.notice(key, exc.user_message())
            return None

    # --- handlers: each returns the writes of its turn --------------------------------------

    async def _on_message(self, state: TurnState) -> list[Op]:
        history = state.history
        writes: list[Op] = []
        if len(history) == 1:  # the first message of a chat: the greeting comes first
            await self.store.register_channel(state.key)  # idempotent; for server usage
            greeting = self._greeting(state)
            if greeting is not None:
                writes.append(ops.prepend(greeting))
                history = [greeting, *history]
        reply = await self._replier.generate(state, history, self._user_name(state))
        if reply is not None:
            writes.append(ops.append(reply))
        return writes

    async def _on_regenerate(self, state: TurnState) -> list[Op]:
        last = state.history[-1] if state.history else None
        if last is None:
            raise UserFacingError("There is nothing to regenerate yet.")
        if last.role != "assistant":
            reply = await self._replier.generate(
                state, state.history, self._user_name(state), kind="regenerate"
            )
            return [ops.append(reply)] if reply else []
        return await self._new_swipe(state, self._last_reply(state))

    async def _on_swipe_right(self, state: TurnState) -> list[Op]:
        last = self._last_reply(state)
        if last.swipe_id + 1 < len(last.swipes):
            return await self._show_swipe(state, last, last.swipe_id + 1)
        return await self._new_swipe(state, last)

    async def _on_swipe_left(self, state: TurnState) -> list[Op]:
        last = self._last_reply(state)
        if last.swipe_id == 0:
            raise UserFacingError("This is the first version of the reply.")
        return await self._show_swipe(state, last, last.swipe_id - 1)

    async def _on_continue(self, state: TurnState) -> list[Op]:
        last = self._last_reply(state)
        reply = await self._replier.generate(
            state, state.history, self._user_name(state), continue_from=last
        )
        if reply is None:
            return []
        last.text = last.swipes[last.swipe_id] = reply.text
        last.swipe_meta[last.swipe_id] = reply.meta
        return [ops.replace(last)]

    async def _on_reset(self, state: TurnState) -> list[Op]:
        writes = [ops.archive(_summary(state))]
        greeting = self._greeting(state)
        if greeting is not None:
            greeting.platform_ids = await self._deliver(state.key, greeting.text)
            writes.append(ops.append(greeting))
        return writes

    async def _on_resume(self, state: TurnState) -> list[Op]:
        target = _resume_id(state)
        if target <= 0 or target == state.chat_id:
            raise UserFacingError("Say which earlier chat to resume, e.g. `resume 2`.")
        await self.notice(state.key, f"Resumed chat #{target}.")
        return [ops.resume(target, _summary(state))]

    async def _on_delete_last(self, state: TurnState) -> list[Op]:
        doomed: list[int] = []
        for message in reversed(state.history):
            doomed.append(message.id)
            if message.role == "user":
                break
        if not doomed:
            raise UserFacingError("There is nothing to delete.")
        await self.notice(state.key, f"Deleted the last {len(doomed)} message(s).")
        return [ops.delete(i) for i in doomed]

    async def _on_prompt(self, state: TurnState) -> list[Op]:
        await self.notice(state.key, await self._replier.preview(state, self._user_name(state)))
        return []

    async def _on_greet(self, state: TurnState) -> list[Op]:
        if state.history:
            return []
        greeting = self._greeting(state)
        if greeting is None:
            return []
        greeting.platform_ids = await self._deliver(state.key, greeting.text)
        return [ops.append(greeting)]

    # --- helpers --------------------------------------------------------------------------

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
        label = f"({index + 1}/{len(last.swipes)}) "
        await self._deliver(state.key, label + last.text)
        return [ops.replace(last)]

    async def _new_swipe(self, state: TurnState, last: ChatMessage) -> list[Op]:
        reply = await self._replier.generate(
            state, state.history[:-1], self._user_name(state), kind="swipe"
        )
        if reply is None:
            return []
        last.swipes.append(reply.text)
        last.swipe_meta.append(reply.meta)
        last.swipe_id = len(last.swipes) - 1
        last.text = reply.text
        last.platform_ids = reply.platform_ids
        return [ops.replace(last)]

    def _greeting(self, state: TurnState) -> ChatMessage | None:
        character = self.characters.get(state.settings.get("character", ""))
        swipes = greeting_swipes(character, self._user_name(state))
        if not swipes or not swipes[0]:
            return None
        return ChatMessage(
            0,
            "assistant",
            character.name,
            swipes[0],
            swipes=swipes,
            swipe_meta=[{"greeting": True} for _ in swipes],
            created=time.time(),
        )

    def _user_name(self, state: TurnState) -> str:
        if isinstance(state.item, QueuedAction):
            return state.item.author.name or self._defaults.user_name
        return state.item.name or self._defaults.user_name

    async def _deliver(self, key: ChatKey, text: str) -> list[str]:
        async with Delivery(self._surfaces[key.platform](key), self._pacer, key.tag()) as sink:
            return await sink.finish(text)


def _resume_id(state: TurnState) -> int:
    item = state.item
    if isinstance(item, QueuedAction) and item.action is Action.RESUME:
        digits = "".join(c for c in item.text if c.isdigit())
        return int(digits) if digits else 0
    return 0


def _summary(state: TurnState) -> dict[str, object]:
    first_user = next((m.text for m in state.history if m.role == "user"), "")
    return {"title": first_user[:60], "messages": len(state.history), "ended": time.time()}
