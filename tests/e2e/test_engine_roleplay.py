"""Roleplay features through the engine on a real Redis: reasoning, regex scripts, output
clean-up, impersonation, and SillyTavern chat files — what users see and what is stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.backends.base import Finish, FinishReason, ReasoningDelta, TextDelta
from bot.backends.pool import BackendPool
from bot.config import AppConfig, BackendConfig, Defaults, ReasoningConfig
from bot.delivery.pacer import Pacer
from bot.engine.characters import CharacterLibrary
from bot.engine.chat_files import ChatUpload
from bot.engine.prompting import PromptSetup
from bot.engine.turns import Engine, Limits
from bot.prompt.chatfile import import_chat_jsonl
from bot.prompt.presets import CHATML_CONTEXT
from bot.prompt.regex_scripts import load_scripts
from bot.prompt.tokens import EstimateCounter
from bot.state.keys import KeyBuilder
from bot.state.store import ChatStore
from bot.types import Action, Author, ChatKey, Inbound
from tests.fakes.engine import RecordingSurface, ScriptedBackend, Step, words

KEY = ChatKey("dc", "bot", "c1", server="g1")
ALEX = Author("u1", "Alex")


@dataclass
class FrameSurface(RecordingSurface):
    """Also keeps every frame ever sent or edited in: what a user saw while it streamed."""

    frames: list[str] = field(default_factory=list)

    async def send(self, text: str) -> str:
        self.frames.append(text)
        return await super().send(text)

    async def edit(self, message_id: str, text: str) -> None:
        self.frames.append(text)
        await super().edit(message_id, text)


@dataclass
class Rig:
    engine: Engine
    backend: ScriptedBackend
    surface: FrameSurface
    store: ChatStore

    def seen(self) -> list[str]:
        return self.surface.visible()

    async def say(self, text: str, *script: Step) -> None:
        self.backend.enqueue(list(script) or words("ok"))
        await self.engine.handle(Inbound(KEY, ALEX, Action.MESSAGE, text))

    async def act(self, action: Action, text: str = "", *script: Step) -> None:
        if script:
            self.backend.enqueue(list(script))
        await self.engine.handle(Inbound(KEY, ALEX, action, text))

    def prompt(self, index: int = -1) -> str:
        request = self.backend.requests[index]
        return request.prompt or "\n".join(m.content for m in request.messages)


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(redis: Redis, keys: KeyBuilder, tmp_path: Path) -> AsyncIterator[MakeRig]:
    engines: list[Engine] = []

    async def make(
        *,
        mode: str = "chat",
        card: dict[str, Any] | None = None,
        limits: Limits | None = None,
        **setup: Any,
    ) -> Rig:
        data = json.loads((Path(__file__).parents[2] / "bot" / "data" / "aria.json").read_text())
        data["data"].update(card or {})
        (tmp_path / "aria.json").write_text(json.dumps(data))
        backend = ScriptedBackend()
        config = AppConfig(
            backends={"fake": BackendConfig(base_url="http://f", model="m", mode=mode)},  # type: ignore[arg-type]
            characters={"aria": {"card": tmp_path / "aria.json"}},  # type: ignore[dict-item]
            defaults=Defaults(backend="fake", character="aria"),
        )
        pool = BackendPool(config, None, lambda _: None, lambda *_: backend)  # type: ignore[arg-type]
        store = ChatStore(redis, keys)
        await store.start()
        surface = FrameSurface()
        engine = Engine(
            store,
            pool,
            CharacterLibrary(config),
            {"dc": lambda _: surface},
            Pacer(),
            config.defaults,
            EstimateCounter(),
            limits=limits or Limits(),
            setup=PromptSetup(system_prompt=config.defaults.system_prompt, **setup),
        )
        engines.append(engine)
        return Rig(engine, backend, surface, store)

    yield make
    for engine in engines:
        await engine.close()


def script(
    name: str, find: str, replace: str, placement: list[int], **flags: Any
) -> dict[str, Any]:
    return {
        "scriptName": name,
        "findRegex": find,
        "replaceString": replace,
        "placement": placement,
        **flags,
    }


# --- reasoning ----------------------------------------------------------------------------


THINKING = [
    TextDelta("<th"),
    TextDelta("ink>Alex looks cold; "),
    0.05,  # a pause while it thinks: the user sees that it does
    TextDelta("offer soup.</thi"),
    TextDelta("nk>\n\nHave some "),
    TextDelta("soup."),
    Finish(FinishReason.STOP, "stop"),
]


async def test_inline_reasoning_is_kept_apart_and_never_shown_or_sent_back(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.say("Brr, it's cold.", *THINKING)
    assert rig.seen()[-1] == "Have some soup."
    # while streaming the user saw a thinking marker, then only the reply
    assert not any("soup." in f and "offer" in f for f in rig.surface.frames)
    assert not any("<th" in f or "Alex looks cold" in f for f in rig.surface.frames)
    assert "💭 thinking…" in rig.surface.frames
    reply = (await rig.store.history(KEY))[-1]
    assert reply.text == "Have some soup." and reply.swipes == ["Have some soup."]
    assert reply.meta["reasoning"] == "Alex looks cold; offer soup."
    await rig.say("Thanks!")
    assert "Have some soup." in rig.prompt() and "offer soup" not in rig.prompt()


async def test_shown_reasoning_is_a_quote_above_the_final_reply(make_rig: MakeRig) -> None:
    rig = await make_rig(reasoning=ReasoningConfig(show=True))
    await rig.say("Brr.", *THINKING)
    assert rig.seen()[-1] == "> 💭 Alex looks cold; offer soup.\n\nHave some soup."
    assert (await rig.store.history(KEY))[-1].text == "Have some soup."


async def test_a_backends_reasoning_field_is_stored_with_custom_markers_too(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(reasoning=ReasoningConfig(prefix="[THINK]", suffix="[/THINK]"))
    await rig.say(
        "Hi.",
        ReasoningDelta("Greet back. "),
        TextDelta("[THINK]Smile.[/THINK]Hello!"),
        Finish(FinishReason.STOP, "stop"),
    )
    reply = (await rig.store.history(KEY))[-1]
    assert (reply.text, reply.meta["reasoning"]) == ("Hello!", "Greet back. Smile.")
    assert rig.seen()[-1] == "Hello!"


async def test_a_reply_that_never_stops_reasoning_says_so(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.say("Hi.", TextDelta("<think>Hmm, let me think about"), Finish(FinishReason.LENGTH))
    assert rig.seen()[-1].startswith("⚠ The model was still reasoning")
    assert [m.role for m in await rig.store.history(KEY)] == ["assistant", "user"]


# --- regex scripts ------------------------------------------------------------------------


async def test_regex_scripts_run_where_sillytavern_runs_them(
    make_rig: MakeRig, tmp_path: Path
) -> None:
    configured = [
        script("typos", "/teh/g", "the", [1]),
        script("spelling", "/colour/g", "color", [2]),
        script("bold names", "/Aria/g", "**{{char}}**", [2], markdownOnly=True),
        script("secret", "/password \\w+/g", "password [redacted]", [1], promptOnly=True),
    ]
    card = {
        "extensions": {"regex_scripts": [script("no shouting", "/!+/g", ".", [2])]},
    }
    rig = await make_rig(card=card, regex=tuple(load_scripts(json.dumps(configured), "cfg")))
    await rig.say("I saw teh colour red; password hunter2", *words("Aria likes the colour!!"))
    history = await rig.store.history(KEY)
    # stored: user input and AI output scripts; never the display or prompt-only ones
    assert history[1].text == "I saw the colour red; password hunter2"
    assert history[2].text == "Aria likes the color."
    assert history[2].swipes == ["Aria likes the color."]
    # shown: the display-only script too
    assert rig.seen()[-1] == "**Aria** likes the color."
    # sent: the prompt-only script on the history, the stored text unchanged
    assert "password [redacted]" in rig.prompt() and "hunter2" not in rig.prompt()
    await rig.say("and again")
    assert "Aria likes the color." in rig.prompt() and "**Aria**" not in rig.prompt()
    assert "hunter2" in (await rig.store.history(KEY))[1].text


async def test_a_broken_card_script_is_skipped_and_the_card_still_talks(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(card={"extensions": {"regex_scripts": [{"findRegex": 42}]}})
    await rig.say("Hello", *words("Evening!"))
    assert rig.seen()[-1] == "Evening!"


# --- clean-up -------------------------------------------------------------------------------


async def test_a_reply_that_goes_on_as_the_user_is_cut_and_stops_streaming(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.say(
        "Any rooms?",
        TextDelta("One left, upstairs."),
        TextDelta("\nAlex: Great, I'll"),
        TextDelta(" take it."),
        Finish(FinishReason.STOP, "stop"),
    )
    assert rig.seen()[-1] == "One left, upstairs."
    assert (await rig.store.history(KEY))[-1].text == "One left, upstairs."
    assert not any("Great" in f for f in rig.surface.frames)
    assert (await rig.store.history(KEY))[-1].meta["finish"] == "stop_sequence"


async def test_the_context_templates_trim_and_single_line_apply(make_rig: MakeRig) -> None:
    trim = replace(CHATML_CONTEXT, trim_sentences=True)
    rig = await make_rig(mode="text", overrides={"context": trim})
    await rig.say("Hi", *words("Aria: She nods. Then she turns and"))
    assert (await rig.store.history(KEY))[-1].text == "She nods."
    rig = await make_rig(mode="text", overrides={"context": replace(trim, single_line=True)})
    await rig.act(Action.RESET)
    await rig.say("Hi", TextDelta("First line.\nSecond line."), Finish(FinishReason.STOP))
    assert (await rig.store.history(KEY))[-1].text == "First line."
    assert rig.backend.requests[-1].stop[0] == "\n"


# --- impersonation ----------------------------------------------------------------------------


async def test_impersonate_suggests_the_users_line_without_storing_it(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.say("Hello!", *words("Welcome in."))
    before = await rig.store.history(KEY)
    await rig.act(Action.IMPERSONATE, "", *words("Alex: I shake off the rain and sit."))
    assert rig.seen()[-1] == "✍ suggestion: I shake off the rain and sit."
    assert await rig.store.history(KEY) == before
    prompt = rig.prompt()
    assert "from the point of view of Alex" in prompt  # the impersonation prompt, expanded
    usage = await rig.store.usage(KEY)
    assert usage.by_model[("fake", "m")][2] == 2  # it cost tokens, and is counted


async def test_impersonate_in_text_mode_ends_on_the_users_turn(make_rig: MakeRig) -> None:
    rig = await make_rig(mode="text")
    await rig.say("Hello!", *words("Welcome in."))
    await rig.act(Action.IMPERSONATE, "", *words("I sit down.\nAria: Tea?"))
    assert rig.seen()[-1] == "✍ suggestion: I sit down."
    request = rig.backend.requests[-1]
    assert request.prompt.endswith("<|im_start|>user\nAlex:")  # the user's turn to write
    assert "\nAria:" in request.stop


# --- chat files -----------------------------------------------------------------------------


def st_chat(*lines: dict[str, Any]) -> str:
    header = {"user_name": "Sam", "character_name": "Aria", "create_date": "2024-05-01@10h00m00s"}
    return "\n".join(json.dumps(x) for x in (header, *lines))


IMPORTED = st_chat(
    {"name": "Aria", "is_user": False, "mes": "Welcome!", "send_date": "May 1, 2024 10:00am"},
    {"name": "Sam", "is_user": True, "mes": "A room, please."},
    {
        "name": "Aria",
        "is_user": False,
        "mes": "Second door.",
        "swipe_id": 1,
        "swipes": ["Upstairs.", "Second door."],
        "swipe_info": [{"extra": {}}, {"extra": {"reasoning": "Be brief."}}],
        "extra": {"reasoning": "Be brief.", "api": "openai"},
    },
)


async def test_import_archives_the_chat_and_export_gives_it_back(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.say("hello", *words("first chat reply"))
    await rig.act(Action.IMPORT_CHAT, ChatUpload.text("inn.jsonl", IMPORTED))
    assert rig.seen()[-1] == (
        "Imported 3 messages from inn.jsonl. The previous chat is saved as #1 (`resume 1`)."
    )
    history = await rig.store.history(KEY)
    assert [(m.role, m.name, m.text) for m in history] == [
        ("assistant", "Aria", "Welcome!"),
        ("user", "Sam", "A room, please."),
        ("assistant", "Aria", "Second door."),
    ]
    assert history[2].swipes == ["Upstairs.", "Second door."] and history[2].swipe_id == 1
    assert history[2].meta["reasoning"] == "Be brief."
    # the imported chat continues like any other; its reasoning is not sent
    await rig.say("Thanks", *words("Sleep well."))
    assert "Second door." in rig.prompt() and "Be brief." not in rig.prompt()
    exported = import_chat_jsonl(await rig.engine.export_chat(KEY), "export")
    assert (exported.user_name, exported.character_name) == ("Alex", "Aria")
    assert [m.text for m in exported.messages] == [
        "Welcome!",
        "A room, please.",
        "Second door.",
        "Thanks",
        "Sleep well.",
    ]
    assert exported.messages[2].swipes == ["Upstairs.", "Second door."]
    assert exported.messages[2].meta["reasoning"] == "Be brief."
    await rig.act(Action.RESUME, "1")
    assert (await rig.store.history(KEY))[-1].text == "first chat reply"


async def test_a_bad_chat_file_is_one_line_naming_the_file_and_line(make_rig: MakeRig) -> None:
    rig = await make_rig(limits=Limits(max_import_bytes=10_000))
    await rig.say("hello", *words("kept"))
    broken = IMPORTED.replace('"A room, please."}', '"A room, please."')
    await rig.act(Action.IMPORT_CHAT, ChatUpload.text("broken.jsonl", broken))
    line = rig.seen()[-1]
    assert line.startswith("broken.jsonl: line 3: not valid JSON") and "\n" not in line
    await rig.act(Action.IMPORT_CHAT, ChatUpload.text("big.jsonl", "x" * 20_000))
    assert "limit is 10,000" in rig.seen()[-1]
    await rig.act(Action.IMPORT_CHAT, ChatUpload.text("empty.jsonl", st_chat()))
    assert rig.seen()[-1].startswith("empty.jsonl: ")
    assert [m.text for m in await rig.store.history(KEY)][1:] == ["hello", "kept"]
    assert (await rig.store.chats(KEY))[0] == 1  # nothing was archived
