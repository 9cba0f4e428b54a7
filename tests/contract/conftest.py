"""Fixtures every contract module uses: the shared HTTP client (as the service has one), and
the Gemini modules' service-account keys and AI Studio fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.contract.gemini_harness import Keys, fake_for, new_key
from tests.fakes.gemini_server import FakeGemini


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as c:
        yield c


@pytest.fixture(scope="session")
def rsa_keys() -> Keys:
    # not ``keys``: that is the state tests' KeyBuilder (tests/conftest.py)
    return new_key(), new_key()  # the service account's key, and a stranger's


@pytest.fixture
async def studio(rsa_keys: Keys) -> AsyncIterator[FakeGemini]:
    async with fake_for("aistudio", rsa_keys[0]) as fake:
        yield fake
