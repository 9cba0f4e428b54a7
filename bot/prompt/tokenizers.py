"""Which token counter a backend + model gets, and the counters' state across turns.

Selection is data: :data:`PROVIDER_TOKENIZERS` maps a provider to a kind; a provider missing
there (routers such as OpenRouter, custom servers) is decided by the model name: an OpenAI
model (:data:`~bot.prompt.tokenizer_tiktoken.MODEL_ENCODINGS`) gets tiktoken, anything else
an estimate. An explicit ``kind`` (a backend's tokenizer setting) overrides both;
``sillytavern`` is SillyTavern's own estimate, for byte-for-byte parity with its prompts.

================  ========================================================================
kind              counts with
================  ========================================================================
``tiktoken``      OpenAI's encoding, exact and offline (an estimate if its data is missing)
``backend``       the backend's endpoint for prefetched texts, a calibrated estimate else
``estimate``      characters, with a safety margin (no tokenizer at hand)
``sillytavern``   ``ceil(UTF-16 length / 3.35)``, no margin, exactly as SillyTavern
================  ========================================================================

Usage per turn (the engine)::

    counter = tokenizers.counter_for(name, provider, model, backend)
    if isinstance(counter, CalibratedCounter) and counter.needs_calibration():
        await counter.calibrate(calibration_samples(texts), backend)  # then store it
    recording = RecordingCounter(counter)
    built = build_prompt(inputs, recording)
    if isinstance(counter, PrefetchingCounter) and recording.texts:
        async with asyncio.timeout(2):  # what did not arrive in time stays estimated
            await counter.prefetch(recording.texts)
        built = build_prompt(inputs, counter)

The builder counts formatted pieces (instruct sequences, names) and the assembled prompt, not
raw messages, so the texts to prefetch are best taken from a first build, as above: a
second build then finds exactly those strings counted.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, runtime_checkable

from bot.backends.base import TokenCountingBackend
from bot.errors import ConfigError
from bot.prompt.tokenizer_cache import CountCache
from bot.prompt.tokenizer_calibrated import CalibratedCounter, Calibration
from bot.prompt.tokenizer_tiktoken import (
    MODEL_ENCODINGS,
    EncodingStore,
    TiktokenCounter,
    encoding_for_model,
)
from bot.prompt.tokens import EstimateCounter, TokenCounter


class TokenizerKind(enum.StrEnum):
    AUTO = "auto"
    SILLYTAVERN = "sillytavern"
    TIKTOKEN = "tiktoken"
    BACKEND = "backend"
    ESTIMATE = "estimate"


_K = TokenizerKind

# The providers whose server counts tokens (their preset row or family has an endpoint), and
# OpenAI, whose tokenizer we have locally.
PROVIDER_TOKENIZERS: Mapping[str, TokenizerKind] = {
    "openai": _K.TIKTOKEN,
    "claude": _K.BACKEND,
    "gemini": _K.BACKEND,
    "vertex": _K.BACKEND,
    "cohere": _K.BACKEND,
    "llamacpp": _K.BACKEND,
    "llamacpp-native": _K.BACKEND,
    "koboldcpp": _K.BACKEND,
    "koboldcpp-native": _K.BACKEND,
    "textgen-webui": _K.BACKEND,
    "tabbyapi": _K.BACKEND,
}

# An OpenAI model whose name is in no table: OpenAI's newest encoding.
DEFAULT_OPENAI_ENCODING = "o200k_base"

# Rates for OpenAI's encodings when their data is not installed, measured with both encodings
# on the SillyTavern fixtures (the ChatML Seraphina prompt cut in 6 samples: 4.14 and 4.10
# chars/token, worst sample +19%). With these, the 11 Eldoria lore entries and chat-completion
# golden messages are over-counted by 6–30% each and 24% in all, the Llama 3 golden prompt by
# 20%; none is under-counted.
TIKTOKEN_FALLBACK = Calibration(chars_per_token=4.1, tokens_per_unit=1.0, margin=0.2)

SelectedCounter = EstimateCounter | TiktokenCounter | CalibratedCounter


class RecordingCounter:
    """Counts with ``inner`` and keeps every text counted, in the builder's order (fixed
    parts, then the newest messages first), to prefetch exactly those."""

    def __init__(self, inner: TokenCounter) -> None:
        self.inner = inner
        self.texts: list[str] = []

    def count(self, text: str) -> int:
        self.texts.append(text)
        return self.inner.count(text)


@runtime_checkable
class PrefetchingCounter(Protocol):
    """A counter that can count texts ahead of a build, off the synchronous path."""

    async def prefetch(
        self, texts: Iterable[str], backend: TokenCountingBackend | None = None
    ) -> int: ...


def resolve_kind(
    provider: str,
    model: str,
    kind: TokenizerKind | str = TokenizerKind.AUTO,
    providers: Mapping[str, TokenizerKind] = PROVIDER_TOKENIZERS,
    models: Mapping[str, str] = MODEL_ENCODINGS,
) -> TokenizerKind:
    """The concrete kind for a backend; ``kind`` is its setting (``auto`` unless set)."""
    chosen = parse_kind(kind)
    if chosen is not TokenizerKind.AUTO:
        return chosen
    listed = providers.get(provider.strip().lower())
    if listed is not None:
        return listed
    if encoding_for_model(model, models) is not None:
        return TokenizerKind.TIKTOKEN
    return TokenizerKind.ESTIMATE


def parse_kind(kind: TokenizerKind | str) -> TokenizerKind:
    try:
        return TokenizerKind(str(kind).strip().lower())
    except ValueError:
        known = ", ".join(k.value for k in TokenizerKind)
        raise ConfigError(f"unknown tokenizer {kind!r} (known: {known})") from None


class Tokenizers:
    """Selects counters and keeps them (with their caches and calibrations) across turns.

    One per process, built at start-up and injected; :meth:`preload` loads the OpenAI
    encodings off the event loop. Counters are kept per backend + model, the least recently
    used dropped past ``max_counters``. A counter serves every channel on its backend, so its
    cache is sized for several chats (a 400-message chat fills about 850 entries, 200k
    characters; at most ``cache_chars`` of text plus ~150 bytes an entry are held).
    """

    def __init__(
        self,
        *,
        encodings: EncodingStore | None = None,
        providers: Mapping[str, TokenizerKind] = PROVIDER_TOKENIZERS,
        models: Mapping[str, str] = MODEL_ENCODINGS,
        cache_entries: int = 16384,
        cache_chars: int = 8_000_000,
        max_counters: int = 256,
    ) -> None:
        self.encodings = encodings if encodings is not None else EncodingStore()
        self._providers = providers
        self._models = models
        self._cache_entries = cache_entries
        self._cache_chars = cache_chars
        self._max_counters = max(1, max_counters)
        self._counters: OrderedDict[tuple[str, ...], SelectedCounter] = OrderedDict()

    def encoding_for(
        self, provider: str, model: str, *, kind: TokenizerKind | str = TokenizerKind.AUTO
    ) -> str | None:
        """The OpenAI encoding a backend will count with, or ``None`` when it uses none."""
        if resolve_kind(provider, model, kind, self._providers, self._models) is not _K.TIKTOKEN:
            return None
        return encoding_for_model(model, self._models) or DEFAULT_OPENAI_ENCODING

    async def preload(self, names: Iterable[str]) -> list[str]:
        """Load these encodings now, in a worker thread (o200k: 0.25 s and 75 MiB; cl100k:
        0.15 s and 35 MiB), so no turn waits for one; pass only the configured backends'
        (:meth:`encoding_for`). Returns the names available."""
        return await self.encodings.preload(names)

    def counter_for(
        self,
        backend_name: str,
        provider: str,
        model: str,
        backend: object | None = None,
        *,
        kind: TokenizerKind | str = TokenizerKind.AUTO,
    ) -> SelectedCounter:
        """The counter for one configured backend and model (the same object each call).

        ``backend`` is used for ``backend`` counting when it implements
        :class:`~bot.backends.base.TokenCountingBackend`; without it that kind estimates.
        """
        chosen = resolve_kind(provider, model, kind, self._providers, self._models)
        if chosen is TokenizerKind.TIKTOKEN:
            encoding = encoding_for_model(model, self._models) or DEFAULT_OPENAI_ENCODING
            return self._tiktoken(encoding)  # loads it here unless preloaded
        if chosen is TokenizerKind.SILLYTAVERN:
            return self._kept(("sillytavern",), EstimateCounter)
        counting = backend if isinstance(backend, TokenCountingBackend) else None
        if chosen is TokenizerKind.BACKEND:
            counter = self._kept(
                ("backend", backend_name, model),
                lambda: self._calibrated(f"{backend_name}:{model}", None, counting),
            )
            if isinstance(counter, CalibratedCounter) and counting is not None:
                counter.backend = counting  # a reloaded config brings a new backend object
            return counter
        return self._kept(
            ("estimate", backend_name, model),
            lambda: self._calibrated(f"{backend_name}:{model} (estimate)", None, None),
        )

    def _tiktoken(self, encoding: str) -> SelectedCounter:
        loaded = self.encodings.get(encoding)
        if loaded is None:
            return self._kept(
                ("estimate", encoding),
                lambda: self._calibrated(f"{encoding} (estimate)", TIKTOKEN_FALLBACK, None),
            )
        # one counter per encoding: every backend serving its models shares the cache
        return self._kept(
            ("tiktoken", encoding), lambda: TiktokenCounter(loaded, self._new_cache())
        )

    def _calibrated(
        self, name: str, calibration: Calibration | None, backend: TokenCountingBackend | None
    ) -> CalibratedCounter:
        return CalibratedCounter(
            name, calibration=calibration, backend=backend, cache=self._new_cache()
        )

    def _new_cache(self) -> CountCache:
        return CountCache(self._cache_entries, self._cache_chars)

    def _kept(self, key: tuple[str, ...], make: Callable[[], SelectedCounter]) -> SelectedCounter:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = make()
            while len(self._counters) > self._max_counters:
                self._counters.popitem(last=False)
        else:
            self._counters.move_to_end(key)
        return counter
