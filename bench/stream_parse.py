"""How fast SSE streams are parsed: the bare parser, then the whole OpenAI-compatible path.

Run: ``python -m bench.stream_parse [events]`` (default 200,000). Nothing leaves the process:
the full path is fed by an ``httpx.MockTransport``. Two chunkings are measured: 16 KiB reads
(a fast server or a backlog) and one event per read (tokens arriving one by one).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator

import httpx

from bot.backends.base import GenerationRequest, PromptMessage, TextDelta
from bot.backends.openai_compat import OpenAICompatBackend
from bot.backends.presets import PRESETS
from bot.backends.sse import SSEParser


def event(i: int) -> bytes:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench",
        "choices": [{"index": 0, "delta": {"content": f" tok{i % 97}"}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def body(n: int) -> list[bytes]:
    final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return [event(i) for i in range(n)] + [
        b"data: " + json.dumps(final).encode() + b"\n\n",
        b"data: [DONE]\n\n",
    ]


def rechunk(events: list[bytes], size: int) -> list[bytes]:
    data = b"".join(events)
    return [data[i : i + size] for i in range(0, len(data), size)]


def parse_rate(chunks: list[bytes], n: int) -> float:
    parser = SSEParser()
    start = time.perf_counter()
    count = 0
    for chunk in chunks:
        count += len(parser.feed(chunk))
    count += len(parser.finish())
    elapsed = time.perf_counter() - start
    assert count == n + 2, count
    return n / elapsed


async def backend_rate(chunks: list[bytes], n: int) -> float:
    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream())

    request = GenerationRequest(
        mode="chat", model="bench", max_tokens=n, messages=(PromptMessage("user", "hi"),)
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        backend = OpenAICompatBackend(
            "bench",
            client,
            preset=PRESETS["custom"],
            base_url="http://bench.invalid/v1",
            max_body_bytes=1 << 40,
        )
        start = time.perf_counter()
        deltas = 0
        async for item in backend.stream(request):
            deltas += isinstance(item, TextDelta)
        elapsed = time.perf_counter() - start
    assert deltas == n, deltas
    return n / elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 200_000
    events = body(n)
    for label, chunks in (("16 KiB reads", rechunk(events, 16384)), ("1 event/read", events)):
        print(f"parser only, {label:>12}: {parse_rate(chunks, n):>10,.0f} events/s")
        rate = asyncio.run(backend_rate(chunks, n))
        print(f"full path,   {label:>12}: {rate:>10,.0f} events/s")


if __name__ == "__main__":
    main()
