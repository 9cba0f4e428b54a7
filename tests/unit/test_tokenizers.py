"""Token counting per backend: tiktoken offline, counters calibrated on a backend's endpoint,
the per-text cache, the selection table, and the safety margin that keeps a prompt built on
estimates inside the context."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import math
import string
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import tiktoken_ext.openai_public as openai_public  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.backends.presets import PRESETS
from bot.backends.registry import build_backend
from bot.config import BackendConfig
from bot.errors import BackendError, BackendUnavailable, ConfigError
from bot.prompt import Character, EstimateCounter, PromptInputs, build_prompt
from bot.prompt.tokenizer_cache import CountCache
from bot.prompt.tokenizer_calibrated import (
    CalibratedCounter,
    Calibration,
    calibration_samples,
    fit,
)
from bot.prompt.tokenizer_tiktoken import (
    SPECS,
    EncodingSpec,
    EncodingStore,
    RankFile,
    TiktokenCounter,
    encoding_for_model,
    segments,
)
from bot.prompt.tokenizers import (
    PROVIDER_TOKENIZERS,
    TIKTOKEN_FALLBACK,
    PrefetchingCounter,
    RecordingCounter,
    TokenizerKind,
    Tokenizers,
    resolve_kind,
)
from bot.types import ChatMessage
from tests.fakes.llamacpp_server import FakeLlamaCpp, fake_tokens

# --- a backend whose tokenizer is known ---------------------------------------------------


def true_count(text: str) -> int:
    """The fake's tokenizer: a token per 4 ASCII characters (rounded up) but one per digit,
    so that texts differ in density, and one per other UTF-16 unit."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    digits = sum(c.isdigit() for c in text if c.isascii())
    other = len(text.encode("utf-16-le")) // 2 - ascii_chars
    return math.ceil((ascii_chars - digits) / 4) + digits + other


class KnownRatioBackend:
    """Implements :class:`TokenCountingBackend`; answers ``true_count`` and remembers what it
    was asked. ``fail`` makes every count fail; past ``answer`` counts it waits forever."""

    name = "known"

    def __init__(self, *, fail: BackendError | None = None, answer: int | None = None) -> None:
        self.asked: list[str] = []
        self.fail = fail
        self.answer = answer

    async def count_tokens(self, text: str) -> int:
        self.asked.append(text)
        if self.fail is not None:
            raise self.fail
        if self.answer is not None and len(self.asked) > self.answer:
            await asyncio.Event().wait()
        return true_count(text)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


PROSE = (
    "Mira lifts the lantern and squints into the rain. 'You came back,' she says, "
    "half a smile on her face, and waves you in out of the storm. The keeper's cabin smells "
    "of salt, tar and old paper; charts cover every wall. "
)

# --- tiktoken, offline --------------------------------------------------------------------


@pytest.fixture(scope="module")
def store() -> EncodingStore:
    return EncodingStore()


