"""The gemini family's contract harness: the fake Gemini server scripted in the contract's
words, and the real backend built on it through ``build_backend``, for three set-ups:
AI Studio with an API key, Vertex AI with a service account, Vertex AI in express mode."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from bot.config import BackendConfig
from tests.contract.backend_contract import ErrorKind
from tests.contract.harness import ContractHarness
from tests.fakes.base import Status
from tests.fakes.gemini_server import Account, FakeGemini
from tests.fakes.gemini_wire import (
    ERROR_404,
    ERROR_500,
    ERROR_503,
    ERROR_CONTEXT,
    ERROR_DAILY_QUOTA,
    HTML_502,
    VERTEX_429,
    InStreamError,
    Text,
    error_429,
    key_invalid,
)

SECRET = "AIzaSy-live-7d1c9e3b5a2f4e6c8b0d"
TOKEN_SECRET = "tok-live-5e8a2c4f6b1d3e7a9c"
EMAIL = "sillybot@proj-sa.iam.gserviceaccount.com"
MODEL = "gemini-2.5-flash"
Variant = Literal["aistudio", "vertex-sa", "vertex-express"]
Keys = tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]  # the account's, and a stranger's
VERTEX_PATH = "/v1/projects/{project}/locations/{region}/publishers/google"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_service_account(
    path: Path, key: rsa.RSAPrivateKey, token_uri: str, *, project: str = "proj-sa"
) -> Path:
    """A key file shaped like the ones Google Cloud hands out."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": EMAIL,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


def fake_for(variant: Variant, key: rsa.RSAPrivateKey, **kw: Any) -> FakeGemini:
    if variant == "aistudio":
        return FakeGemini(api_key=SECRET, **kw)
    if variant == "vertex-express":
        prefix = VERTEX_PATH.format(project="proj-express", region="global")
        return FakeGemini(api_key=SECRET, prefix=prefix, vertex=True, **kw)
    prefix = VERTEX_PATH.format(project="proj-sa", region="us-central1")
    account = Account(EMAIL, key.public_key())
    return FakeGemini(
        auth="bearer",
        prefix=prefix,
        vertex=True,
        account=account,
        token_secret=TOKEN_SECRET,
        **kw,
    )


@dataclass
class GeminiHarness(ContractHarness):
    fake: FakeGemini
    variant: Variant
    folder: Path
    key: rsa.RSAPrivateKey
    wrong_key: rsa.RSAPrivateKey
    stream: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    secret: str = field(init=False)
    mode = "chat"
    model = request_model = MODEL
    html_502 = HTML_502
    malformed = b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]\r\n\r\n'

    def __post_init__(self) -> None:
        self.secret = TOKEN_SECRET if self.variant == "vertex-sa" else SECRET
        self.provider = "gemini" if self.variant == "aistudio" else "vertex"

    def backend_config(self, *, base_url: str | None, api_key: str | None) -> BackendConfig:
        """A service account's key file, or Vertex express's project; a wrong ``api_key``
        for a service account is a stranger's account."""
        options: dict[str, Any] = {}
        url = self.fake.base_url
        if self.variant != "aistudio":
            url = self.fake.root + VERTEX_PATH
        if self.variant == "vertex-express":
            options = {"project": "proj-express", "region": "global"}
        elif self.variant == "vertex-sa":
            wrong = api_key is not None
            key = self.wrong_key if wrong else self.key
            name = "wrong.json" if wrong else "account.json"
            path = write_service_account(self.folder / name, key, self.fake.token_url)
            options = {"service_account_file": path, "region": "us-central1"}
        extra = dict(self.config)
        options.update(extra.pop("gemini", {}))
        return BackendConfig(
            **self.settings(), base_url=base_url or url, timeout=5, gemini=options, **extra
        )

    def api_key(self, api_key: str | None) -> SecretStr | None:
        return None if self.variant == "vertex-sa" else SecretStr(api_key or SECRET)

    def request_count(self) -> int:
        return len(self.fake.generations())

    def error_replies(self, retry_after: str | None) -> Mapping[ErrorKind, object]:
        delay = f"{retry_after}s" if retry_after else None
        vertex = self.variant != "aistudio" and delay is None
        return {
            "auth": Status(400, key_invalid(SECRET)),
            "not_found": Status(404, ERROR_404),
            "rate_limited": Status(429, VERTEX_429 if vertex else error_429(delay)),
            "server_error": Status(500, ERROR_500),
            "overloaded": Status(503, ERROR_503),
            "context": Status(400, ERROR_CONTEXT),
            "quota": Status(429, ERROR_DAILY_QUOTA),
        }

    def reply_error(self, kind: ErrorKind, *, retry_after: str | None = None) -> None:
        if kind == "auth" and self.variant == "vertex-sa":
            self.fake.refuse_tokens += 1  # the next bearer token is refused, and echoed
            return
        super().reply_error(kind, retry_after=retry_after)

    def reply_text(self, deltas: Sequence[str], *, usage: tuple[int, int] | None) -> None:
        self.fake.enqueue(Text(deltas, usage=usage))

    def reply_error_after(self, deltas: Sequence[str]) -> None:
        self.fake.enqueue(InStreamError(deltas))


def on(fake: FakeGemini, variant: Variant, tmp: Path, keys: Keys, **kw: Any) -> GeminiHarness:
    """A harness on ``fake`` for ``variant``, with the session's keys."""
    return GeminiHarness(fake, variant, tmp, keys[0], keys[1], **kw)
