"""The channel store: fenced, two-round-trip turns over one Lua script.

A turn is ``enqueue`` (push the inbound item; if the channel is free, take its lock and load
its state in the same atomic step — the lock is always taken *before* state is read) and
``commit`` (check the fencing token, write, then hand over the next queued item or release).
A holder whose lock expired gets :class:`bot.errors.LockLost` and its write is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from bot.errors import LockLost, StateError, UserFacingError
from bot.state.keys import ChannelKeys, KeyBuilder
from bot.types import Action, Author, ChatKey, ChatMessage

_SCRIPT = resources.files("bot.state").joinpath("channel.lua").read_text


def entry_json(message: ChatMessage) -> str:
    """Serialise with ``id`` first (the script splices new ids into ``{"id":0,``)."""
    d = message.to_dict()
    d["id"] = 0 if message.id <= 0 else message.id
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class QueuedAction:
    action: Action
    author: Author
    text: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "a": self.action.value,
                "u": self.author.user_id,
                "n": self.author.name,
                "t": self.text,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str) -> QueuedAction:
        d = json.loads(raw)
        return cls(Action(d["a"]), Author(d["u"], d["n"]), d.get("t", ""))


Item = ChatMessage | QueuedAction


@dataclass(slots=True)
class TurnState:
    """What the lock holder loaded, atomically with taking the lock."""

    key: ChatKey
    token: str
    item: Item
    chat_id: int
    settings: dict[str, str]
    history: list[ChatMessage]
    written: list[int] = field(default_factory=list)  # ids/indices from the previous commit


# Ops for commit: (name, payload). Built by the helpers below, never by hand.
Op = tuple[str, str]


def append(message: ChatMessage) -> Op:
    return ("append", entry_json(message))


def prepend(message: ChatMessage) -> Op:
    return ("prepend", entry_json(message))


def replace(message: ChatMessage) -> Op:
    return ("replace", entry_json(message))


def delete(message_id: int) -> Op:
    return ("delete", str(message_id))


def archive(summary: dict[str, Any]) -> Op:
    return ("archive", json.dumps(summary, ensure_ascii=False))


def resume(chat_id: int, summary: dict[str, Any]) -> Op:
    return ("resume", f"{chat_id}\n{json.dumps(summary, ensure_ascii=False)}")


class ChatStore:
    """Per-channel state on one Redis connection pool (a server, a cluster, or embedded)."""

    def __init__(
        self,
        redis: Redis,
        keys: KeyBuilder,
        *,
        window: int = 400,
        lock_ttl: float = 30.0,
        inbox_max: int = 50,
        decode_cache: int = 20_000,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._window = window
        self._ttl_ms = int(lock_ttl * 1000)
        self._inbox_max = inbox_max
        self._sha = ""
        self._decoded: dict[bytes | str, ChatMessage] = {}
        self._decode_cache = decode_cache
        self.lock_ttl = lock_ttl

    async def start(self) -> None:
        self._sha = str(await self._call(self._redis.script_load(_SCRIPT())))

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    # --- turns -------------------------------------------------------------------------

    async def enqueue(self, key: ChatKey, item: Item) -> TurnState | None:
        """Queue ``item``; if the channel was free, return its locked, loaded state."""
        raw = ("M" + entry_json(item)) if isinstance(item, ChatMessage) else "A" + item.to_json()
        res = await self._run(key, "enqueue", raw, self._ttl_ms, self._window, self._inbox_max)
        if res[0] == -1:
            raise UserFacingError(
                "This channel has too many messages waiting; wait for the current replies."
            )
        return self._state(key, res)

    async def acquire(self, key: ChatKey) -> TurnState | None:
        """Take over items left queued by a holder that went away (lock expired)."""
        return self._state(key, await self._run(key, "acquire", self._ttl_ms, self._window))

    async def commit(
        self,
        key: ChatKey,
        token: str,
        ops: Sequence[Op] = (),
        *,
        chat_id: int = 0,
        resume_id: int = 0,
    ) -> TurnState | None:
        """Write ``ops`` if we still hold the lock, then take the next queued item or release.

        Raises LockLost (nothing written) when another holder took the channel.
        """
        flat: list[str | int] = [token, self._ttl_ms, self._window]
        for op, payload in ops:
            flat += [op, payload]
        ch = self._keys.channel(key)
        extra = [ch.archive(chat_id or 0), ch.archive(resume_id or 0)]
        res = await self._run(key, "commit", *flat, extra=extra)
        if res[0] == -2:
            raise LockLost("this channel was taken over by another process; reply not saved")
        if res[0] == -3:
            raise UserFacingError(f"There is no saved chat #{resume_id} in this channel.")
        state = self._state(key, res[:-1] if len(res) > 1 else res)
        if state is not None:
            state.written = [int(i) for i in res[-1]]
        return state

    async def renew(self, key: ChatKey, token: str) -> bool:
        """Extend the lock; returns True when a stop was requested. Raises LockLost."""
        res = await self._run(key, "renew", token, self._ttl_ms)
        if res[0] == -2:
            raise LockLost("lost the channel lock while generating")
        return bool(res[1])

    async def release(self, key: ChatKey, token: str) -> None:
        await self._run(key, "release", token)

    async def request_stop(self, key: ChatKey) -> None:
        ch = self._keys.channel(key)
        await self._call(self._redis.set(ch.stop, "1", px=self._ttl_ms * 2))

    def _state(self, key: ChatKey, res: list[Any]) -> TurnState | None:
        if res[0] in (0, b"0"):
            return None
        token, kind, body, chat, flat, log = res[:6]
        item: Item
        if _s(kind) == "M":
            item = ChatMessage.from_dict(json.loads(body))
        else:
            item = QueuedAction.from_json(_s(body))
        settings = {_s(flat[i]): _s(flat[i + 1]) for i in range(0, len(flat), 2)}
        history = [self._decode(e) for e in log]
        return TurnState(key, _s(token), item, int(chat), settings, history)

    def _decode(self, raw: bytes | str) -> ChatMessage:
        """Decode a stored entry, through a cache keyed by the entry's exact bytes.

        Each turn reads the same recent window again; an entry's bytes are its whole
        content, so a cached decode can never be stale. Callers must not mutate the
        returned messages (copy one to change it).
        """
        hit = self._decoded.get(raw)
        if hit is None:
            hit = ChatMessage.from_dict(json.loads(raw))
            if len(self._decoded) >= self._decode_cache:
                for old in list(self._decoded)[: self._decode_cache // 4]:
                    del self._decoded[old]
            self._decoded[raw] = hit
        return hit

    # --- reads and settings (no lock: single-key reads or independent writes) -----------

    async def history(self, key: ChatKey, last: int = 0) -> list[ChatMessage]:
        ch = self._keys.channel(key)
        raw = await self._call(self._redis.lrange(ch.log, -last if last else 0, -1))
        return [ChatMessage.from_dict(json.loads(e)) for e in raw]

    async def chats(self, key: ChatKey) -> tuple[int, dict[int, dict[str, Any]]]:
        """The current chat id and the saved earlier chats with their summaries."""
        ch = self._keys.channel(key)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(ch.meta, "chat")
            pipe.hgetall(ch.chats)
            cur, saved = await self._call(pipe.execute())
        return int(cur or 1), {int(k): json.loads(v) for k, v in saved.items()}

    async def settings(self, key: ChatKey) -> dict[str, str]:
        raw = await self._call(self._redis.hgetall(self._keys.channel(key).settings))
        return {_s(k): _s(v) for k, v in raw.items()}

    async def set_setting(self, key: ChatKey, name: str, value: str | None) -> None:
        ch = self._keys.channel(key)
        if value is None:
            await self._call(self._redis.hdel(ch.settings, name))
        else:
            await self._call(self._redis.hset(ch.settings, name, value))

    # --- plumbing -----------------------------------------------------------------------

    async def _run(
        self, key: ChatKey, mode: str, *args: str | int, extra: Sequence[str] = ()
    ) -> list[Any]:
        ch = self._keys.channel(key)
        keys = [*_keys(ch), *(extra or [ch.archive(0), ch.archive(0)])]
        if not self._sha:
            await self.start()
        argv = (*keys, mode, *args)
        try:
            res = await self._call(self._redis.evalsha(self._sha, len(keys), *argv))
        except StateError as exc:
            if not isinstance(exc.__cause__, NoScriptError):
                raise
            # Redis restarted or flushed its script cache: load the script again, once.
            await self.start()
            res = await self._call(self._redis.evalsha(self._sha, len(keys), *argv))
        return list(res)

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except RedisError as exc:
            raise StateError(f"Redis is unreachable or failed ({type(exc).__name__})") from exc


def _keys(ch: ChannelKeys) -> list[str]:
    return [ch.inbox, ch.lock, ch.fence, ch.meta, ch.settings, ch.log, ch.chats, ch.stop]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
