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
from bot.engine.cast import Casting
from bot.engine.characters import CharacterLibrary
from bot.engine.chat_files import MAX_IMPORT_BYTES, check_size, export_chat, import_chat, summary
from bot.engine.generate import Generation
from bot.engine.group_turns import GroupTurns
from bot.engine.prompting import PromptSetup
from bot.engine.reply import Replier
from bot.engine.reply_turns import ReplyTurns
from bot.errors import BotError, LockLost, MessageTooLong, StateError, UserFacingError
from bot.prompt.tokenizers import Tokenizers
from bot.prompt.tokens import TokenCounter
from bot.state import store as ops
from bot.state.store import ChatStore, Item, Op, QueuedAction, TurnState
from bot.types import Action, ChatKey, ChatMessage, Inbound

_log = logging.getLogger(__name__)

Handler = Callable[[TurnState], Awaitable[list[Op]]]


@dataclass(frozen=True, slots=True)
class Limits:
    max_input_chars: int = 16_000
    max_import_bytes: int = MAX_IMPORT_BYTES


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
        tokenizers: Tokenizers | None = None,
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
        self._casting = Casting(characters)
        self._replier = Replier(
            store, backends, surfaces, pacer, defaults, counter, self._running, setup, tokenizers
        )
        self._groups = GroupTurns(self._replier, self._casting, self.notice, self._deliver)
        self._replies = ReplyTurns(
            store,
            self._replier,
            self._casting,
            self._groups,
            self.notice,
            self._deliver,
            self._user_name,
        )
        self._tasks: set[asyncio.Task[None]] = set()  # turns being served
        self._watchers: set[asyncio.Task[None]] = set()  # items queued behind another holder
        self._handlers: dict[Action, Handler] = {
            Action.MESSAGE: self._replies.message,
            Action.REGENERATE: self._replies.regenerate,
            Action.SWIPE_LEFT: self._replies.swipe_left,
            Action.SWIPE_RIGHT: self._replies.swipe_right,
            Action.CONTINUE: self._replies.continue_,
            Action.RESET: self._on_reset,
            Action.RESUME: self._on_resume,
            Action.DELETE_LAST: self._on_delete_last,
            Action.GREET: self._replies.greet_once,
            Action.PROMPT: self._replies.prompt,
            Action.IMPERSONATE: self._replies.impersonate,
            Action.IMPORT_CHAT: self._on_import,
            Action.GROUP: self._on_group,
            Action.TALK: self._on_talk,
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

    @property
    def defaults(self) -> Defaults:
        return self._defaults

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

    async def export_chat(self, key: ChatKey) -> bytes:
        """The channel's current chat as a SillyTavern JSONL chat file."""
        return await export_chat(self.store, key, self._casting, self._defaults.user_name)

    async def notice(self, key: ChatKey, text: str) -> None:
        """A message to the channel (errors, hints, reports), split to fit; never raises."""
        try:
            await self._deliver(key, text)
        except Exception:
            _log.exception("could not deliver a notice to %s", key)

    # --- the queue ------------------------------------------------------------------------

    def _item(self, inbound: Inbound) -> Item:
        if inbound.action is Action.IMPORT_CHAT:
            check_size(inbound.text, self._limits.max_import_bytes)
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
        except MessageTooLong as exc:
            await self.notice(key, exc.user_message())
            if isinstance(state.item, ChatMessage):
                # refused for its size: it must not stay in the chat to break every later turn
                written = [ops.delete(state.item.id)]
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

    async def _on_reset(self, state: TurnState) -> list[Op]:
        writes = [ops.archive(summary(state.history))]
        return writes + await self._replies.greet(state)

    async def _on_resume(self, state: TurnState) -> list[Op]:
        target = _resume_id(state)
        if target <= 0 or target == state.chat_id:
            raise UserFacingError("Say which earlier chat to resume, e.g. `/resume 2`.")
        _, saved = await self.store.chats(state.key)
        if target not in saved:
            known = ", ".join(f"#{n}" for n in sorted(saved)) or "none yet"
            raise UserFacingError(f"There is no saved chat #{target} here (saved: {known}).")
        await self.notice(state.key, f"Resumed chat #{target}.")
        return [ops.resume(target, summary(state.history))]

    async def _on_delete_last(self, state: TurnState) -> list[Op]:
        doomed: list[int] = []
        for message in reversed(state.history):
            doomed.append(message.id)
            if message.role == "user":
                break
        else:  # no message of the user's: only the greeting(s), which stay
            raise UserFacingError("There is nothing to delete yet.")
        await self.notice(state.key, f"Deleted the last {len(doomed)} message(s).")
        return [ops.delete(i) for i in doomed]

    async def _on_import(self, state: TurnState) -> list[Op]:
        assert isinstance(state.item, QueuedAction)
        writes, report = import_chat(state, state.item.text, self._limits.max_import_bytes)
        await self.notice(state.key, report)
        return writes

    async def _on_group(self, state: TurnState) -> list[Op]:
        assert isinstance(state.item, QueuedAction)
        return await self._groups.command(state, state.item.text)

    async def _on_talk(self, state: TurnState) -> list[Op]:
        assert isinstance(state.item, QueuedAction)
        cast = self._casting.of(state.settings)
        if cast.group is None:
            raise UserFacingError("`talk` is for group chats; `group add NAME` starts one.")
        return await self._groups.talk(state, self._user_name(state), cast, state.item.text)

    # --- helpers --------------------------------------------------------------------------

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
