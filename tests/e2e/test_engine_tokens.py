"""Prompts are measured with the backend's own tokenizer when it has one (calibrated from
its token-count endpoint), so a denser tokenizer keeps fewer messages within the context."""

from __future__ import annotations

from types import SimpleNamespace

from redis.asyncio import Redis

from bot.backends.pool import BackendPool
from bot.config import AppConfig, BackendConfig, Defaults
from bot.delivery.pacer import Pacer
from bot.engine.characters import CharacterLibrary
from bot.engine.turns import Engine
from bot.prompt.tokenizers import Tokenizers
from bot.prompt.tokens import EstimateCounter
from bot.state.keys import KeyBuilder
from bot.state.store import ChatStore
from bot.types import Action, Author, ChatKey, Inbound
from tests.fakes.engine import ScriptedBackend, Surfaces, words

KEY = ChatKey("dc", "bot", "c1")


async def make_engine(
    redis: Redis,
    keys: KeyBuilder,
    backend: ScriptedBackend,
    backend_config: BackendConfig,
    tokenizers: Tokenizers | None = None,
) -> tuple[Engine, ChatStore, Surfaces]:
    """An engine on a real Redis whose one backend, named "b", is ``backend``."""
    config = AppConfig(backends={"b": backend_config}, defaults=Defaults(backend="b"))
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
        tokenizers=tokenizers,
    )
    return engine, store, surfaces


class DenseCountingBackend(ScriptedBackend):
    """A server whose tokenizer makes one token of every two characters."""

    def __init__(self) -> None:
        super().__init__("dense")
        self.counted: list[str] = []

    async def count_tokens(self, text: str) -> int:
        self.counted.append(text)
        return (len(text) + 1) // 2


async def kept_messages(redis: Redis, keys: KeyBuilder, tokenizers: Tokenizers | None) -> int:
    backend = DenseCountingBackend()
    engine, _, _ = await make_engine(
        redis,
        keys,
        backend,
        BackendConfig(
            provider="llamacpp",
            base_url="http://x/v1",
            model="m",
            context_size=1200,
            max_tokens=100,
        ),
        tokenizers,
    )
    for i in range(30):
        backend.enqueue(words(f"reply number {i} with a few more words to fill the context"))
        await engine.handle(
            Inbound(KEY, Author("u", "Sam"), Action.MESSAGE, f"message {i}, padded with words")
        )
    if tokenizers is not None:
        assert backend.counted  # the server's tokenizer was asked (calibration)
    return len(backend.requests[-1].messages)


async def test_server_tokenizer_measures_the_prompt(redis: Redis, keys: KeyBuilder) -> None:
    estimated = await kept_messages(redis, KeyBuilder(keys.prefix + "e"), None)
    measured = await kept_messages(redis, KeyBuilder(keys.prefix + "t"), Tokenizers())
    assert measured < estimated  # a denser tokenizer: fewer messages fit the same context


class PropsBackend(ScriptedBackend):
    """A llama.cpp server that publishes its model's chat template on GET /props."""

    def __init__(self) -> None:
        super().__init__("llama")
        self.props_calls = 0

    async def props(self) -> object:
        self.props_calls += 1
        template = (
            "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}"
        )

        return SimpleNamespace(raw={"chat_template": template, "bos_token": "<s>"})


async def test_model_template_from_props_formats_text_prompts(
    redis: Redis, keys: KeyBuilder
) -> None:
    backend = PropsBackend()
    engine, _, _ = await make_engine(
        redis,
        keys,
        backend,
        BackendConfig(
            provider="llamacpp-native",
            base_url="http://x",
            mode="text",
            model="m",
            model_template=True,
        ),
    )
    for text in ("Hello!", "Again."):
        backend.enqueue(words("Hi."))
        await engine.handle(Inbound(KEY, Author("u", "Sam"), Action.MESSAGE, text))
    prompt = backend.requests[-1].prompt
    assert prompt.startswith("<|system|>")
    assert "<|user|>Hello!\n<|assistant|>Hi.\n<|user|>Again.\n<|assistant|>" in prompt
    assert "<|im_start|>" not in prompt  # not the default ChatML instruct template
    assert backend.props_calls == 1  # read once, then cached


async def test_a_message_too_long_for_the_context_is_refused_and_not_kept(
    redis: Redis, keys: KeyBuilder
) -> None:
    backend = ScriptedBackend()
    engine, store, surfaces = await make_engine(
        redis,
        keys,
        backend,
        BackendConfig(
            provider="custom",
            base_url="http://x",
            model="m",
            context_size=1024,
            max_tokens=100,
        ),
    )
    await engine.handle(Inbound(KEY, Author("u", "Sam"), Action.MESSAGE, "word " * 2000))
    assert "too long for this chat" in surfaces(KEY).visible()[-1]  # type: ignore[attr-defined]
    assert not [m for m in await store.history(KEY) if m.role == "user"]  # not kept
    backend.enqueue(words("Welcome."))
    await engine.handle(Inbound(KEY, Author("u", "Sam"), Action.MESSAGE, "A short one."))
    assert surfaces(KEY).visible()[-1] == "Welcome."  # type: ignore[attr-defined]