# From OpenAI's cookbook ("How to count tokens with tiktoken"), per encoding.
@pytest.mark.parametrize(
    ("encoding", "text", "tokens"),
    [
        ("cl100k_base", "hello world", [15339, 1917]),
        ("cl100k_base", "tiktoken is great!", [83, 1609, 5963, 374, 2294, 0]),
        ("o200k_base", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
        ("o200k_base", "hello world", [24912, 2375]),
    ],
)
def test_tiktoken_ids_offline(
    store: EncodingStore, encoding: str, text: str, tokens: list[int]
) -> None:
    loaded = store.get(encoding)
    assert loaded is not None, f"{encoding} data missing: install bpe-openai"
    assert loaded.encode_ordinary(text) == tokens


@pytest.mark.parametrize(
    ("text", "cl100k", "o200k"),
    [("antidisestablishmentarianism", 6, 6), ("2 + 2 = 4", 7, 7), ("お誕生日おめでとう", 9, 8)],
)
def test_tiktoken_counts_per_encoding(
    store: EncodingStore, text: str, cl100k: int, o200k: int
) -> None:
    tokenizers = Tokenizers(encodings=store)
    assert tokenizers.counter_for("a", "openai", "gpt-4").count(text) == cl100k
    assert tokenizers.counter_for("b", "openai", "gpt-4o-mini").count(text) == o200k


@pytest.mark.parametrize("name", sorted(SPECS))
def test_specs_are_tiktokens_own(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # tiktoken's constructors download the ranks first; with the loader stubbed they hand
    # back the pattern and special tokens alone, to compare with ours
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: {})
    theirs = getattr(openai_public, name)()
    assert theirs["pat_str"] == SPECS[name].pattern
    assert theirs["special_tokens"] == dict(SPECS[name].special_tokens)


def test_special_token_text_counts_as_plain_text(store: EncodingStore) -> None:
    counter = Tokenizers(encodings=store).counter_for("a", "openai", "gpt-4o")
    assert counter.count("<|endoftext|>") > 1  # typed by a user: not the one special token


TINY_RANKS = (
    b"".join(b"%s %d\n" % (base64.b64encode(bytes([i])), i) for i in range(256)) + b"aGk= 256\n"
)  # "hi"


def tiny_store(directory: Path, data: bytes, sha: bytes = TINY_RANKS) -> EncodingStore:
    (directory / "tiny.tiktoken.gz").write_bytes(gzip.compress(data))
    spec = EncodingSpec("tiny", hashlib.sha256(sha).hexdigest(), r"\S+|\s+", {})
    return EncodingStore(directories=[directory], rank_files=(), specs={"tiny": spec})


def test_rank_file_from_a_directory_is_loaded(tmp_path: Path) -> None:
    encoding = tiny_store(tmp_path, TINY_RANKS).get("tiny")
    assert encoding is not None
    assert encoding.encode_ordinary("hi hi!") == [256, 32, 256, 33]


def test_a_rank_file_failing_its_hash_is_refused(tmp_path: Path) -> None:
    tampered = TINY_RANKS.replace(b"aGk= 256", b"aGk= 257")
    assert tiny_store(tmp_path, tampered).get("tiny") is None


def test_a_broken_rank_file_is_refused(tmp_path: Path) -> None:
    store = tiny_store(tmp_path, TINY_RANKS)
    (tmp_path / "tiny.tiktoken.gz").write_bytes(b"not gzip at all")
    assert store.get("tiny") is None


async def test_missing_data_falls_back_to_the_measured_estimate(tmp_path: Path) -> None:
    missing = EncodingStore(rank_files=(RankFile("no-such-dist", "x/{name}.tiktoken"),))
    assert await missing.preload() == []
    counter = Tokenizers(encodings=missing).counter_for("gpt", "openai", "gpt-4o")
    assert isinstance(counter, CalibratedCounter)
    assert counter.calibration == TIKTOKEN_FALLBACK
    assert counter.count(PROSE) == math.ceil(len(PROSE) / 4.1 * 1.2)


async def test_tiktoken_counts_are_cached_per_text(store: EncodingStore) -> None:
    encoding = store.get("o200k_base")
    assert encoding is not None
    counter = TiktokenCounter(encoding, CountCache(max_entries=8))
    messages = [f"{PROSE} ({i})" for i in range(5)]
    assert await counter.prefetch([*messages, messages[0]]) == 5  # in a worker thread
    assert await counter.prefetch(messages) == 0
    assert [counter.count(m) for m in messages] == [len(encoding.encode(m)) for m in messages]
    assert (counter.cache.hits, counter.cache.misses) == (5, 0)
    assert isinstance(counter, PrefetchingCounter)


# pieces that stress the pre-split patterns around newlines
SEGMENT_TEXT = st.lists(
    st.sampled_from(
        [*"ab Zé\n\r\t /!.'1234—灯😀\u0301\xa0\x1c", "'ll", "<|im_end|>", "  \n", "\n/", "\n\n"]
    ),
    max_size=60,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=SEGMENT_TEXT)
def test_counts_add_up_across_segments(store: EncodingStore, text: str) -> None:
    pieces = segments(text)
    assert "".join(pieces) == text
    for name in SPECS:
        encoding = store.get(name)
        assert encoding is not None
        whole = len(encoding.encode_ordinary(text))
        assert sum(len(encoding.encode_ordinary(p)) for p in pieces) == whole


def test_a_long_text_is_counted_by_its_cached_segments(store: EncodingStore) -> None:
    encoding = store.get("cl100k_base")
    assert encoding is not None
    counter = TiktokenCounter(encoding, long_text=100)
    prompt = "".join(f"<|im_start|>user\nSam: {PROSE}{i}<|im_end|>\n" for i in range(10))
    assert counter.count(prompt) == len(encoding.encode_ordinary(prompt))
    assert prompt not in counter.cache  # new every turn: only its lines are kept
    assert len(counter.cache) == 11  # "<|im_start|>user\n" once, a line per message
    grown = prompt + "<|im_start|>assistant\n"
    hits = counter.cache.hits
    assert counter.count(grown) == len(encoding.encode_ordinary(grown))
    assert counter.cache.hits - hits == 20  # every line seen before came from the cache


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("GPT-3.5-turbo", "cl100k_base"),
        ("claude-sonnet-4-5", None),
        ("meta-llama/llama-3.1-70b-instruct", None),
        ("", None),
    ],
)
def test_model_to_encoding_table(model: str, encoding: str | None) -> None:
    assert encoding_for_model(model) == encoding


