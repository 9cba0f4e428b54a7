"""What the engine puts into prompts from config and channel state: lorebooks (with their
timers kept per chat), personas, the author's note, macro variables, the `prompt` report."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.backends.pool import BackendPool
from bot.config import AppConfig, BackendConfig, Defaults
from bot.delivery.pacer import Pacer
from bot.engine.characters import CharacterLibrary
from bot.engine.prompting import PromptSetup
from bot.engine.turns import Engine
from bot.prompt.lore import load_world
from bot.prompt.persona import Persona, persona_key
from bot.prompt.tokens import EstimateCounter
from bot.state.keys import KeyBuilder
from bot.state.store import ChatStore
from bot.types import Action, Author, ChatKey, Inbound
from tests.conftest import FIXTURES
from tests.fakes.engine import ScriptedBackend, Surfaces, words

KEY = ChatKey("dc", "bot", "c1", server="g1")
ALEX = Author("u1", "Alex")


class Rig:
    def __init__(
        self, engine: Engine, backend: ScriptedBackend, surfaces: Surfaces, store: ChatStore
    ):
        self.engine, self.backend, self.surfaces, self.store = engine, backend, surfaces, store

    async def say(self, text: str, author: Author = ALEX) -> str:
        """Send a message; return the prompt the backend received, as one string."""
        self.backend.enqueue(words("ok"))
        await self.engine.handle(Inbound(KEY, author, Action.MESSAGE, text))
        return "\n".join(m.content for m in self.backend.requests[-1].messages)


@pytest.fixture
async def rig(redis: Redis, keys: KeyBuilder, tmp_path: Path) -> AsyncIterator[Rig]:
    card = json.loads((Path(__file__).parents[2] / "bot" / "data" / "aria.json").read_text())
    card["data"]["description"] += " Visits: {{incvar::visits}}."
    (tmp_path / "aria.json").write_text(json.dumps(card))
    backend = ScriptedBackend()
    config = AppConfig(
        backends={"fake": BackendConfig(provider="custom", base_url="http://f", model="m")},
        characters={"aria2": {"card": tmp_path / "aria.json"}},  # type: ignore[dict-item]
        defaults=Defaults(backend="fake", character="aria2"),
    )
    world = load_world((FIXTURES / "worlds" / "Eldoria.json").read_bytes(), "Eldoria.json")
    setup = PromptSetup(system_prompt=config.defaults.system_prompt, worlds=(world,))
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
        setup=setup,
    )
    yield Rig(engine, backend, surfaces, store)


async def test_lorebook_entries_enter_the_prompt_when_their_keys_are_mentioned(rig: Rig) -> None:
    quiet = await rig.say("Good evening.")
    assert "What are Shadowfangs?" not in quiet
    prompt = await rig.say("Are there monsters in these woods?")
    assert 'Alex: "What are Shadowfangs?"' in prompt  # {{user}} expanded in the entry
    assert 'Alex: "What is Eldoria?"' in prompt  # "wood" is a key of the Eldoria entry


async def test_macro_variables_persist_per_chat(rig: Rig) -> None:
    first = await rig.say("one")
    second = await rig.say("two")
    assert "Visits: 1." in first and "Visits: 2." in second
    await rig.engine.handle(Inbound(KEY, ALEX, Action.RESET))
    assert "Visits: 1." in await rig.say("new chat")  # variables belong to the chat


async def test_persona_per_user_and_per_server(rig: Rig) -> None:
    persona = Persona("Captain Alex", "A retired sea captain with a wooden leg.")
    await rig.store.set_persona(KEY, "u1", persona_key("u1"), json.dumps(persona.to_dict()))
    prompt = await rig.say("Ahoy.")
    assert "A retired sea captain" in prompt

    here = Persona("Alex the Bard", "A wandering bard.")
    await rig.store.set_persona(KEY, "u1", persona_key("u1", "g1"), json.dumps(here.to_dict()))
    prompt = await rig.say("A song!")
    assert "A wandering bard." in prompt and "sea captain" not in prompt
    # another user in the channel has no persona: nothing of Alex's reaches their prompt
    bob = await rig.say("Hi, I'm Bob.", Author("u2", "Bob"))
    last_user = rig.backend.requests[-1].messages[-1].content
    assert "Bob" in last_user and "sea captain" not in bob
    # two people now: the others' lines carry names; Alex is the persona, not "Alex"
    again = await rig.say("Another song?")
    assert "between Aria and Alex the Bard." in again and "Bob: Hi, I'm Bob." in again
    assert "Alex: " not in again


async def test_authors_note_goes_near_the_end(rig: Rig) -> None:
    note = json.dumps({"text": "[Style: short, vivid sentences.]", "depth": 1})
    await rig.store.set_setting(KEY, "authors_note", note)
    await rig.say("Describe the inn.")
    contents = [m.content for m in rig.backend.requests[-1].messages]
    assert contents[-2] == "[Style: short, vivid sentences.]"  # depth 1: before the last message
    assert contents[-1].endswith("Describe the inn.")


async def test_prompt_command_reports_what_was_included(rig: Rig) -> None:
    await rig.say("Tell me about the monsters.")
    await rig.engine.handle(Inbound(KEY, ALEX, Action.PROMPT))
    report = rig.surfaces.by_key[KEY].visible()[-1]
    assert "backend fake" in report
    assert "world info: Eldoria#1" in report
