"""The backend seam: one async-generator method, plus the values it speaks.

A backend turns a :class:`GenerationRequest` into a stream of :data:`StreamEvent`. It maps
every HTTP status and transport failure into :mod:`bot.errors` in one function, so the engine
never sees an httpx exception. Closing the generator (``aclose()`` or task cancellation) must
close the HTTP stream.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from bot.types import Role

Mode = Literal["chat", "text"]


@dataclass(frozen=True, slots=True)
class PromptMessage:
    role: Role
    content: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What to generate. ``messages`` for chat completion, ``prompt`` for text completion.

    ``sampler`` holds sampler settings in the core's names (temperature, top_p, …); a family
    translates them and drops what its backend does not support.
    """

    mode: Mode
    model: str
    max_tokens: int
    messages: tuple[PromptMessage, ...] = ()
    prompt: str = ""
    stop: tuple[str, ...] = ()
    sampler: Mapping[str, Any] = field(default_factory=dict)


class FinishReason(enum.StrEnum):
    STOP = "stop"
    STOP_SEQUENCE = "stop_sequence"
    LENGTH = "length"
    FILTERED = "filtered"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    raw: str = ""  # the backend's own word, kept for logs


@dataclass(frozen=True, slots=True)
class Status:
    """Progress to show while no text has arrived (AI Horde's queue position and kudos)."""

    text: str


StreamEvent = TextDelta | ReasoningDelta | Usage | Finish | Status


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    context_length: int | None = None


@runtime_checkable
class Backend(Protocol):
    """Streams one generation.

    Contract:
    - yields :class:`TextDelta`/:class:`ReasoningDelta` in order, then at most one
      :class:`Usage`, then exactly one :class:`Finish` (last);
    - raises a :class:`bot.errors.BackendError` subclass for every failure; a failure after
      the first delta raises :class:`bot.errors.BackendStreamCut` or another BackendError and
      the caller keeps what it already received;
    - closing the iterator closes the connection (and calls a native abort where one exists).
    """

    name: str

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]: ...


@runtime_checkable
class ModelCatalog(Protocol):
    """A backend that can list its models (`sillybot check`, `sillybot models`)."""

    async def list_models(self) -> list[ModelInfo]: ...


@runtime_checkable
class TokenCountingBackend(Protocol):
    """A backend that counts tokens with the model's own tokenizer, through its endpoint
    (llama.cpp ``/tokenize``, KoboldCpp ``/api/extra/tokencount``, Claude ``count_tokens``…)."""

    async def count_tokens(self, text: str) -> int: ...
