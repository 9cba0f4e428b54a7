"""What every family's contract harness shares: the real backend built on the family's fake
through ``build_backend`` (retries included, their waits recorded instead of slept), the
request the contract sends, and the contract's replies in the words most wires share.

A family's harness is a dataclass subclass of :class:`ContractHarness` holding its fake and
settings; it says what differs (its config, error bodies, malformed chunk, replies of its
own) and inherits the rest of :class:`tests.contract.backend_contract.Harness`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from pydantic import SecretStr

from bot.backends.base import Backend, GenerationRequest, Mode, PromptMessage
from bot.backends.registry import FAMILIES, BackendFactory, build_backend
from bot.backends.retry import RetryingBackend, RetryPolicy, Sleep
from bot.config import BackendConfig
from tests.contract.backend_contract import ErrorKind
from tests.fakes.base import (
    HTML_502,
    Cut,
    Endless,
    Huge,
    InStreamError,
    LoopbackServer,
    Raw,
    Status,
    Text,
)

CHATML = "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"
MESSAGES = (
    PromptMessage("system", "You are Aria."),
    PromptMessage("user", "Hello there", name="Sam"),
)


def recorder(sleeps: list[float]) -> Sleep:
    """A sleep that records how long it was asked to wait, and returns at once."""

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    return record


def unwrap(backend: Backend) -> Any:
    """The family's own backend inside the retry wrapper (for its extra methods)."""
    return getattr(backend, "inner", backend)


class ContractHarness:
    """The base of a family's harness. Subclasses are dataclasses whose fields (or plain
    class attributes, where a family has one value) give the attributes declared first;
    the ones with a value here are what most families share.

    No class value for ``provider`` and ``mode``: a dataclass would take it as the default
    of a subclass's field of that name, and its positional fields after it would break.
    """

    fake: LoopbackServer
    secret: str
    stream: bool
    config: dict[str, Any]
    provider: str
    mode: Mode
    model: str = ""  # the configured model
    request_model: str = ""  # the model a request names ("": the configured one)
    prompt: str = CHATML
    stop: tuple[str, ...] = ("\nUser:",)
    families: Mapping[str, BackendFactory] = FAMILIES
    html_502: bytes = HTML_502
    raw_type: str | None = "text/event-stream"  # the content type of empty and torn bodies
    malformed: bytes = b""  # a chunk torn mid-JSON, in this wire's framing

    @property
    def disconnected(self) -> asyncio.Event:
        return self.fake.disconnected

    def request(self, **changes: Any) -> GenerationRequest:
        fields: dict[str, Any] = {
            "mode": self.mode,
            "model": self.request_model,
            "max_tokens": 64,
            "stop": self.stop,
        }
        if self.mode == "chat":
            fields["messages"] = MESSAGES
        else:
            fields["prompt"] = self.prompt
        fields.update(changes)
        return GenerationRequest(**fields)

    # -- the backend -----------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """This family's config fields (beside ``base_url``, ``timeout`` and ``config``)."""
        return {
            "provider": self.provider,
            "mode": self.mode,
            "model": self.model,
            "stream": self.stream,
        }

    def backend_config(self, *, base_url: str | None, api_key: str | None) -> BackendConfig:
        fields = {"base_url": base_url or self.fake.base_url, "timeout": 5, **self.settings()}
        return BackendConfig(**(fields | self.config))

    def api_key(self, api_key: str | None) -> SecretStr | None:
        key = api_key or self.secret
        return SecretStr(key) if key else None

    def backend(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        sleeps: list[float] | None = None,
    ) -> Backend:
        """The real backend, as ``build_backend`` makes it (retry wrapper and all)."""
        return build_backend(
            "main",
            self.backend_config(base_url=base_url, api_key=api_key),
            client,
            self.api_key(api_key),
            families=self.families,
            retry=RetryPolicy(attempts=3),
            sleep=asyncio.sleep if sleeps is None else recorder(sleeps),
        )

    def inner(self, client: httpx.AsyncClient, **kw: Any) -> Any:
        """The family's own backend (for its extra methods), built as :meth:`backend`."""
        backend = self.backend(client, **kw)
        assert isinstance(backend, RetryingBackend)
        return backend.inner

    def request_count(self) -> int:
        return len(self.fake.requests)

    # -- the contract's replies ------------------------------------------------------------

    def error_replies(self, retry_after: str | None) -> Mapping[ErrorKind, object]:
        """Each contract error as the real server words it; bodies echo the API key."""
        raise NotImplementedError

    def reply_error(self, kind: ErrorKind, *, retry_after: str | None = None) -> None:
        self.fake.enqueue(self.error_replies(retry_after)[kind])

    def reply_text(self, deltas: Sequence[str], *, usage: tuple[int, int] | None) -> None:
        self.fake.enqueue(Text(deltas, usage=usage))

    def reply_error_after(self, deltas: Sequence[str]) -> None:
        self.fake.enqueue(InStreamError(deltas))

    def reply_cut_after(self, deltas: Sequence[str]) -> None:
        self.fake.enqueue(Cut(deltas))

    def reply_endless(self) -> None:
        self.fake.enqueue(Endless())

    def reply_html(self, status: int) -> None:
        if status == 200:
            self.fake.enqueue(Raw(self.html_502, content_type="text/html"))
        else:
            self.fake.enqueue(Status(status, self.html_502))

    def reply_empty(self) -> None:
        self.fake.enqueue(Raw(b"", content_type=self.raw_type))

    def reply_malformed(self) -> None:
        self.fake.enqueue(Raw(self.malformed, content_type=self.raw_type))

    def reply_huge(self, size: int) -> None:
        self.fake.enqueue(Huge(size))