def test_the_count_cache_drops_the_least_recently_used() -> None:
    cache = CountCache(max_entries=3, max_chars=10)
    for text in ("aa", "bb", "cc"):
        cache.put(text, 1)
    assert cache.get("aa") == 1  # now the most recent
    cache.put("dd", 2)
    assert ("bb" in cache, "aa" in cache, len(cache)) == (False, True, 3)
    cache.put("eeeeee", 3)  # 12 characters would be too many: the oldest goes
    assert [t in cache for t in ("cc", "aa", "dd", "eeeeee")] == [False, True, True, True]
    assert cache.chars == 10
    cache.put("x" * 11, 4)  # longer than the whole cache: not kept, nothing evicted
    assert (len(cache), "x" * 11 in cache) == (3, False)


# --- selection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "kind"),
    [
        ("openai", "gpt-4o", TokenizerKind.TIKTOKEN),
        ("openai", "some-new-model", TokenizerKind.TIKTOKEN),
        ("openrouter", "openai/gpt-4.1", TokenizerKind.TIKTOKEN),
        ("openrouter", "anthropic/claude-3.5-sonnet", TokenizerKind.ESTIMATE),
        ("claude", "claude-sonnet-4-5", TokenizerKind.BACKEND),
        ("gemini", "gemini-2.5-flash", TokenizerKind.BACKEND),
        ("llamacpp-native", "", TokenizerKind.BACKEND),
        ("koboldcpp", "", TokenizerKind.BACKEND),
        ("ollama", "llama3", TokenizerKind.ESTIMATE),
        ("deepseek", "deepseek-chat", TokenizerKind.ESTIMATE),
    ],
)
def test_selection_table(provider: str, model: str, kind: TokenizerKind) -> None:
    assert resolve_kind(provider, model) is kind


async def test_only_the_configured_encodings_are_preloaded() -> None:
    tokenizers = Tokenizers()
    wanted = {
        tokenizers.encoding_for(provider, model)
        for provider, model in [("openai", "gpt-4"), ("claude", "claude-x"), ("ollama", "m")]
    }
    assert wanted == {"cl100k_base", None}
    assert await tokenizers.preload(n for n in wanted if n) == ["cl100k_base"]


def test_a_setting_overrides_the_table_and_a_typo_is_a_config_error() -> None:
    assert resolve_kind("openai", "gpt-4o", "sillytavern") is TokenizerKind.SILLYTAVERN
    with pytest.raises(ConfigError, match="known: auto, sillytavern"):
        resolve_kind("openai", "gpt-4o", "tiktokn")


def test_every_provider_in_the_table_is_a_preset() -> None:
    assert set(PROVIDER_TOKENIZERS) <= set(PRESETS)


def test_counters_are_chosen_and_kept(store: EncodingStore) -> None:
    tokenizers = Tokenizers(encodings=store)
    backend = KnownRatioBackend()
    local = tokenizers.counter_for("local", "llamacpp", "m", backend)
    assert isinstance(local, CalibratedCounter)
    assert local.backend is backend
    assert tokenizers.counter_for("local", "llamacpp", "m") is local
    assert tokenizers.counter_for("local", "llamacpp", "other") is not local
    # two backends serving OpenAI models share one encoding and its cache
    first = tokenizers.counter_for("oai", "openai", "gpt-4o")
    assert isinstance(first, TiktokenCounter)
    assert tokenizers.counter_for("router", "openrouter", "openai/gpt-4o-mini") is first
    parity = tokenizers.counter_for("oai", "openai", "gpt-4o", kind="sillytavern")
    assert isinstance(parity, EstimateCounter)
    assert parity.count("x" * 67) == 20  # ceil(67 / 3.35)
    estimate = tokenizers.counter_for("ds", "deepseek", "deepseek-chat", backend)
    assert isinstance(estimate, CalibratedCounter)
    assert estimate.backend is None  # no endpoint there: never asked


def test_kept_counters_are_bounded() -> None:
    tokenizers = Tokenizers(max_counters=2)
    first = tokenizers.counter_for("a", "ollama", "m1")
    tokenizers.counter_for("a", "ollama", "m2")
    tokenizers.counter_for("a", "ollama", "m3")
    assert tokenizers.counter_for("a", "ollama", "m1") is not first


# --- calibration and prefetch ---------------------------------------------------------------


