"""The shared stream parser: every SSE flavour the backends speak, and NDJSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable

import pytest

from bot.backends.sse import NDJSONParser, SSEParser, StreamRecord, iter_records


def parse(chunks: Iterable[bytes]) -> list[tuple[str, str]]:
    parser = SSEParser()
    out: list[StreamRecord] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    out += parser.finish()
    return [(r.event, r.data) for r in out]


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


OPENAI = (
    b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
    b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


def test_openai_stream_with_done_sentinel() -> None:
    assert parse([OPENAI]) == [
        ("message", '{"choices":[{"delta":{"content":"Hi"}}]}'),
        ("message", '{"choices":[{"delta":{},"finish_reason":"stop"}]}'),
        ("message", "[DONE]"),
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    assert parse(pieces(OPENAI, size)) == parse([OPENAI])


def test_typed_events_and_comments() -> None:
    body = (
        b": OPENROUTER PROCESSING\n\n"
        b'event: message_start\ndata: {"a":1}\n\n'
        b": ping\n"
        b'event: content_block_delta\ndata: {"b":2}\n\n'
        b'data: {"c":3}\n\n'
    )
    assert parse([body]) == [
        ("message_start", '{"a":1}'),
        ("content_block_delta", '{"b":2}'),
        ("message", '{"c":3}'),  # the event name does not leak into the next event
    ]


def test_multi_line_data_is_joined_with_newlines() -> None:
    body = b"data: first\ndata:second\ndata:  third\ndata\n\n"
    # one optional space after the colon is stripped, no more; a bare "data" is an empty line
    assert parse([body]) == [("message", "first\nsecond\n third\n")]


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"])
def test_crlf_cr_and_lf_line_endings(newline: bytes) -> None:
    body = OPENAI.replace(b"\n", newline)
    assert parse([body]) == parse([OPENAI])
    assert parse(pieces(body, 1)) == parse([OPENAI])


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    assert parse([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]) == [
        ("message", "a"),
        ("message", "b"),
    ]


def test_llamacpp_error_line_becomes_an_error_event() -> None:
    error = {"code": 400, "message": "the request exceeds the available context size"}
    body = b'data: {"content":"Hi"}\n\nerror: ' + json.dumps(error).encode() + b"\n\n"
    events = parse([body])
    assert events[1][0] == "error"
    assert json.loads(events[1][1]) == error


def test_no_sentinel_stream_ends_with_the_bytes() -> None:
    # llama.cpp native / Gemini: the last event may even lack its blank line
    body = b'data: {"content":"Hi","stop":false}\n\ndata: {"content":"","stop":true}\n'
    assert [d for _, d in parse([body])] == [
        '{"content":"Hi","stop":false}',
        '{"content":"","stop":true}',
    ]


def test_a_line_cut_mid_way_at_the_end_is_dropped() -> None:
    # a connection cut mid-line leaves half an object; it must not be handed on as data
    assert parse([b'data: {"a":1}\n\ndata: {"b":']) == [("message", '{"a":1}')]


def test_id_retry_and_unknown_fields_are_ignored() -> None:
    assert parse([b"id: 7\nretry: 100\nfoo: bar\ndata: x\n\n"]) == [("message", "x")]


def test_byte_order_mark_at_the_start_is_skipped() -> None:
    assert parse([b"\xef\xbb", b"\xbfdata: x\n\n"]) == [("message", "x")]


def test_utf8_split_at_every_byte_offset() -> None:
    text = "Grüße 🐉 — «ça va» 日本語"
    body = ("data: " + json.dumps({"t": text}, ensure_ascii=False) + "\n\n").encode()
    for cut in range(1, len(body)):
        events = parse([body[:cut], body[cut:]])
        assert json.loads(events[0][1])["t"] == text, cut
    assert json.loads(parse(pieces(body, 1))[0][1])["t"] == text


def test_u2028_inside_json_does_not_split_lines() -> None:
    # raw U+2028 is legal inside a JSON string; str.splitlines() would break on it
    body = 'data: {"t":"a\u2028b\x85c"}\n\n'.encode()
    assert json.loads(parse([body])[0][1]) == {"t": "a\u2028b\x85c"}


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert parse([b"data: a\xffb\n\n"]) == [("message", "a\ufffdb")]


def test_ndjson_lines_and_last_line_without_newline() -> None:
    body = (
        b'{"model":"m","response":"Hi","done":false}\n\n'
        b'{"model":"m","response":"","done":true,"done_reason":"stop","eval_count":1}'
    )
    for size in (1, 5, len(body)):
        parser = NDJSONParser()
        records = [r for chunk in pieces(body, size) for r in parser.feed(chunk)]
        records += parser.finish()
        assert [json.loads(r.data)["done"] for r in records] == [False, True]


async def test_iter_records_over_an_async_byte_stream() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for piece in pieces(OPENAI, 5):
            yield piece

    records = [r async for r in iter_records(chunks())]
    assert [r.data for r in records][-1] == "[DONE]"
    assert len(records) == 3
