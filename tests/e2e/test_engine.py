"""The engine end to end on a real Redis: what users see and what is stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from bot.backends.base import Finish, FinishReason, TextDelta
from bot.backends.pool import BackendPool
from bot.config import AppConfig, BackendConfig, Defaults
from bot.delivery.pacer import Pacer
from bot.engine.characters import CharacterLibrary
from bot.engine.turns import Engine
from bot.errors import BackendRateLimited, BackendStreamCut, BackendUnavailable
from bot.prompt.tokens import EstimateCounter
from bot.state.keys import KeyBuilder
from bot.state.store import ChatStore
from bot.types import Action, Author, ChatKey, Inbound
from tests.fakes.engine import ScriptedBackend, Surfaces, words

KEY = ChatKey("dc", "bot", "chan-1", server="guild-1")
ALEX = Author("u1", "Alex")


@dataclass
class Rig:
    engine: Engine
    backend: ScriptedBackend
    surfaces: Surfaces
    store: ChatStore
    spare: ScriptedBackend = field(default_factory=ScriptedBackend)

    def seen(self, key: ChatKey = KEY) -> list[str]:
        return self.surfaces.by_key[key].visible()

    async def say(self, text: str, key: ChatKey = KEY, author: Author = ALEX) -> None:
        await self.engine.handle(Inbound(key, author, Action.MESSAGE, text))

    async def act(self, action: Action, text: str = "") -> None:
        await self.engine.handle(Inbound(KEY, ALEX, action, text))

    async def texts(self, key: ChatKey = KEY) -> list[tuple[str, str]]:
        return [(m.role, m.text) for m in await self.store.history(key)]


@pytest.fixture
async def rig(redis: Redis, keys: KeyBuilder) -> AsyncIterator[Rig]:
    backend, spare = ScriptedBackend("fake"), ScriptedBackend("spare")
    by_name = {"fake": backend, "spare": spare}
    config = AppConfig(
        backends={
            "fake": BackendConfig(provider="custom", base_url="http://fake", model="m"),
            "spare": BackendConfig(provider="custom", base_url="http://spare", model="s"),
        },
        defaults=Defaults(backend="fake", lock_ttl=3.0),
    )
    pool = BackendPool(config, None, lambda _: None, lambda name, *_: by_name[name])  # type: ignore[arg-type]
    store = ChatStore(redis, keys, lock_ttl=3.0)
    await store.start()
    surfaces = Surfaces()
    engine = Engine(
        store,
        pool,
        CharacterLibrary(config),
        {"dc": surfaces},
        Pacer(),
        config.defaults,
        EstimateCounter(),
    )
    rig = Rig(engine, backend, surfaces, store)
    rig.spare = spare
    yield rig


async def test_a_message_gets_a_streamed_reply_that_is_stored(rig: Rig) -> None:
    rig.backend.enqueue(words("Welcome to the Copper Kettle, traveller."))
    await rig.say("Hello there!")
    assert rig.seen()[-1] == "Welcome to the Copper Kettle, traveller."
    history = await rig.store.history(KEY)
    # the bundled character's greeting opens the chat, with its alternate as a swipe
    assert [m.role for m in history] == ["assistant", "user", "assistant"]
    assert history[0].text.startswith("*Aria sets a steaming mug") and len(history[0].swipes) == 2
    assert "Alex" in history[0].text  # {{user}} expanded when the chat began
    assert history[1].text == "Hello there!" and history[1].user_id == "u1"
    reply = history[2]
    assert reply.text == "Welcome to the Copper Kettle, traveller."
    assert reply.meta["backend"] == "fake" and reply.meta["model"] == "m"
    assert reply.meta["finish"] == "stop" and reply.meta["completion_tokens"] == 6
    assert reply.platform_ids == [rig.surfaces.by_key[KEY].order[-1]]
    # the prompt carried the character, the greeting and the user's message, in order
    request = rig.backend.requests[0]
    assert request.mode == "chat" and request.model == "m"
    contents = [m.content for m in request.messages]
    assert "Copper Kettle" in contents[0]
    assert contents[-1].endswith("Hello there!")


async def test_messages_sent_while_generating_are_answered_in_order(rig: Rig) -> None:
    rig.backend.enqueue(words("first reply", 0.05), words("second reply"), words("third reply"))
    first = asyncio.create_task(rig.say("one"))
    await asyncio.wait_for(rig.backend.started.wait(), 3)
    await rig.say("two")  # returns at once: queued behind the running turn
    await rig.say("three")
    assert len(rig.backend.requests) == 1
    await asyncio.wait_for(first, 5)  # the lock holder answers the queue in order
    assert await rig.texts() == [
        ("assistant", (await rig.store.history(KEY))[0].text),
        ("user", "one"),
        ("assistant", "first reply"),
        ("user", "two"),
        ("assistant", "second reply"),
        ("user", "three"),
        ("assistant", "third reply"),
    ]
    # each prompt saw the earlier exchanges
    assert rig.backend.requests[2].messages[-1].content.endswith("three")
    assert any("second reply" in m.content for m in rig.backend.requests[2].messages)


async def test_regenerate_and_swipes_keep_every_version(rig: Rig) -> None:
    rig.backend.enqueue(words("version one"), words("version two"), words("version three"))
    await rig.say("hi")
    await rig.act(Action.REGENERATE)
    last = (await rig.store.history(KEY))[-1]
    assert (last.text, last.swipes, last.swipe_id) == (
        "version two",
        ["version one", "version two"],
        1,
    )
    # the regenerated prompt did not contain the reply it replaces
    assert not any("version one" in m.content for m in rig.backend.requests[1].messages)
    await rig.act(Action.SWIPE_LEFT)
    last = (await rig.store.history(KEY))[-1]
    assert (last.text, last.swipe_id) == ("version one", 0)
    assert rig.seen()[-1] == "(1/2) version one"
    await rig.act(Action.SWIPE_RIGHT)
    assert (await rig.store.history(KEY))[-1].text == "version two"
    await rig.act(Action.SWIPE_RIGHT)  # past the last: a new one is generated
    last = (await rig.store.history(KEY))[-1]
    assert last.swipes == ["version one", "version two", "version three"] and last.swipe_id == 2
    assert len(rig.backend.requests) == 3


async def test_continue_extends_the_last_reply(rig: Rig) -> None:
    rig.backend.enqueue(
        words("She smiles"), [TextDelta(" and pours the tea."), Finish(FinishReason.STOP)]
    )
    await rig.say("hi")
    await rig.act(Action.CONTINUE)
    last = (await rig.store.history(KEY))[-1]
    assert last.text == "She smiles and pours the tea." and last.swipes == [last.text]
    assert rig.seen()[-1] == "She smiles and pours the tea."
    assert rig.backend.requests[1].messages[-1].content == "She smiles"


async def test_stop_keeps_what_arrived_and_marks_it(rig: Rig) -> None:
    rig.backend.enqueue([TextDelta("The dragon"), TextDelta(" rises"), 5.0, TextDelta(" never")])
    turn = asyncio.create_task(rig.say("what happens?"))
    await asyncio.wait_for(rig.backend.started.wait(), 3)
    await asyncio.sleep(0.1)
    await rig.act(Action.STOP)
    await asyncio.wait_for(turn, 3)
    last = (await rig.store.history(KEY))[-1]
    assert last.text == "The dragon rises"
    assert last.meta["partial"] is True and last.meta["finish"] == "stopped"
    assert rig.seen()[-1] == "The dragon rises [stopped]"
    assert rig.backend.closed == 1  # the stream was closed, not left running


async def test_stop_from_another_process_is_seen_on_lock_renewal(
    rig: Rig, redis: Redis, keys: KeyBuilder
) -> None:
    rig.backend.enqueue([TextDelta("Long"), 10.0, TextDelta(" tale")])
    turn = asyncio.create_task(rig.say("tell me"))
    await asyncio.wait_for(rig.backend.started.wait(), 3)
    other = ChatStore(redis, keys)  # a second process's store
    await other.start()
    await other.request_stop(KEY)
    await asyncio.wait_for(turn, 5)  # renewal runs every lock_ttl/3 = 1 s
    assert (await rig.store.history(KEY))[-1].text == "Long"


async def test_backend_error_before_any_text_stores_no_reply(rig: Rig) -> None:
    rig.backend.enqueue([BackendUnavailable("connection refused", backend="fake")])
    await rig.say("anyone there?")
    assert rig.seen()[-1].startswith("⚠ [fake] connection refused")
    assert [r for r, _ in await rig.texts()] == ["assistant", "user"]  # greeting + message
    rig.backend.enqueue(words("Yes, I'm here."))
    await rig.act(Action.REGENERATE)  # answers the unanswered message
    assert (await rig.texts())[-1] == ("assistant", "Yes, I'm here.")


async def test_stream_cut_after_text_keeps_the_partial_reply(rig: Rig) -> None:
    rig.backend.enqueue(
        [TextDelta("Half a"), BackendStreamCut("stream ended early", backend="fake")]
    )
    await rig.say("go on")
    last = (await rig.store.history(KEY))[-1]
    assert last.text == "Half a" and last.meta["partial"] is True
    assert rig.seen()[-1].startswith("Half a\n\n⚠ cut off: [fake] stream ended early")


async def test_rate_limit_message_says_what_to_do(rig: Rig) -> None:
    rig.backend.enqueue([BackendRateLimited("rate limited", retry_after=20, backend="fake")])
    await rig.say("hi")
    assert "wait and try again" in rig.seen()[-1]


async def test_bad_input_is_refused_and_nothing_is_stored(rig: Rig) -> None:
    await rig.say("   ")
    await rig.say("x" * 1_000_000)
    assert rig.seen()[0].startswith("That message is empty")
    assert "1,000,000 characters" in rig.seen()[1]
    assert await rig.store.history(KEY) == []
    assert rig.backend.requests == []


async def test_reset_archives_and_resume_restores(rig: Rig) -> None:
    rig.backend.enqueue(words("first chat reply"))
    await rig.say("first chat")
    await rig.act(Action.RESET)
    assert rig.seen()[-1].startswith("*Aria sets a steaming mug")  # the greeting, again
    assert [r for r, _ in await rig.texts()] == ["assistant"]
    current, saved = await rig.store.chats(KEY)
    assert current == 2 and saved[1]["title"] == "first chat"
    await rig.act(Action.RESUME, "1")
    assert (await rig.texts())[-1] == ("assistant", "first chat reply")


async def test_delete_last_removes_the_exchange(rig: Rig) -> None:
    rig.backend.enqueue(words("one"), words("two"))
    await rig.say("a")
    await rig.say("b")
    await rig.act(Action.DELETE_LAST)
    assert [t for _, t in await rig.texts()][1:] == ["a", "one"]


async def test_channels_do_not_share_history(rig: Rig) -> None:
    other = ChatKey("dc", "bot", "chan-2", server="guild-2")
    rig.surfaces(other)
    rig.backend.enqueue(words("for chan 1"), words("for chan 2"))
    await rig.say("secret plan", KEY)
    await rig.say("hello", other)
    assert not any("secret plan" in m.content for m in rig.backend.requests[1].messages)
    assert [t for _, t in await rig.texts(other)][1:] == ["hello", "for chan 2"]


async def test_usage_is_recorded_for_the_channel_and_server(rig: Rig) -> None:
    rig.backend.enqueue(words("one two three"), words("four"))
    await rig.say("hi")
    await rig.act(Action.REGENERATE)
    usage = await rig.store.usage(KEY)
    assert usage.by_model == {("fake", "m"): (20, 4, 2)}  # the fake reports 10 prompt tokens
    assert usage.by_user == {"u1": (20, 4)}
    server = await rig.store.server_usage("dc", "bot", "guild-1")
    assert server.by_model == usage.by_model


async def test_fallback_chain_answers_when_the_primary_is_down_and_says_so(rig: Rig) -> None:
    await rig.store.set_setting(KEY, "fallback", "spare")
    rig.backend.enqueue(
        [BackendRateLimited("rate limited (HTTP 429)", retry_after=30, backend="fake")]
    )
    rig.spare.enqueue(words("The spare answers."))
    await rig.say("hello?")
    assert rig.seen()[-1] == "The spare answers.\n\n↪ answered by spare (fake was unavailable)"
    last = (await rig.store.history(KEY))[-1]
    assert last.text == "The spare answers."
    assert last.meta["backend"] == "spare" and last.meta["model"] == "s"
    assert last.meta["fallback_from"] == ["fake: rate limited (HTTP 429)"]
    assert (await rig.store.usage(KEY)).by_model.keys() == {("spare", "s")}


async def test_no_fallback_after_text_arrived(rig: Rig) -> None:
    await rig.store.set_setting(KEY, "fallback", "spare")
    rig.backend.enqueue([TextDelta("Half"), BackendUnavailable("dropped", backend="fake")])
    await rig.say("go")
    assert (await rig.store.history(KEY))[-1].text == "Half"
    assert rig.spare.requests == []


async def test_a_filtered_finish_is_explained(rig: Rig) -> None:
    rig.backend.enqueue([TextDelta("She begins to"), Finish(FinishReason.FILTERED, "SAFETY")])
    await rig.say("go on")
    assert rig.seen()[-1].startswith("She begins to\n\n⚠ the backend's content filter")
    assert (await rig.store.history(KEY))[-1].meta["finish"] == "filtered"


async def test_resuming_a_missing_chat_says_so_and_keeps_the_channel_free(rig: Rig) -> None:
    rig.backend.enqueue(words("first"), words("still here"))
    await rig.say("hello")
    await rig.act(Action.RESUME, "99")
    assert rig.seen()[-1] == "There is no saved chat #99 here (saved: none yet)."
    await rig.say("are you there?")  # not stuck behind a held lock
    assert rig.seen()[-1] == "still here"


async def test_delete_on_a_fresh_chat_keeps_the_greeting(rig: Rig) -> None:
    await rig.act(Action.GREET)
    await rig.act(Action.DELETE_LAST)
    assert rig.seen()[-1] == "There is nothing to delete yet."
    assert [r for r, _ in await rig.texts()] == ["assistant"]
