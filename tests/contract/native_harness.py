"""What the native families' contract harnesses (llama.cpp, Ollama, NovelAI) share: the
provider, mode, key and model are chosen per harness. Each family's test module subclasses
:class:`NativeHarness` with its server's own words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.backends.base import Mode
from tests.contract.harness import ContractHarness
from tests.contract.harness import unwrap as unwrap
from tests.fakes.base import LoopbackServer


@dataclass
class NativeHarness(ContractHarness):
    fake: LoopbackServer
    provider: str
    mode: Mode
    secret: str
    model: str = "test-model"
    stream: bool = True
    config: dict[str, Any] = field(default_factory=dict)
