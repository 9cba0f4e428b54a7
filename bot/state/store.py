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
    pending: list[Op] = field(default_factory=list)  # extra writes for this turn's commit
    personas: dict[str, str] | None = None  # the item author's, when read with the lock


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts: per (backend, model) -> (prompt, completion, replies); per user id."""

    by_model: dict[tuple[str, str], tuple[int, int, int]] = field(default_factory=dict)
    by_user: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, flat: dict[str, int]) -> Usage:
        by_model: dict[tuple[str, str], list[int]] = {}
        by_user: dict[str, list[int]] = {}
        for name, value in flat.items():
            parts = name.split("\t")
            if parts[0] == "u" and len(parts) == 3:
                by_user.setdefault(parts[1], [0, 0])["pc".index(parts[2])] += value
            elif len(parts) == 3 and parts[2] in ("p", "c", "n"):
                by_model.setdefault((parts[0], parts[1]), [0, 0, 0])["pcn".index(parts[2])] += (
                    value
                )
        return cls(
            {k: (v[0], v[1], v[2]) for k, v in by_model.items()},
            {k: (v[0], v[1]) for k, v in by_user.items()},
        )

    def __add__(self, other: Usage) -> Usage:
        by_model = dict(self.by_model)
        for k, (p, c, n) in other.by_model.items():
            op, oc, on = by_model.get(k, (0, 0, 0))
            by_model[k] = (op + p, oc + c, on + n)
        by_user = dict(self.by_user)
        for who, (p, c) in other.by_user.items():
            up, uc = by_user.get(who, (0, 0))
            by_user[who] = (up + p, uc + c)
        return Usage(by_model, by_user)

    def describe(self) -> str:
        if not self.by_model:
            return "No replies generated yet."
        lines = ["backend / model: prompt + completion tokens (replies)"]
        for (backend, model), (p, c, n) in sorted(self.by_model.items()):
            lines.append(f"  {backend} / {model}: {p:,} + {c:,} ({n})")
        for user, (p, c) in sorted(self.by_user.items()):
            lines.append(f"  user {user}: {p:,} + {c:,}")
        return "\n".join(lines)


# Ops for commit: (name, payload). Built by the helpers below, never by hand.
Op = tuple[str, str]


def append(message: ChatMessage) -> Op:
    return ("append", entry_json(message))


def prepend(message: ChatMessage) -> Op:
    return ("prepend", entry_json(message))


def replace(message: ChatMessage) -> Op:
    return ("replace", entry_json(message))


def set_setting(name: str, value: str) -> Op:
    """Write a channel setting in the same atomic commit as the turn (lore timers, vars)."""
    if "\n" in name:
        raise ValueError("setting names cannot contain newlines")
    return ("hset", f"{name}\n{value}")


def delete(message_id: int) -> Op:
    return ("delete", str(message_id))


def usage(backend: str, model: str, user_id: str, prompt: int, completion: int) -> Op:
    """Count a reply's tokens for this channel (per backend+model and per user)."""
    clean = [v.replace("\t", " ") for v in (backend, model, user_id)]
    return ("usage", "\t".join([*clean, str(max(prompt, 0)), str(max(completion, 0))]))


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
        user_id = item.user_id if isinstance(item, ChatMessage) else item.author.user_id
        # the author's personas ride along in the same round trip (their key has its own slot)
        res = await self._run(
            key,
            "enqueue",
            raw,
            self._ttl_ms,
            self._window,
            self._inbox_max,
            read=self._user_key(key, user_id) if user_id else "",
        )
        personas = res.pop() if user_id else {}
        if res[0] == -1:
            raise UserFacingError(
                "This channel has too many messages waiting; wait for the current replies."
            )
        state = self._state(key, res)
        if state is not None:
            state.personas = {_s(k): _s(v) for k, v in personas.items()}
        return state

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
        written = [int(i) for i in res[-1]] if len(res) > 1 else []
        # the first reply counted in a channel indexes it under its server (once; for the
        # server-wide usage report), outside the script because the index has its own slot
        with_ids = [op for op, _ in ops if op != "hset"]
        at = with_ids.index("usage") if "usage" in with_ids else -1
        if 0 <= at < len(written) and written[at] == 1:
            await self.register_channel(key)
        state = self._state(key, res[:-1] if len(res) > 1 else res)
        if state is not None:
            state.written = written
        return state

    async def renew(self, key: ChatKey, token: str) -> bool:
        """Extend the lock; returns True when a stop was requested. Raises LockLost."""
        res = await self._run(key, "renew", token, self._ttl_ms)
        if res[0] == -2:
            raise LockLost("lost the channel lock while generating")
        return bool(res[1])

    async def release(self, key: ChatKey, token: str) -> None:
        await self._run(key, "release", token)

    async def queued(self, key: ChatKey) -> int:
        """How many items wait in the channel's inbox."""
        return int(await self._call(self._redis.llen(self._keys.channel(key).inbox)))

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

    async def usage(self, key: ChatKey) -> Usage:
        raw = await self._call(self._redis.hgetall(self._keys.channel(key).usage))
        return Usage.parse({_s(k): int(v) for k, v in raw.items()})

    async def personas(self, key: ChatKey, user_id: str) -> dict[str, str]:
        """A user's stored personas (JSON by persona key), in the user's own key."""
        raw = await self._call(self._redis.hgetall(self._user_key(key, user_id)))
        return {_s(k): _s(v) for k, v in raw.items()}

    async def set_persona(self, key: ChatKey, user_id: str, field: str, value: str | None) -> None:
        if value is None:
            await self._call(self._redis.hdel(self._user_key(key, user_id), field))
        else:
            await self._call(self._redis.hset(self._user_key(key, user_id), field, value))

    def _user_key(self, key: ChatKey, user_id: str) -> str:
        return self._keys.user(key.platform, key.bot_id, user_id, "personas")

    async def register_channel(self, key: ChatKey) -> None:
        """Index the channel under its server, for server-wide usage (once per channel)."""
        index = self._keys.server(key.platform, key.bot_id, key.server, "channels")
        member = f"{key.channel_id}\t{key.thread_id}"
        await self._call(self._redis.sadd(index, member))

    async def server_usage(self, platform: str, bot_id: str, server: str) -> Usage:
        """Usage summed over every channel of one server (an operator's or admin's read)."""
        index = self._keys.server(platform, bot_id, server, "channels")
        members = await self._call(self._redis.smembers(index))
        total = Usage()
        for member in members:
            channel, _, thread = _s(member).partition("\t")
            key = ChatKey(platform, bot_id, channel, thread, server)
            total = total + await self.usage(key)
        return total

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
        self,
        key: ChatKey,
        mode: str,
        *args: str | int,
        extra: Sequence[str] = (),
        read: str = "",
    ) -> list[Any]:
        """Run the channel script; with ``read``, HGETALL that key in the same round trip
        (its result is appended to the script's)."""
        ch = self._keys.channel(key)
        keys = [*_keys(ch), *(extra or [ch.archive(0), ch.archive(0)])]
        if not self._sha:
            await self.start()
        argv = (*keys, mode, *args)
        for attempt in range(2):
            try:
                if not read:
                    return list(await self._call(self._redis.evalsha(self._sha, len(keys), *argv)))
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.evalsha(self._sha, len(keys), *argv)
                    pipe.hgetall(read)
                    res, also = await self._call(pipe.execute())
                return [*res, also]
            except StateError as exc:
                if attempt or not isinstance(exc.__cause__, NoScriptError):
                    raise
                # Redis restarted or flushed its script cache: load the script again, once.
                await self.start()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except RedisError as exc:
            raise StateError(f"Redis is unreachable or failed ({type(exc).__name__})") from exc


def _keys(ch: ChannelKeys) -> list[str]:
    return [ch.inbox, ch.lock, ch.fence, ch.meta, ch.settings, ch.log, ch.chats, ch.stop, ch.usage]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
