"""Vertex AI specifics: service-account tokens against the fake token endpoint (signature,
claims, caching, refresh, revocation, outages), the URL for each region, start-up errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bot.backends.base import Backend
from bot.backends.gemini import GeminiBackend
from bot.backends.google_auth import ServiceAccountAuth, load_service_account
from bot.backends.presets import PRESETS
from bot.backends.registry import build_backend
from bot.backends.retry import RetryingBackend
from bot.config import BackendConfig
from bot.errors import BackendAuthError, ConfigError
from tests.contract.backend_contract import assert_no_secret, collect, text_of
from tests.contract.gemini_harness import (
    EMAIL,
    MODEL,
    SECRET,
    TOKEN_SECRET,
    GeminiHarness,
    Keys,
    fake_for,
    write_service_account,
)
from tests.fakes.base import Status
from tests.fakes.gemini_checks import SCOPE
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.gemini_wire import Text


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def vertex(rsa_keys: Keys, clock: Clock) -> AsyncIterator[FakeGemini]:
    async with fake_for("vertex-sa", rsa_keys[0], clock=clock) as fake:
        yield fake


def harness(fake: FakeGemini, tmp: Path, rsa_keys: Keys) -> GeminiHarness:
    return GeminiHarness(fake, "vertex-sa", tmp, rsa_keys[0], rsa_keys[1])


async def test_token_is_fetched_once_signed_right_and_sent_as_bearer(
    vertex: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    h = harness(vertex, tmp_path, rsa_keys)
    backend = h.backend(client)
    for _ in range(2):
        events, error = await collect(backend, h.request())
        assert error is None and text_of(events) == "Hello"
    assert len(vertex.token_claims) == 1  # cached for the second turn
    claims = vertex.token_claims[0]
    assert (claims["iss"], claims["scope"], claims["aud"]) == (EMAIL, SCOPE, vertex.token_url)
    assert claims["exp"] - claims["iat"] == 3600
    sent = vertex.last
    assert sent.headers["authorization"] == f"Bearer ya29.{TOKEN_SECRET}-1"
    assert "x-goog-api-key" not in sent.headers and "key" not in sent.query
    # the project comes from the key file, the region from the config
    assert sent.path == (
        "/v1/projects/proj-sa/locations/us-central1/publishers/google"
        "/models/gemini-2.5-flash:streamGenerateContent"
    )


async def test_token_is_refreshed_shortly_before_it_expires(
    vertex: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys, clock: Clock
) -> None:
    path = write_service_account(tmp_path / "sa.json", rsa_keys[0], vertex.token_url)
    auth = ServiceAccountAuth("main", client, load_service_account(path), clock=clock)
    backend = GeminiBackend(
        "main", client, preset=PRESETS["vertex"], base_url=vertex.base_url, auth=auth, model=MODEL
    )
    request = harness(vertex, tmp_path, rsa_keys).request()
    used: list[str] = []
    for step in (0, 3600 - 301, 2):  # fresh; five minutes and a second left; inside the margin
        clock.now += step
        _, error = await collect(backend, request)
        assert error is None
        used.append(vertex.last.headers["authorization"])
    assert used == [f"Bearer ya29.{TOKEN_SECRET}-{n}" for n in (1, 1, 2)]


async def test_a_refused_token_is_dropped_and_never_shown(
    vertex: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    h = harness(vertex, tmp_path, rsa_keys)
    backend = h.backend(client, sleeps=[])
    vertex.refuse_tokens = 1  # revoked server-side; the fake's 401 echoes the token
    _, error = await collect(backend, h.request())
    assert isinstance(error, BackendAuthError)
    assert "HTTP 401" in error.user_message()
    assert_no_secret(error, TOKEN_SECRET)
    events, error = await collect(backend, h.request())
    assert error is None and text_of(events) == "Hello"
    assert len(vertex.token_claims) == 2


async def test_concurrent_turns_share_one_token_request(
    vertex: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    h = harness(vertex, tmp_path, rsa_keys)
    backend = h.backend(client)
    results = await asyncio.gather(*(collect(backend, h.request()) for _ in range(3)))
    assert [text_of(events) for events, _ in results] == ["Hello"] * 3
    assert len(vertex.token_claims) == 1


async def test_a_key_the_token_endpoint_does_not_know_is_an_auth_error(
    vertex: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    h = harness(vertex, tmp_path, rsa_keys)
    sleeps: list[float] = []
    _, error = await collect(h.backend(client, api_key="wrong", sleeps=sleeps), h.request())
    assert isinstance(error, BackendAuthError)
    shown = error.user_message()
    assert "invalid_grant: Invalid JWT Signature." in shown
    assert "service account key file" in shown
    assert "PRIVATE KEY" not in shown + error.detail
    assert sleeps == [] and h.request_count() == 0


async def test_a_token_endpoint_outage_is_retried(
    vertex: FakeGemini, client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    vertex.token_replies.append(Status(503, {"error": "internal_failure"}))
    h = harness(vertex, tmp_path, rsa_keys)
    sleeps: list[float] = []
    events, error = await collect(h.backend(client, sleeps=sleeps), h.request())
    assert error is None and text_of(events) == "Hello"
    assert len(sleeps) == 1


async def test_the_key_file_can_be_named_by_an_environment_variable(
    vertex: FakeGemini,
    client: httpx.AsyncClient,
    tmp_path: Path,
    rsa_keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_service_account(tmp_path / "sa.json", rsa_keys[0], vertex.token_url)
    monkeypatch.setenv("SILLYBOT_TEST_GOOGLE_SA", str(path))
    config = BackendConfig(
        provider="vertex",
        base_url=vertex.root + "/v1/projects/{project}/locations/{region}/publishers/google",
        model=MODEL,
        gemini={"service_account_env": "SILLYBOT_TEST_GOOGLE_SA"},
    )
    vertex.enqueue(Text(["Hi"]))
    events, error = await collect(
        build_backend("main", config, client, None), harness(vertex, tmp_path, rsa_keys).request()
    )
    assert error is None and text_of(events) == "Hi"


def inner(backend: Backend) -> GeminiBackend:
    assert isinstance(backend, RetryingBackend)
    assert isinstance(backend.inner, GeminiBackend)
    return backend.inner


# -- URLs and start-up errors (no traffic) -----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"project": "p1", "region": "europe-west4"},
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/p1/locations/"
            "europe-west4/publishers/google",
        ),
        (
            {"project": "p1", "region": "global"},
            "https://aiplatform.googleapis.com/v1/projects/p1/locations/global/publishers/google",
        ),
        ({}, "https://aiplatform.googleapis.com/v1/publishers/google"),  # express, no project
    ],
)
async def test_vertex_urls(
    client: httpx.AsyncClient, options: dict[str, str], expected: str
) -> None:
    config = BackendConfig(provider="vertex", model=MODEL, gemini=options)
    backend = build_backend("main", config, client, SecretStr(SECRET))
    assert inner(backend).base_url == expected


async def test_service_account_project_fills_the_default_url(
    client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys
) -> None:
    path = write_service_account(tmp_path / "sa.json", rsa_keys[0], "http://127.0.0.1:9/token")
    config = BackendConfig(
        provider="vertex", model=MODEL, gemini={"service_account_file": path, "region": "global"}
    )
    backend = build_backend("main", config, client, None)
    assert inner(backend).base_url == (
        "https://aiplatform.googleapis.com/v1/projects/proj-sa/locations/global/publishers/google"
    )


def _file(tmp: Path, name: str, text: str) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("nothing", "needs a service account or an API key"),
        ("both", "both an API key and a service account"),
        ("missing", "cannot read the service account file"),
        ("not-json", "not a JSON service account key"),
        ("user-credentials", "not a service account key"),
        ("bad-pem", "private key could not be read"),
        ("no-project", "needs a project"),
    ],
)
async def test_start_up_errors(
    client: httpx.AsyncClient, tmp_path: Path, rsa_keys: Keys, case: str, match: str
) -> None:
    good = write_service_account(tmp_path / "sa.json", rsa_keys[0], "http://127.0.0.1:9/token")
    broken = json.loads(good.read_text())
    broken["private_key"] = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"
    files = {
        "missing": tmp_path / "absent.json",
        "not-json": _file(tmp_path, "a", "{not json"),
        "user-credentials": _file(tmp_path, "b", json.dumps({"type": "authorized_user"})),
        "bad-pem": _file(tmp_path, "c", json.dumps(broken)),
    }
    key = SecretStr(SECRET) if case in ("both", "no-project") else None
    options: dict[str, object] = {}
    if case in files:
        options["service_account_file"] = files[case]
    elif case == "both":
        options["service_account_file"] = good
    base_url = "http://127.0.0.1:9/v1/projects/{project}/locations/x/publishers/google"
    config = BackendConfig(
        provider="vertex",
        model=MODEL,
        base_url=base_url if case == "no-project" else "",
        gemini=options,
    )
    with pytest.raises(ConfigError, match=match):
        build_backend("main", config, client, key)
