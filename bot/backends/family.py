"""What the JSON-over-HTTP families' backend classes share, and the registry's factory for
the ones built from the standard settings.

A family subclasses :class:`JsonBackend` naming its one error mapping (``family_error``) and,
where its routes live at the server's root, the API prefixes a user may have copied into the
base URL; it writes only its wire: request bodies, decoders, extra endpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar, Protocol

import httpx
from pydantic import SecretStr

from bot.backends.base import Backend, GenerationRequest
from bot.backends.errors import Failure
from bot.backends.extras import NativeExtras, native_extras
from bot.backends.http_json import DEFAULT_MAX_BODY, JsonHttp, api_secret, request_headers
from bot.backends.native import server_root
from bot.backends.presets import ProviderPreset
from bot.config import BackendConfig
from bot.errors import BackendError

Factory = Callable[
    [str, BackendConfig, ProviderPreset, str, httpx.AsyncClient, SecretStr | None], Backend
]
"""(name, config, preset, base_url, client, api_key) → an unwrapped backend (the shape of
:data:`bot.backends.registry.BackendFactory`)."""


class FamilyError(Protocol):
    """A family's one mapping function (``anthropic_error``, ``openai_error``…)."""

    def __call__(
        self,
        backend: str,
        failure: Failure,
        *,
        body: bytes = b"",
        secrets: Iterable[str] = (),
        midstream: bool = False,
    ) -> BackendError: ...


class JsonBackend:
    """A backend's settings, its key kept out of every error, and the :class:`JsonHttp` it
    calls through on the shared client (owned by the caller, never closed here).

    ``api_prefixes``: API prefixes cut off a base URL a user copied them into, for routes
    that start at the server's root (none: the prefix is part of the base URL).
    ``extras``: the family has the server's own token counter and abort where the preset
    row names them (:mod:`bot.backends.extras`).
    """

    family_error: ClassVar[FamilyError]
    api_prefixes: ClassVar[tuple[str, ...]] = ()
    extras: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        preset: ProviderPreset,
        base_url: str,
        api_key: SecretStr | None = None,
        model: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        stream: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.name = name
        self.preset = preset
        self.base_url = server_root(base_url, *self.api_prefixes)
        self._model = model
        self._stream = stream
        key, self._secrets = api_secret(api_key)
        self._headers = request_headers(preset, key, headers)
        self._http = JsonHttp(
            name,
            client,
            headers=self._headers,
            timeout=timeout,
            error=self._error,
            max_body=max_body_bytes,
        )
        self._extras: NativeExtras | None = None
        if self.extras:
            self._extras = native_extras(
                name,
                client,
                preset,
                self.base_url,
                self._headers,
                error=self._error,
                timeout=timeout,
            )

    def _error(
        self, failure: Failure, *, body: bytes = b"", midstream: bool = False
    ) -> BackendError:
        """The family's mapping, named after this backend, its key scrubbed."""
        return self.family_error(
            self.name, failure, body=body, secrets=self._secrets, midstream=midstream
        )


class StandardBackend(Protocol):
    """A backend class whose constructor takes the standard settings."""

    def __call__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        preset: ProviderPreset,
        base_url: str,
        api_key: SecretStr | None,
        model: str,
        headers: Mapping[str, str] | None,
        timeout: float,
        stream: bool,
    ) -> Backend: ...


def standard_factory(backend: StandardBackend) -> Factory:
    """The registry's factory that builds ``backend`` from a configured backend."""

    def build(
        name: str,
        config: BackendConfig,
        preset: ProviderPreset,
        base_url: str,
        client: httpx.AsyncClient,
        api_key: SecretStr | None,
    ) -> Backend:
        return backend(
            name,
            client,
            preset=preset,
            base_url=base_url,
            api_key=api_key,
            model=config.model,
            headers=config.headers,
            timeout=config.timeout,
            stream=config.stream,
        )

    return build


def require_chat(request: GenerationRequest, backend: str, service: str) -> None:
    """Chat-only services: a text-mode request is a config mistake with one clear fix."""
    if request.mode != "chat":
        raise BackendError(
            f"{service} has no text completion endpoint",
            backend=backend,
            hint="set `mode: chat` for this backend",
        )
