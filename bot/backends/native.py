"""What the native families share (llama.cpp ``/completion``, Ollama ``/api/*``, NovelAI
``/ai/generate*``, KoboldCpp): the translation of core sampler settings through a family's
name table, the server's root behind a copied API prefix, and reading one JSON object from a
stream record or a whole answer.

The HTTP itself (the body cap, the stream loop driving a family's decoder, the "ended before
it said it was done" diagnosis, the mapping of transport failures) is
:class:`bot.backends.http_json.JsonHttp`, as for every family.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.backends.errors import decode_json, protocol_error, unreadable
from bot.backends.sse import StreamRecord

_log = logging.getLogger(__name__)


def translate_samplers(
    family: str, sampler: Mapping[str, Any], names: Mapping[str, str]
) -> dict[str, Any]:
    """Core sampler settings → the backend's names, through the family's table.

    A key the table lacks is a setting the backend does not take: dropped with a debug log,
    never sent to break the request. Unset values and a negative seed ("random", which is
    what leaving it out means) are not sent either.
    """
    out: dict[str, Any] = {}
    for key, value in sampler.items():
        if value is None or (key == "seed" and isinstance(value, int) and value < 0):
            continue
        wire = names.get(key)
        if wire is None:
            _log.debug("%s does not take sampler %r; dropped", family, key)
            continue
        out[wire] = value
    return out


def server_root(base_url: str, *suffixes: str) -> str:
    """The base URL without a trailing API prefix (``/v1``, ``/api``) a user copied along:
    the native routes live at the server's root."""
    url = base_url.rstrip("/")
    for suffix in suffixes:
        if url.endswith(suffix):
            _log.debug("using %s without its %s suffix for the native API", url, suffix)
            return url.removesuffix(suffix)
    return url


def unique_stops(stop: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(s for s in stop if s))


def whole_json(backend: str, raw: bytes) -> dict[str, Any]:
    """A non-streamed answer as a JSON object, or the protocol error that says what it was."""
    payload = decode_json(raw)
    if isinstance(payload, dict):
        return payload
    raise unreadable(backend, raw)


def record_json(backend: str, record: StreamRecord) -> dict[str, Any]:
    """One stream record's data as a JSON object; a torn or foreign line is a protocol error."""
    payload = decode_json(record.data)
    if not isinstance(payload, dict):
        raise protocol_error(
            backend, "the server sent a malformed stream chunk", detail=record.data
        )
    return payload
