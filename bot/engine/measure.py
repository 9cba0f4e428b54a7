"""How prompts for a backend are measured and formatted beyond the presets: its tokenizer
(tiktoken, or the server's own count, calibrated) and, for llama.cpp, the model's own chat
template from ``GET /props``. Both are read once per backend and kept.
"""

from __future__ import annotations

import asyncio
import contextlib

from bot.backends.pool import BackendPool
from bot.errors import ConfigError
from bot.prompt.jinja import ChatTemplate
from bot.prompt.tokenizer_calibrated import CalibratedCounter, calibration_samples
from bot.prompt.tokenizers import Tokenizers
from bot.prompt.tokens import TokenCounter


class Measures:
    def __init__(
        self, backends: BackendPool, default: TokenCounter, tokenizers: Tokenizers | None
    ) -> None:
        self._backends = backends
        self._counter = default
        self._tokenizers = tokenizers
        self._templates: dict[str, ChatTemplate] = {}

    def counter(self, name: str) -> TokenCounter:
        """The token counter of backend ``name``: its tokenizer when one is wired (tiktoken,
        the server's own count, calibrated), else the injected default."""
        if self._tokenizers is None:
            return self._counter
        backend, config = self._backends.get(name)
        return self._tokenizers.counter_for(
            name, config.provider, config.model, backend, kind=config.tokenizer
        )

    async def calibrate(self, name: str, texts: list[str]) -> None:
        """Let a server-counted backend measure its tokenizer on real text, once in a while
        (never longer than a few seconds: a slow count must not hold the reply)."""
        counter = self.counter(name)
        if not isinstance(counter, CalibratedCounter) or counter.backend is None:
            return
        if counter.needs_calibration():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await counter.calibrate(calibration_samples(texts))

    async def model_template(self, name: str) -> ChatTemplate | None:
        """The model's own chat template (llama.cpp ``/props``), read once per backend."""
        backend, config = self._backends.get(name)
        if not config.model_template or config.mode != "text":
            return None
        if name not in self._templates:
            props = getattr(getattr(backend, "inner", backend), "props", None)
            if props is None:
                raise ConfigError(
                    f"backend {name!r}: model_template needs a server with GET /props",
                    hint="use provider: llamacpp-native, or turn model_template off",
                )
            served = await props()
            self._templates[name] = ChatTemplate.from_props(dict(served.raw))
        return self._templates[name]
