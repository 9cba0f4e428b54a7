"""The chat store contract, against a real Redis (the embedded one, and CI's server)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from bot.errors import LockLost, StateError, UserFacingError
from bot.state import store as ops
from bot.state.keys import KeyBuilder
from bot.state.store import ChatStore, QueuedAction
from bot.types import Action, Author, ChatKey, ChatMessage

KEY = ChatKey("con", "b1", "c1")
OTHER = ChatKey("con", "b1", "c2")
ALEX = Author("u1", "Alex")


def user(text: str) -> ChatMessage:
    return ChatMessage(0, "user", "Alex", text, user_id="u1")


def reply(text: str, swipes: list[str] | None = None) -> ChatMessage:
    return ChatMessage(0, "assistant", "Sera", text, swipes=swipes or [text], swipe_meta=[{}])


async def make(redis: Redis, keys: KeyBuilder, **kw: float) -> ChatStore:
    store = ChatStore(redis, keys, **kw)  # type: ignore[arg-type]
    await store.start()
    return store


async def test_turn_stores_message_then_reply_in_order(redis: Redis, keys: KeyBuilder) -> None:
    store = await make(redis, keys)
    state = await store.enqueue(KEY, user("hello"))
    assert state is not None
    assert isinstance(state.item, ChatMessage) and state.item.id > 0
    assert [m.text for m in state.history] == ["hello"]
    nxt = await store.commit(KEY, state.token, [ops.append(reply("hi there"))])
    assert nxt is None
    history = await store.history(KEY)
    assert [(m.role, m.text) for m in history] == [("user", "hello"), ("assistant", "hi there")]
    assert history[0].id < history[1].id
    assert history[1].swipes == ["hi there"]


async def test_busy_channel_queues_and_hands_over_in_order(redis: Redis, keys: KeyBuilder) -> None:
    store = await make(redis, keys)
    first = await store.enqueue(KEY, user("one"))
    assert first is not None
    assert await store.enqueue(KEY, user("two")) is None  # queued behind the running turn
    assert await store.enqueue(KEY, user("three")) is None
    second = await store.commit(KEY, first.token, [ops.append(reply("r1"))])
    assert second is not None and second.token == first.token
    assert [m.text for m in second.history] == ["one", "r1", "two"]
    third = await store.commit(KEY, second.token, [ops.append(reply("r2"))])
    assert third is not None
    assert await store.commit(KEY, third.token, [ops.append(reply("r3"))]) is None
    texts = [m.text for m in await store.history(KEY)]
    assert texts == ["one", "r1", "two", "r2", "three", "r3"]


async def test_lock_is_taken_before_state_is_read(redis: Redis, keys: KeyBuilder) -> None:
    # Regression guard for the aiogram #1317 class of bug: state loaded outside the lock can
    # be stale. enqueue returns state only to the one caller that got the lock.
    store = await make(redis, keys)
    results = await asyncio.gather(*(store.enqueue(KEY, user(f"m{i}")) for i in range(10)))
    holders = [r for r in results if r is not None]
    assert len(holders) == 1


async def test_stale_holder_cannot_write(redis: Redis, keys: KeyBuilder) -> None:
    store = await make(redis, keys, lock_ttl=1.2)
    stale = await store.enqueue(KEY, user("one"))
    assert stale is not None
    await asyncio.sleep(1.3)  # the lock expires: the holder is presumed dead
    await store.enqueue(KEY, user("two"))
    with pytest.raises(LockLost):
        await store.commit(KEY, stale.token, [ops.append(reply("late"))])
    with pytest.raises(LockLost):
        await store.renew(KEY, stale.token)
    assert "late" not in [m.text for m in await store.history(KEY)]


async def test_acquire_picks_up_items_left_by_a_dead_holder(
    redis: Redis, keys: KeyBuilder
) -> None:
    store = await make(redis, keys, lock_ttl=1.1)
    first = await store.enqueue(KEY, user("one"))
    assert first is not None and await store.enqueue(KEY, user("two")) is None
    assert await store.acquire(KEY) is None  # still held
    await asyncio.sleep(1.2)
    taken = await store.acquire(KEY)
    assert taken is not None and taken.token != first.token
    assert isinstance(taken.item, ChatMessage) and taken.item.text == "two"


async def test_swipes_replace_and_delete(redis: Redis, keys: KeyBuilder) -> None:
    store = await make(redis, keys)
    s = await store.enqueue(KEY, user("hi"))
    assert s is not None
    assert await store.commit(KEY, s.token, [ops.append(reply("a"))]) is None
    last = (await store.history(KEY))[-1]
    s2 = await store.enqueue(KEY, QueuedAction(Action.SWIPE_RIGHT, ALEX))
    assert s2 is not None and isinstance(s2.item, QueuedAction)
    assert s2.item.action is Action.SWIPE_RIGHT
    last.swipes.append("b")
    last.swipe_meta.append({"model": "m"})
    last.swipe_id, last.text = 1, "b"
    await store.commit(KEY, s2.token, [ops.replace(last)])
    stored = (await store.history(KEY))[-1]
    assert (stored.id, stored.text, stored.swipes, stored.swipe_id) == (
        last.id,
        "b",
        ["a", "b"],
        1,
    )
    assert stored.meta == {"model": "m"}
    s3 = await store.enqueue(KEY, QueuedAction(Action.DELETE_LAST, ALEX))
    assert s3 is not None
    await store.commit(KEY, s3.token, [ops.delete(last.id), ops.delete(s.item.id)])
    assert await store.history(KEY) == []


async def test_reset_archives_and_resume_restores(redis: Redis, keys: KeyBuilder) -> None:
    store = await make(redis, keys)
    s = await store.enqueue(KEY, user("first chat"))
    assert s is not None and s.chat_id == 1
    await store.commit(KEY, s.token, [ops.append(reply("r"))])
    s = await store.enqueue(KEY, QueuedAction(Action.RESET, ALEX))
    assert s is not None
    await store.commit(KEY, s.token, [ops.archive({"title": "first"})], chat_id=s.chat_id)
    assert await store.history(KEY) == []
    cur, saved = await store.chats(KEY)
    assert cur == 2 and saved == {1: {"title": "first"}}
    s = await store.enqueue(KEY, user("second chat"))
    assert s is not None and s.chat_id == 2
    await store.commit(KEY, s.token)
    s = await store.enqueue(KEY, QueuedAction(Action.RESET, ALEX))
    assert s is not None
    await store.commit(KEY, s.token, [ops.resume(1, {"title": "second"})], chat_id=2, resume_id=1)
    assert [m.text for m in await store.history(KEY)] == ["first chat", "r"]
    cur, saved = await store.chats(KEY)
    assert cur == 1 and saved == {2: {"title": "second"}}
    s = await store.enqueue(KEY, QueuedAction(Action.RESET, ALEX))
    assert s is not None
    # resuming a chat that does not exist changes nothing and still frees the channel
    assert await store.commit(KEY, s.token, [ops.resume(9, {})], chat_id=1, resume_id=9) is None
    assert [m.text for m in await store.history(KEY)] == ["first chat", "r"]
    assert await store.enqueue(KEY, user("still answered")) is not None


async def test_channels_are_isolated(redis: Redis, keys: KeyBuilder) -> None:
    store = await make(redis, keys)
    s = await store.enqueue(KEY, user("secret"))
    assert s is not None
    await store.set_setting(KEY, "character", "sera")
    other = await store.enqueue(OTHER, user("other"))
    assert other is not None  # not blocked by KEY's lock
    assert [m.text for m in other.history] == ["other"]
    assert other.settings == {}
    with pytest.raises(LockLost):  # a token of one channel means nothing in another
        await store.commit(OTHER, s.token + "x")


async def test_stop_request_is_seen_on_renew(redis: Redis, keys: KeyBuilder) -> None:
    store = await make(redis, keys)
    s = await store.enqueue(KEY, user("go"))
    assert s is not None
    assert await store.renew(KEY, s.token) is False
    await store.request_stop(KEY)
    assert await store.renew(KEY, s.token) is True


async def test_inbox_is_bounded(redis: Redis, keys: KeyBuilder) -> None:
    store = ChatStore(redis, keys, inbox_max=3)
    await store.start()
    assert await store.enqueue(KEY, user("0")) is not None
    for i in range(3):
        assert await store.enqueue(KEY, user(str(i))) is None
    with pytest.raises(UserFacingError):
        await store.enqueue(KEY, user("too many"))


async def test_unicode_and_large_text_round_trip(redis: Redis, keys: KeyBuilder) -> None:
    store = await make(redis, keys)
    text = 'héllo "quoted" {"id":0,} ✨\n' * 2000
    s = await store.enqueue(KEY, user(text))
    assert s is not None and s.history[0].text == text


async def test_script_reloads_after_redis_forgets_it(redis: Redis, keys: KeyBuilder) -> None:
    store = await make(redis, keys)
    await redis.script_flush()
    assert await store.enqueue(KEY, user("still works")) is not None


async def test_unreachable_redis_is_a_state_error(keys: KeyBuilder) -> None:
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    store = ChatStore(dead, keys)
    with pytest.raises(StateError):
        await store.start()
    await dead.aclose()


async def test_usage_is_counted_per_backend_model_and_user(redis: Redis, keys: KeyBuilder) -> None:
    store = await make(redis, keys)
    s = await store.enqueue(KEY, user("hi"))
    assert s is not None
    await store.commit(KEY, s.token, [ops.append(reply("a")), ops.usage("fb", "m1", "u1", 100, 7)])
    s = await store.enqueue(KEY, user("again"))
    assert s is not None
    await store.commit(KEY, s.token, [ops.usage("fb", "m1", "u2", 50, 3)])
    other = ChatKey("con", "b1", "c2", server="")
    s = await store.enqueue(other, user("x"))
    assert s is not None
    await store.commit(other, s.token, [ops.usage("or", "m2", "u1", 10, 1)])
    usage = await store.usage(KEY)
    assert usage.by_model == {("fb", "m1"): (150, 10, 2)}
    assert usage.by_user == {"u1": (100, 7), "u2": (50, 3)}
    await store.register_channel(KEY)
    await store.register_channel(other)
    total = await store.server_usage("con", "b1", "")
    assert total.by_model == {("fb", "m1"): (150, 10, 2), ("or", "m2"): (10, 1, 1)}
    assert total.by_user["u1"] == (110, 8)
    assert "fb / m1: 150 + 10 (2)" in total.describe()