async def test_calibration_measures_the_backends_ratio() -> None:
    backend = KnownRatioBackend()
    counter = CalibratedCounter("local:m", backend=backend)
    samples = calibration_samples([PROSE * 10, "Sam: " + PROSE * 5], samples=6, chars=600)
    calibration = await counter.calibrate(samples)
    assert calibration is not None
    assert sorted(backend.asked) == sorted(set(samples))  # asked 4 at a time, once each
    assert 3.8 < calibration.chars_per_token <= 4.0
    assert 0.05 <= calibration.margin < 0.1
    assert counter.calibration is calibration
    text = PROSE * 3
    assert true_count(text) <= counter.count(text) <= true_count(text) * 1.12


async def test_calibration_with_another_script_measures_it_apart() -> None:
    japanese = "灯台守のミラはランタンを掲げ、雨の向こうを見つめる。"
    samples = [PROSE * 2, japanese * 8, PROSE + japanese * 3, PROSE * 3 + japanese]
    counter = CalibratedCounter("local:m")
    calibration = await counter.calibrate(samples, KnownRatioBackend())
    assert calibration is not None
    assert 0.95 < calibration.tokens_per_unit < 1.05
    for text in (japanese * 20, PROSE * 4, f"{PROSE}{japanese}"):
        assert true_count(text) <= counter.count(text) <= true_count(text) * 1.15


async def test_prefetched_texts_are_counted_exactly() -> None:
    backend = KnownRatioBackend()
    counter = CalibratedCounter("local:m", backend=backend)
    texts = [f"{i}: " + PROSE[: 40 + i] for i in range(5)]
    assert not counter.is_exact(texts[0])
    assert counter.count(texts[0]) > true_count(texts[0])  # estimated, with margin
    assert await counter.prefetch([*texts, "", texts[1]], limit=3) == 3
    assert sorted(backend.asked) == texts[:3]  # most important first, no blanks, no repeats
    assert [counter.count(t) for t in texts[:3]] == [true_count(t) for t in texts[:3]]
    assert await counter.prefetch(texts) == 2  # only what was missing
    assert sorted(backend.asked) == texts


async def test_a_failing_endpoint_is_left_alone_for_a_while() -> None:
    clock = Clock()
    backend = KnownRatioBackend(fail=BackendUnavailable("connection refused", backend="x"))
    counter = CalibratedCounter("x:m", backend=backend, clock=clock, retry_after=300)
    assert await counter.prefetch(["one", "two", "three"]) == 0
    assert await counter.calibrate([PROSE]) is None
    assert counter.calibration == Calibration()
    assert backend.asked == ["one"]  # one failed request, not one per text or per turn
    assert counter.count(PROSE) == math.ceil(len(PROSE) / 3.35 * 1.1)
    clock.now += 301
    backend.fail = None
    assert await counter.prefetch(["one"]) == 1
    assert counter.count("one") == 1


async def test_a_counter_bounded_by_a_deadline_keeps_what_arrived() -> None:
    backend = KnownRatioBackend(answer=2)
    counter = CalibratedCounter("slow:m", backend=backend, concurrency=1)
    texts = [PROSE, PROSE + "!", PROSE + "?"]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await counter.prefetch(texts)
    assert [counter.is_exact(t) for t in texts] == [True, True, False]


async def test_a_calibration_survives_the_store(tmp_path: Path) -> None:
    clock = Clock()
    counter = CalibratedCounter("local:m", wall=clock)
    assert counter.needs_calibration()
    calibration = await counter.calibrate([PROSE * 4, PROSE * 2], KnownRatioBackend())
    assert calibration is not None
    assert calibration.measured_at == clock.now
    assert not counter.needs_calibration(max_age=3600)
    clock.now += 3601
    assert counter.needs_calibration(max_age=3600)
    fresh = CalibratedCounter("local:m")
    fresh.restore(Calibration.from_dict(calibration.to_dict()))
    assert fresh.count(PROSE) == counter.count(PROSE)
    for bad in (
        {},
        {**calibration.to_dict(), "margin": "x"},
        {**calibration.to_dict(), "margin": 5},
    ):
        with pytest.raises(ValueError, match="calibration"):
            Calibration.from_dict(bad)


def test_calibration_samples_cut_real_texts_at_spaces() -> None:
    samples = calibration_samples([PROSE * 6, "short", PROSE * 2], samples=4, chars=400)
    assert len(samples) == 4
    assert all(200 <= len(s) <= 400 and not s.startswith(" ") for s in samples)
    assert calibration_samples(["a", "b"]) == ["a\nb"]
    assert calibration_samples([]) == []


