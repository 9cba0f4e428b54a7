"""Group chats through the engine on a real Redis: the `group` commands, who speaks and in
what order, what each member's prompt holds, and what is stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.backends.base import GenerationRequest, TextDelta
from bot.backends.pool import BackendPool
from bot.config import AppConfig, BackendConfig, Defaults
from bot.delivery.pacer import Pacer
from bot.engine.characters import CharacterLibrary
from bot.engine.turns import Engine
from bot.errors import BackendUnavailable
from bot.prompt.tokens import EstimateCounter
from bot.state.keys import KeyBuilder
from bot.state.store import ChatStore
from bot.types import Action, Author, ChatKey, Inbound
from tests.fakes.engine import ScriptedBackend, Step, Surfaces, words

KEY = ChatKey("dc", "bot", "c1", server="g1")
ALEX = Author("u1", "Alex")


def card(name: str, description: str, greeting: str, **data: Any) -> dict[str, Any]:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": name,
            "description": description,
            "personality": "",
            "scenario": "",
            "first_mes": greeting,
            "mes_example": "",
            **data,
        },
    }


CARDS = {
    "mira": card(
        "Mira",
        "{{char}} keeps the lighthouse.",
        "Welcome, {{user}}.",
        extensions={"talkativeness": "0", "depth_prompt": {"prompt": "Mira never lies."}},
    ),
    "tom": card(
        "Tom",
        "{{char}} is an old sailor.",
        "Ahoy!",
        extensions={"talkativeness": "0"},
        character_book={
            "entries": [
                {"keys": ["anchor"], "content": "The anchor is cursed.", "id": 1, "enabled": True}
            ]
        },
    ),
    "nell": card("Nell", "{{char}} tells the story.", "Fog rolls in."),
}


@dataclass
class Rig:
    engine: Engine
    backend: ScriptedBackend
    surfaces: Surfaces
    store: ChatStore

    def seen(self) -> list[str]:
        return self.surfaces.by_key[KEY].visible()

    async def say(self, text: str, *replies: list[Step]) -> None:
        self.backend.enqueue(*replies)
        await self.engine.handle(Inbound(KEY, ALEX, Action.MESSAGE, text))

    async def act(self, action: Action, text: str = "", *replies: list[Step]) -> None:
        self.backend.enqueue(*replies)
        await self.engine.handle(Inbound(KEY, ALEX, action, text))

    async def group(self, *commands: str) -> None:
        for command in commands:
            await self.act(Action.GROUP, command)

    async def stored(self) -> list[tuple[str, str, str]]:
        return [(m.role, m.name, m.text) for m in await self.store.history(KEY)]

    def prompts(self, last: int) -> list[str]:
        return [_text(r) for r in self.backend.requests[-last:]]


def _text(request: GenerationRequest) -> str:
    return request.prompt or "\n".join(m.content for m in request.messages)


@pytest.fixture(params=["chat", "text"])
async def rig(
    request: pytest.FixtureRequest, redis: Redis, keys: KeyBuilder, tmp_path: Path
) -> AsyncIterator[Rig]:
    for key, data in CARDS.items():
        (tmp_path / f"{key}.json").write_text(json.dumps(data))
    backend = ScriptedBackend()
    config = AppConfig(
        backends={"fake": BackendConfig(base_url="http://f", model="m", mode=request.param)},
        characters={k: {"card": tmp_path / f"{k}.json"} for k in CARDS},  # type: ignore[misc]
        defaults=Defaults(backend="fake", character="mira"),
    )
    pool = BackendPool(config, None, lambda _: None, lambda *_: backend)  # type: ignore[arg-type]
    store = ChatStore(redis, keys)
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
    yield Rig(engine, backend, surfaces, store)
    await engine.close()


async def test_group_commands_build_the_group_and_say_what_it_is(rig: Rig) -> None:
    await rig.group("add tom")  # the channel's character is the first member
    assert rig.seen()[-1] == "Group: Mira, Tom · turn order natural · cards swap"
    await rig.group("add Nell", "mute nell", "strategy list", "mode join")
    assert rig.seen()[-1] == "Group: Mira, Tom, Nell (muted) · turn order list · cards join"
    stored = json.loads((await rig.store.settings(KEY))["group"])
    assert stored["members"] == ["Mira", "Tom", "Nell"] and stored["muted"] == ["Nell"]
    await rig.group("add Zed", "strategy loud", "remove Bob", "add tom")
    assert rig.seen()[-4].startswith("unknown character 'Zed'")
    assert rig.seen()[-3] == "`group strategy natural|list|manual|pooled`"
    assert rig.seen()[-2].startswith("Bob is not a member")
    assert rig.seen()[-1] == "Tom is already in the group."
    await rig.group("remove nell", "off")
    assert (await rig.store.settings(KEY))["group"] == ""
    await rig.say("Hi", words("Hello from Mira alone."))
    assert rig.seen()[-1] == "Hello from Mira alone."  # one-on-one again: no name label


async def test_list_order_one_message_per_member_each_seeing_the_earlier_ones(rig: Rig) -> None:
    await rig.group("add tom", "strategy list")
    await rig.say("Evening, all.", words("The lamp is lit."), words("Aye, it is."))
    assert rig.seen()[-2:] == ["Mira: The lamp is lit.", "Tom: Aye, it is."]
    history = await rig.store.history(KEY)
    assert [(m.role, m.name, m.text) for m in history] == [
        ("assistant", "Mira", "Welcome, Alex."),  # the group's greetings open a new chat
        ("assistant", "Tom", "Ahoy!"),
        ("user", "Alex", "Evening, all."),
        ("assistant", "Mira", "The lamp is lit."),
        ("assistant", "Tom", "Aye, it is."),
    ]
    assert history[3].extra["batch"] == history[4].extra["batch"] == history[2].id
    mira, tom = rig.prompts(2)
    # swap mode: each prompt holds the speaker's own card only
    assert "Mira keeps the lighthouse." in mira and "old sailor" not in mira
    assert "Tom is an old sailor." in tom and "lighthouse" not in tom
    assert "Mira never lies." in mira and "Mira never lies." not in tom
    assert "The lamp is lit." not in mira and "The lamp is lit." in tom
    if rig.backend.requests[-1].mode == "chat":
        assert rig.backend.requests[-1].messages[-1].content == (
            "[Write the next reply only as Tom.]"
        )
        assert "[Start a new group chat. Group members: Mira, Tom]" in tom
    else:
        assert "\nMira:" in rig.backend.requests[-1].stop
        assert "\nTom:" in rig.backend.requests[-2].stop


async def test_join_mode_puts_every_members_card_in_each_prompt(rig: Rig) -> None:
    await rig.group("add tom", "add nell", "mute nell", "strategy list", "mode join")
    await rig.say("Hello", words("one"), words("two"))
    mira, tom = rig.prompts(2)
    for prompt in (mira, tom):
        assert "Mira keeps the lighthouse." in prompt and "Tom is an old sailor." in prompt
        assert "Mira never lies." in prompt  # every member's note, in join mode
        assert "tells the story" not in prompt  # muted: left out of join (not join_all)
    await rig.group("mode join_all")
    await rig.say("Again", words("three"), words("four"))
    assert all("Nell tells the story." in p for p in rig.prompts(2))


async def test_natural_order_follows_mentions_and_mute(rig: Rig) -> None:
    await rig.group("add tom")  # both cards have talkativeness 0: only mentions speak
    await rig.say("Tom, tell me about the sea.", words("Salt and storms."))
    assert rig.seen()[-1] == "Tom: Salt and storms." and len(rig.backend.requests) == 1
    await rig.say("Mira and Tom, are you friends?", words("We are."), words("Aye."))
    assert rig.seen()[-2:] == ["Mira: We are.", "Tom: Aye."]
    await rig.group("mute tom")
    await rig.say("Tom?", words("Tom is asleep."))
    assert rig.seen()[-1] == "Mira: Tom is asleep."  # a muted member is never chosen
    await rig.act(Action.TALK, "tom", words("Zzz."))  # ... unless a user makes them talk
    assert rig.seen()[-1] == "Tom: Zzz."
    assert (await rig.stored())[-1] == ("assistant", "Tom", "Zzz.")
    await rig.act(Action.TALK, "Bob")
    assert rig.seen()[-1] == "Nobody called 'Bob' is in the group; members: Mira, Tom."


async def test_regenerate_replaces_the_whole_last_batch(rig: Rig) -> None:
    await rig.group("add tom", "strategy list")
    await rig.say("Hello", words("M1"), words("T1"))
    await rig.act(Action.REGENERATE, "", words("M2"), words("T2"))
    texts = [t for _, _, t in await rig.stored()]
    assert texts[-3:] == ["Hello", "M2", "T2"] and "M1" not in texts and "T1" not in texts
    mira, tom = rig.prompts(2)
    assert "M1" not in mira and "T1" not in mira and "M2" in tom


async def test_swipe_and_continue_go_to_the_author_of_the_last_message(rig: Rig) -> None:
    await rig.group("add tom", "strategy list")
    await rig.say("Hello", words("Hi there."), words("Ahoy"))
    await rig.act(Action.SWIPE_RIGHT, "", words("Good day"))
    assert rig.seen()[-1] == "Tom: Good day"
    await rig.act(Action.CONTINUE, "", [TextDelta(", matey."), *words("")[-2:]])
    last = (await rig.store.history(KEY))[-1]
    assert (last.name, last.swipes) == ("Tom", ["Ahoy", "Good day, matey."])
    assert "Tom is an old sailor." in _text(rig.backend.requests[-1])
    await rig.act(Action.SWIPE_LEFT)
    assert rig.seen()[-1] == "Tom: (1/2) Ahoy"
    await rig.group("mute tom")
    await rig.act(Action.SWIPE_RIGHT)  # to the existing second version: no generation
    await rig.act(Action.SWIPE_RIGHT)
    assert rig.seen()[-1].startswith("Tom is muted or no longer in the group")


async def test_a_stop_ends_the_whole_batch(rig: Rig) -> None:
    await rig.group("add tom", "strategy list")
    rig.backend.enqueue([TextDelta("The lamp"), 5.0, TextDelta(" never")], words("unused"))
    turn = asyncio.create_task(rig.engine.handle(Inbound(KEY, ALEX, Action.MESSAGE, "Hi")))
    await asyncio.wait_for(rig.backend.started.wait(), 3)
    await asyncio.sleep(0.1)
    await rig.act(Action.STOP)
    await asyncio.wait_for(turn, 5)
    assert (await rig.stored())[-1] == ("assistant", "Mira", "The lamp")
    assert len(rig.backend.requests) == 1  # Tom was never asked


async def test_a_failed_reply_ends_the_batch_with_one_line(rig: Rig) -> None:
    await rig.group("add tom", "strategy list")
    await rig.say("Hi", [BackendUnavailable("connection refused", backend="fake")])
    assert rig.seen()[-1].startswith("Mira: ⚠ [fake] connection refused")
    assert len(rig.backend.requests) == 1  # Tom's reply would fail the same way
    assert (await rig.stored())[-1] == ("user", "Alex", "Hi")


async def test_reset_greets_with_every_member_and_impersonate_writes_for_the_user(
    rig: Rig,
) -> None:
    await rig.group("add tom")
    await rig.act(Action.RESET)
    assert rig.seen()[-2:] == ["Mira: Welcome, Alex.", "Tom: Ahoy!"]
    assert [n for _, n, _ in await rig.stored()] == ["Mira", "Tom"]
    await rig.act(Action.REGENERATE)  # greetings are not a batch to replace
    assert rig.seen()[-1] == "There is nothing to regenerate yet."
    await rig.act(Action.IMPERSONATE, "", words("Alex: I wave at them both."))
    assert rig.seen()[-1] == "✍ suggestion: I wave at them both."
    assert len(await rig.stored()) == 2  # a suggestion is not stored


async def test_each_member_brings_its_own_lorebook_and_cannot_speak_for_another(
    rig: Rig,
) -> None:
    await rig.group("add tom", "strategy list")
    await rig.say(
        "What about the anchor?",
        words("Ask Tom."),
        [TextDelta("It's cursed."), TextDelta("\nMira: Nonsense!"), *words("")[-2:]],
    )
    mira, tom = rig.prompts(2)
    assert "The anchor is cursed." in tom and "The anchor is cursed." not in mira
    assert rig.seen()[-1] == "Tom: It's cursed."
    assert (await rig.stored())[-1] == ("assistant", "Tom", "It's cursed.")


async def test_the_prompt_command_and_export_know_the_group(rig: Rig) -> None:
    await rig.group("add tom", "strategy list")
    await rig.say("Hi", words("a"), words("b"))
    await rig.act(Action.PROMPT)
    assert rig.seen()[-1].startswith("backend fake, speaker Mira")
    exported = (await rig.engine.export_chat(KEY)).decode().split("\n")
    assert json.loads(exported[0])["character_name"] == "Group"
    assert [json.loads(line)["name"] for line in exported[1:]] == [
        "Mira",
        "Tom",
        "Alex",
        "Mira",
        "Tom",
    ]
