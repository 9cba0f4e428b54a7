"""The native extras of the local servers that speak OpenAI's wire: each one's own token
counter, and the abort called when a reply is abandoned (KoboldCpp and text-generation-webui
go on generating after a disconnect), driven through ``build_backend`` against a loopback
server with those routes beside its OpenAI ones."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from aiohttp import web

from bot.backends.base import Backend, Finish, TextDelta
from bot.backends.retry import RetryingBackend
from bot.errors import BackendError, BackendNotFound
from tests.contract.backend_contract import cancel_midway, collect
from tests.contract.openai_harness import SECRET, harness_for
from tests.fakes.base import Endless, Recorded, recorded
from tests.fakes.openai_server import AuthStyle, FakeOpenAI
from tests.fakes.openai_wire import Text

# route → (the JSON field it reads, how it answers for n tokens); paths from the server root
NATIVE: Mapping[str, tuple[str, Any]] = {
    "/v1/internal/token-count": ("text", lambda n: {"length": n}),  # text-generation-webui
    "/v1/internal/stop-generation": ("", lambda n: "OK"),
    "/v1/token/encode": ("text", lambda n: {"tokens": list(range(n)), "length": n}),  # Tabby
    "/api/extra/tokencount": ("prompt", lambda n: {"value": n, "ids": list(range(n))}),
    "/api/extra/abort": ("genkey", lambda n: {"success": "true"}),  # KoboldCpp
    "/tokenize": ("content", lambda n: {"tokens": list(range(n))}),  # llama-server
    "/extras/tokenize/count": ("input", lambda n: {"count": n}),  # llama-cpp-python
}


class LocalServer(FakeOpenAI):
    """The OpenAI fake plus the local servers' native routes (a route listed in ``missing``
    answers 404, as on a server without it). Words count as tokens."""

    def __init__(self, *, missing: frozenset[str] = frozenset(), **kw: Any) -> None:
        super().__init__(api_key=SECRET, max_stop=None, **kw)
        self.missing = missing
        self.native: list[Recorded] = []
        self.native_called = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path not in NATIVE:
            return await super()._handle(request)
        record = recorded(request, await request.read())
        self.native.append(record)
        self.native_called.set()
        headers, body = record.headers, record.body
        if request.path in self.missing:
            return web.json_response({"detail": "Not Found"}, status=404)
        problem = self._check_auth(headers)
        if problem:
            self.rejections.append(problem)
            return web.json_response({"detail": "Unauthorized"}, status=401)
        field, answer = NATIVE[request.path]
        if not field:
            return web.json_response(answer(0))
        value = body.get(field) if isinstance(body, dict) else None
        if not isinstance(value, str):
            self.rejections.append(f"{request.path} without {field!r}")
            return web.json_response({"detail": f"field required: {field}"}, status=422)
        return web.json_response(answer(len(value.split())))


def backend_on(
    server: LocalServer, provider: str, client: httpx.AsyncClient, **kw: Any
) -> RetryingBackend:
    backend = harness_for(server, provider, "text").backend(client, **kw)
    assert isinstance(backend, RetryingBackend)
    return backend


# -- token counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "auth", "path", "body", "header"),
    [
        (
            "textgen-webui",
            "bearer",
            "/v1/internal/token-count",
            {"text": "one two three"},
            ("authorization", f"Bearer {SECRET}"),
        ),
        (
            "tabbyapi",
            "x-api-key",
            "/v1/token/encode",
            {"text": "one two three"},
            ("x-api-key", SECRET),
        ),
        (
            "koboldcpp",
            "bearer",
            "/api/extra/tokencount",
            {"prompt": "one two three"},
            ("authorization", f"Bearer {SECRET}"),
        ),
        (
            "llamacpp",
            "bearer",
            "/tokenize",
            {"content": "one two three"},
            ("authorization", f"Bearer {SECRET}"),
        ),
    ],
)
async def test_each_server_counts_with_its_own_route(
    client: httpx.AsyncClient,
    provider: str,
    auth: AuthStyle,
    path: str,
    body: dict[str, str],
    header: tuple[str, str],
) -> None:
    async with LocalServer(auth=auth) as server:
        assert await backend_on(server, provider, client).count_tokens("one two three") == 3
    assert [(r.method, r.path, r.body) for r in server.native] == [("POST", path, body)]
    name, value = header
    assert server.native[0].headers[name] == value
    assert server.rejections == []


async def test_llama_cpp_python_is_counted_on_its_extras_route(
    client: httpx.AsyncClient,
) -> None:
    # the embedded server (llama-cpp-python) has no /tokenize; the row's second route is
    # used, and remembered
    async with LocalServer(missing=frozenset({"/tokenize"})) as server:
        backend = backend_on(server, "llamacpp", client)
        assert await backend.count_tokens("a b c d") == 4
        assert await backend.count_tokens("a b") == 2
    assert [r.path for r in server.native] == [
        "/tokenize",
        "/extras/tokenize/count",
        "/extras/tokenize/count",
    ]


async def test_a_server_with_neither_route_is_not_found(client: httpx.AsyncClient) -> None:
    missing = frozenset({"/tokenize", "/extras/tokenize/count"})
    async with LocalServer(missing=missing) as server:
        with pytest.raises(BackendNotFound):
            await backend_on(server, "llamacpp", client).count_tokens("a")


async def test_a_provider_without_a_counter_says_so_without_asking(
    client: httpx.AsyncClient,
) -> None:
    async with LocalServer() as server:
        with pytest.raises(BackendError) as caught:
            await backend_on(server, "openrouter", client).count_tokens("a")
    assert "estimated locally" in caught.value.user_message()
    assert server.requests == []


# -- abort ----------------------------------------------------------------------------------


async def _abandon(backend: Backend, server: LocalServer, provider: str, *, cancel: bool) -> None:
    request = harness_for(server, provider, "text").request()
    if cancel:
        await cancel_midway(backend.stream(request), object)
    else:
        stream = backend.stream(request)
        assert isinstance(await anext(stream), TextDelta)
        await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("cancel", [False, True], ids=["closed", "cancelled"])
async def test_textgen_webui_is_told_to_stop(client: httpx.AsyncClient, cancel: bool) -> None:
    async with LocalServer() as server:
        server.enqueue(Endless())
        await _abandon(
            backend_on(server, "textgen-webui", client), server, "textgen-webui", cancel=cancel
        )
        await asyncio.wait_for(server.disconnected.wait(), timeout=5)
    assert [(r.method, r.path, r.raw) for r in server.native] == [
        ("POST", "/v1/internal/stop-generation", b"")
    ]
    assert server.native[0].headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("cancel", [False, True], ids=["closed", "cancelled"])
async def test_koboldcpp_aborts_this_generation_by_its_genkey(
    client: httpx.AsyncClient, cancel: bool
) -> None:
    async with LocalServer() as server:
        server.enqueue(Endless())
        await _abandon(backend_on(server, "koboldcpp", client), server, "koboldcpp", cancel=cancel)
    genkey = server.requests[0].body["genkey"]
    assert genkey.startswith("sillybot-")
    assert [(r.path, r.body) for r in server.native] == [("/api/extra/abort", {"genkey": genkey})]


async def test_a_finished_reply_is_not_aborted(client: httpx.AsyncClient) -> None:
    async with LocalServer() as server:
        server.enqueue(Text(["Hi"]))
        backend = backend_on(server, "textgen-webui", client)
        stream = backend.stream(harness_for(server, "textgen-webui", "text").request())
        events = [event async for event in stream]
        await stream.aclose()  # type: ignore[attr-defined]
    assert isinstance(events[-1], Finish)
    assert server.native == []


async def test_servers_that_stop_on_disconnect_get_no_abort(client: httpx.AsyncClient) -> None:
    async with LocalServer(auth="x-api-key") as server:
        server.enqueue(Endless())
        await _abandon(backend_on(server, "tabbyapi", client), server, "tabbyapi", cancel=False)
        await asyncio.wait_for(server.disconnected.wait(), timeout=5)
    assert server.native == []
    assert "genkey" not in server.requests[0].body


async def test_a_failing_abort_does_not_get_in_the_way(client: httpx.AsyncClient) -> None:
    async with LocalServer(missing=frozenset({"/v1/internal/stop-generation"})) as server:
        server.enqueue(Endless())
        backend = backend_on(server, "textgen-webui", client)
        await _abandon(backend, server, "textgen-webui", cancel=False)
        server.enqueue(Text(["Hi"]))
        events, error = await collect(
            backend, harness_for(server, "textgen-webui", "text").request()
        )
    assert error is None
    assert isinstance(events[-1], Finish)
    assert [r.path for r in server.native] == ["/v1/internal/stop-generation"]