# --- the safety margin ------------------------------------------------------------------------

ASCII_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " .,;:!?'\"-\n", max_size=600)
MIXED_TEXT = st.text(
    alphabet=st.sampled_from([*string.ascii_letters, " ", ".", "é", "ж", "灯", "台", "😀"]),
    max_size=400,
)


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(ASCII_TEXT.filter(lambda s: len(s) >= 64), min_size=1, max_size=6),
    data=st.data(),
)
def test_an_estimated_prompt_of_calibrated_text_never_undercounts(
    samples: list[str], data: st.DataObject
) -> None:
    counter = CalibratedCounter("p", calibration=fit([(s, true_count(s)) for s in samples]))
    # a prompt of the kind of text calibrated on: the samples and runs of them
    piece = st.lists(st.sampled_from(samples), min_size=1, max_size=3).map("".join)
    prompt = data.draw(st.lists(piece, min_size=1, max_size=20))
    assert all(counter.count(t) >= true_count(t) for t in prompt)
    assert sum(map(counter.count, prompt)) >= sum(map(true_count, prompt))


@settings(max_examples=150, deadline=None)
@given(prompt=st.lists(MIXED_TEXT, min_size=1, max_size=40))
def test_uncalibrated_estimates_cover_mixed_scripts(
    prompt: list[str],
) -> None:
    counter = CalibratedCounter("p")
    assert sum(map(counter.count, prompt)) >= sum(map(true_count, prompt))


async def test_a_prompt_built_on_estimates_fits_the_real_context() -> None:
    backend = KnownRatioBackend()
    counter = CalibratedCounter("local:m", backend=backend)
    card = Character(name="Mira", description=PROSE * 4, personality="calm")
    history = [
        ChatMessage(i, "user" if i % 2 else "assistant", "Sam" if i % 2 else "Mira", PROSE)
        for i in range(200)
    ]
    await counter.calibrate(calibration_samples([card.description, PROSE * 8]))
    base = PromptInputs(character=card, user_name="Sam", history=history, context_size=2048)
    budget = base.context_size - base.max_tokens
    text = build_prompt(replace(base, mode="text"), counter)
    assert budget - 300 < true_count(text.text) <= budget
    await counter.prefetch([m.text for m in reversed(history)], limit=40)
    chat = build_prompt(base, counter)
    real = sum(true_count(m.content) + 3 + (1 if m.name else 0) for m in chat.messages) + 3
    assert budget - 300 < real <= budget


async def test_prefetching_what_a_first_build_counted_keeps_more_history() -> None:
    backend = KnownRatioBackend()
    counter = CalibratedCounter("local:m", backend=backend)
    card = Character(name="Mira", description=PROSE, personality="calm")
    history = [ChatMessage(i, "user", "Sam", f"{i} {PROSE}") for i in range(100)]
    inputs = PromptInputs(character=card, user_name="Sam", history=history, context_size=2048)
    recording = RecordingCounter(counter)
    estimated = build_prompt(inputs, recording)
    assert await counter.prefetch(recording.texts, limit=100) > 0
    exact = build_prompt(inputs, counter)
    assert len(exact.messages) > len(estimated.messages)
    real = sum(true_count(m.content) + 3 + (1 if m.name else 0) for m in exact.messages) + 3
    assert real <= inputs.context_size - inputs.max_tokens
    assert max(map(len, backend.asked)) <= 20_000


# --- a real backend over loopback -------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as c:
        yield c


async def test_llama_server_tokenize_calibrates_and_prefetches(client: httpx.AsyncClient) -> None:
    async with FakeLlamaCpp(api_key=None) as fake:
        config = BackendConfig(
            provider="llamacpp-native", mode="text", base_url=fake.base_url, timeout=5
        )
        backend = build_backend("local", config, client, None)
        counter = Tokenizers().counter_for("local", "llamacpp-native", "", backend)
        assert isinstance(counter, CalibratedCounter)
        samples = calibration_samples([PROSE * 12], samples=4, chars=500)
        calibration = await counter.calibrate(samples)
        words = sum(len(fake_tokens(s)) for s in samples)
        assert calibration is not None
        assert calibration.tokens == words  # one token per word on this fake
        assert counter.count(PROSE) >= len(fake_tokens(PROSE))
        assert await counter.prefetch(["Mira waves.", "Sam nods and sits down."]) == 2
        assert counter.count("Sam nods and sits down.") == 5
        assert {(r.method, r.path) for r in fake.requests} == {("POST", "/tokenize")}
        assert fake.requests[-1].body == {"content": "Sam nods and sits down."}
