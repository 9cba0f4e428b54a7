"""Google credentials for the gemini family: an API key, or a service account's OAuth token.

A service account authenticates by signing a short-lived JWT (RS256) with its private key and
trading it at the account's ``token_uri`` for an access token (Google's "JWT bearer" OAuth
flow, RFC 7523). The token is cached until shortly before it expires; one lock makes
concurrent turns share a single refresh. ``cryptography`` does the signing, so no Google SDK
is needed and the flow works against a loopback fake.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bot.backends.errors import decode_json, redact, transport_error, truncate
from bot.errors import BackendAuthError, BackendError, BackendUnavailable, ConfigError

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600  # the longest Google accepts
REFRESH_MARGIN = 300.0  # refresh five minutes early: a token must outlive a long stream

Clock = Callable[[], float]

_ACCOUNT_HINT = (
    "check the service account key file: it may be deleted, disabled or from another project"
)


class GoogleAuth(Protocol):
    """Request headers that authenticate to Google, and the secrets to keep out of messages."""

    async def headers(self) -> dict[str, str]: ...

    def secrets(self) -> tuple[str, ...]: ...

    def invalidate(self) -> None:
        """The server refused the credentials: fetch fresh ones next time."""
        ...


class ApiKeyAuth:
    """AI Studio and Vertex "express mode": the key in ``x-goog-api-key`` (never in the URL,
    where it would end up in logs)."""

    def __init__(self, key: str) -> None:
        self._key = key

    async def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._key} if self._key else {}

    def secrets(self) -> tuple[str, ...]:
        return (self._key,) if self._key else ()

    def invalidate(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The parts of a service-account JSON key file that the token flow needs."""

    client_email: str
    private_key: rsa.RSAPrivateKey
    private_key_id: str
    token_uri: str
    project_id: str


def load_service_account(path: Path) -> ServiceAccount:
    """Read and check a key file; every problem is a start-up :class:`ConfigError`."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"cannot read the service account file {path}: {exc.strerror or exc}",
            hint="set `gemini.service_account_file` to the JSON key downloaded from Google Cloud",
        ) from None
    except ValueError:
        raise ConfigError(f"{path}: not a JSON service account key file") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(
            f"{path}: not a service account key (its `type` is not `service_account`)",
            hint="create a key for a service account under IAM → Service accounts → Keys",
        )
    missing = [k for k in ("client_email", "private_key") if not isinstance(info.get(k), str)]
    if missing:
        raise ConfigError(f"{path}: the key file lacks {', '.join(missing)}")
    try:
        key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{path}: the private key could not be read") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{path}: the private key is not an RSA key")
    return ServiceAccount(
        client_email=info["client_email"],
        private_key=key,
        private_key_id=str(info.get("private_key_id") or ""),
        token_uri=str(info.get("token_uri") or DEFAULT_TOKEN_URI),
        project_id=str(info.get("project_id") or ""),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed_assertion(account: ServiceAccount, scope: str, now: float) -> str:
    """The RS256 JWT a service account presents to its token endpoint."""
    header = {"alg": "RS256", "typ": "JWT"}
    if account.private_key_id:
        header["kid"] = account.private_key_id
    issued = int(now)
    claims = {
        "iss": account.client_email,
        "scope": scope,
        "aud": account.token_uri,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME,
    }
    signing_input = (
        _b64(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = account.private_key.sign(
        signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
    )
    return signing_input + "." + _b64(signature)


class ServiceAccountAuth:
    """A cached OAuth access token for one service account, sent as ``Authorization: Bearer``.

    The injected ``client`` is shared and owned by the caller. ``clock`` is wall-clock time
    (it signs the JWT's ``iat``/``exp`` as well as timing the cache).
    """

    def __init__(
        self,
        backend: str,
        client: httpx.AsyncClient,
        account: ServiceAccount,
        *,
        scope: str = CLOUD_PLATFORM_SCOPE,
        clock: Clock = time.time,
        timeout: float = 30.0,
    ) -> None:
        self._backend = backend
        self._client = client
        self._account = account
        self._scope = scope
        self._clock = clock
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._seen: list[str] = []  # every token issued, so an old one is redacted too

    @property
    def account(self) -> ServiceAccount:
        return self._account

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token()}"}

    def secrets(self) -> tuple[str, ...]:
        return tuple(self._seen)

    def invalidate(self) -> None:
        self._expires = 0.0

    async def token(self) -> str:
        """A valid access token, fetched only when the cached one is (nearly) expired."""
        if self._token and self._clock() < self._expires - REFRESH_MARGIN:
            return self._token
        async with self._lock:
            # another task may have refreshed it while this one waited for the lock
            if self._token and self._clock() < self._expires - REFRESH_MARGIN:
                return self._token
            token, lifetime = await self._exchange()
            self._token, self._expires = token, self._clock() + lifetime
            self._seen.append(token)
            return token

    async def _exchange(self) -> tuple[str, float]:
        now = self._clock()
        form = {
            "grant_type": JWT_BEARER_GRANT,
            "assertion": signed_assertion(self._account, self._scope, now),
        }
        try:
            response = await self._client.post(
                self._account.token_uri, data=form, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            error = transport_error(self._backend, exc, midstream=False)
            error.message = f"getting a Google access token: {error.message}"
            error.args = (error.message,)
            raise error from exc
        payload = decode_json(response.content)
        if response.is_success and isinstance(payload, dict):
            token = payload.get("access_token")
            lifetime = payload.get("expires_in", 3600)
            if isinstance(token, str) and token and isinstance(lifetime, int | float):
                return token, float(lifetime)
        raise self._failure(response, payload)

    def _failure(self, response: httpx.Response, payload: object) -> BackendError:
        said = ""
        if isinstance(payload, dict):
            code, text = payload.get("error"), payload.get("error_description")
            said = ": ".join(str(p) for p in (code, text) if isinstance(p, str) and p)
        if not said:
            said = response.reason_phrase or "no explanation"
        said = truncate(redact(said, self.secrets()))
        message = f"the token endpoint refused the service account (HTTP {response.status_code})"
        if response.status_code >= 500 or response.status_code in (408, 429):
            return BackendUnavailable(
                f"the Google token endpoint failed (HTTP {response.status_code}): {said}",
                backend=self._backend,
            )
        if response.is_success:
            return BackendAuthError(
                "the Google token endpoint sent no access token",
                backend=self._backend,
                detail=said,
                hint=_ACCOUNT_HINT,
            )
        return BackendAuthError(
            f"{message}: {said}", backend=self._backend, detail=said, hint=_ACCOUNT_HINT
        )
